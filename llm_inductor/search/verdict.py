"""From a candidate's source to an attempt's outcome: verify, then judge speed.

The verifier (``llm_inductor.verify.engine.verify``) says whether a candidate is
correct and, on a GPU, times it against Inductor. The search adds one judgement of
its own: a correct kernel that does not beat Inductor by ``speed_margin`` is
``slower``, not a winner. On the CPU (interpret mode) nothing is timed, so any
correct kernel counts, and that is said wherever the result is shown.

The verifier is a parameter (``Verifier``) so that tests can inject timing records
at this layer; the default imports the real engine lazily.

Two kinds of outcome are no verdict on the candidate, and the loop keeps them out of
the attempts it ranks and feeds back: a harness failure (``harness:<what>``, the
verifier's own or ``harness:verifier_error`` when it raised) leaves the candidate
unjudged; a verdict on the region (``REGION_REASONS``: ``degenerate_region``) ends
the region's search, since every candidate would get it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from llm_inductor._errors import UsageError
from llm_inductor.config import Config
from llm_inductor.passes.regionfile import read_sidecar
from llm_inductor.verify.result import REGION_REASONS

Verifier = Callable[[str, str, Config], Any]  # (region_path, candidate_source, cfg) -> VerifyResult

# Verifier reasons that mean "correct but not fast enough" rather than "wrong".
_SLOWER_REASONS = {"slower", "slower_than_inductor", "not_faster", "slow"}
HARNESS = "harness:"  # outcomes that judged nothing: the verifier could not run


def is_harness(outcome: str) -> bool:
    return str(outcome).startswith(HARNESS)


def is_region_verdict(outcome: str) -> bool:
    return outcome in REGION_REASONS


def baseline_mode(region_path: str) -> str:
    """The Inductor a candidate must beat: the strongest mode the region was compiled under
    (``baseline_inductor_mode`` in its sidecar, set by the pass under max-autotune), else default."""
    try:
        mode = read_sidecar(region_path, optional=True).baseline_inductor_mode
    except UsageError:
        return "default"
    return mode or "default"


def default_verifier(region_path: str, source: str, cfg: Config, inductor_mode: str | None = None) -> Any:
    """The engine, against ``inductor_mode`` (default: the region's ``baseline_mode``)."""
    from llm_inductor.verify.engine import verify

    mode = inductor_mode or baseline_mode(region_path)
    return verify(region_path, source, device="auto", speed=None, config=cfg, inductor_mode=mode)


def against(verifier: Verifier, inductor_mode: str) -> Verifier:
    """``verifier`` timing against ``inductor_mode``, where it can be told (the default verifier; tests' cannot)."""
    if verifier is default_verifier:
        return lambda region_path, source, cfg: default_verifier(region_path, source, cfg, inductor_mode)
    with_mode = getattr(verifier, "with_mode", None)  # the tuning farm's (search/farm.py)
    return with_mode(inductor_mode) if callable(with_mode) else verifier


def verify_parallel(cfg: Config, device: str) -> int:
    """Candidates verified at once: ``verify_parallel`` when set, else the engine's default for the device."""
    n = int(cfg.verify_parallel or 0)
    if n < 0:
        raise UsageError(f"LLM_INDUCTOR_VERIFY_PARALLEL={n}: give a count of verifications, or 0 for the default")
    if n:
        return n
    from llm_inductor.verify.engine import default_parallel

    return default_parallel(device)


def code_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _as_dict(result: Any) -> dict[str, Any]:
    if isinstance(result, dict):
        return result
    return result.to_dict()


def _feedback(result: Any, d: dict[str, Any]) -> str:
    fb = getattr(result, "feedback", None)
    if callable(fb):
        return str(fb())
    return str(d.get("feedback") or d.get("message") or "")


def _num(timings: dict[str, Any], *names: str) -> float | None:
    for n in names:
        v = timings.get(n)
        if isinstance(v, (int, float)) and v > 0:
            return float(v)
    return None


def _median(timings: dict[str, Any], name: str) -> float | None:
    """The median over the verifier's repeated measurements (``timings["measurements"]``)."""
    values = sorted(float(m[name]) for m in timings.get("measurements") or [] if isinstance(m.get(name), (int, float)))
    return values[len(values) // 2] if values else None


def judge(result: Any, cfg: Config, floor_ms: float | None) -> dict[str, Any]:
    """outcome (ok | slower | the verifier's reason), accepted (correct), timings, feedback, record."""
    d = _as_dict(result)
    timings = d.get("timings") or {}
    cand = _num(timings, "candidate_ms") or _median(timings, "candidate_ms")
    ind = _num(timings, "inductor_ms") or _median(timings, "inductor_ms")
    speedup = _num(timings, "speedup") or (ind / cand if cand and ind else None)
    roof = _num(timings, "pct_of_roofline", "roofline_pct")
    if roof is None and cand and floor_ms:
        roof = 100.0 * floor_ms / cand
    reason = str(d.get("reason", "ok" if d.get("accepted") else "rejected"))
    if d.get("harness_failure") and not is_harness(reason):
        reason = HARNESS + reason
    correct = (bool(d.get("accepted")) or reason in _SLOWER_REASONS) and not is_harness(reason)
    outcome = reason if not correct else "ok"
    if correct and (reason in _SLOWER_REASONS or (speedup is not None and speedup < 1.0 + cfg.speed_margin)):
        outcome = "slower"
    return {
        "outcome": outcome,
        "accepted": correct,
        "message": str(d.get("message", "")),
        "feedback": _feedback(result, d),
        "candidate_ms": cand,
        "inductor_ms": ind,
        "speedup": speedup,
        "roofline_pct": roof,
        "verification": d,
    }


def verify_candidate(
    verifier: Verifier, region_path: str, source: str, cfg: Config, floor_ms: float | None
) -> dict[str, Any]:
    """One verification, judged. Besides the verdict, the attempt keeps what the summary counts: its
    wall-clock interval (``verify_started``/``verify_ended``, ``time.time()``; verifications of a region
    may overlap, so the region's device time is their union) and the worker's GPU peak in MiB
    (``gpu_peak_mib``; None where the result carries no ``memory``). ``verification`` itself is dropped
    from every attempt but the winner, so these are copied out here."""
    started = time.time()
    start = time.monotonic()
    try:
        result = verifier(region_path, source, cfg)
        out = judge(result, cfg, floor_ms)
    except Exception as e:  # the verifier raised: its failure, not the candidate's (nor a reason to stop the run)
        out = {
            "outcome": HARNESS + "verifier_error",
            "accepted": False,
            "message": f"{type(e).__name__}: {e}",
            "feedback": "",
            "verification": None,
        }
    out["verify_seconds"] = time.monotonic() - start
    out["verify_started"], out["verify_ended"] = started, time.time()
    memory = (out.get("verification") or {}).get("memory") or {}
    peak = memory.get("worker_peak") if isinstance(memory, dict) else None
    out["gpu_peak_mib"] = peak / 2**20 if isinstance(peak, (int, float)) and not isinstance(peak, bool) else None
    out["code_hash"] = code_hash(source)
    return out
