"""``verify()``: the one path every candidate takes (the tuner, ``llm-inductor cache verify``, ``llm-inductor verify``).

    static policy → worker: import under the guard → base draws → extra sizes →
    re-check → (GPU) timing vs Inductor → outputs checked again after timing

Every step is a named check. The first failure ends the run and is the result's
reason; the message says which check, which draw, which call, and by how much.
References are computed here, in the parent; the worker only returns tensors.

Throughput without a looser check: the candidates of a round share its draws and
references (``draw_set``: built once, new seeds every round, a private draw per
candidate besides, seeds never leave this process); ``verify_many`` runs several at
once on one GPU, timing alone (``gpu_share``); each worker keeps to a memory cap
(``memory_cap``), and references and judged outputs stay on the host, streamed
through the device a chunk at a time (``compare``).

Harness failures are never verdicts. A worker that does not start or dies before it
takes the candidate, an "internal" answer (the worker's own code raised) and the
parent running out of memory are the harness's: the whole verification is run
again, alone (no spare worker beside it, caches freed) in a fresh worker, up to
``HARNESS_RETRIES`` times; if every try fails so, the result is
``harness_failure`` with reason ``harness:<what>``, which callers tell from a
rejection. What may be either the candidate's or the machine's, an out-of-memory
in the worker (``oom``, SIGKILL included) and on a GPU a crash (a CUDA error: the
candidate's illegal access, or a device that is gone), is run again once alone:
the same failure again is the candidate's verdict; anything else is the retry's
verdict. A lost device does not come back, so its retry's worker cannot start,
which is a harness failure. Timeouts and CPU crashes stay the candidate's at once.
"""

from __future__ import annotations

import contextvars
import gc
import logging
import os
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from llm_inductor._errors import UsageError
from llm_inductor.config import Config
from llm_inductor.verify import policy
from llm_inductor.verify.checks import Expected, Finding, isolation, judge_run, poison_split, worst
from llm_inductor.verify.compare import same_bits
from llm_inductor.verify.draw_set import DrawSet, PlanInfo, draws_for, verification_round
from llm_inductor.verify.draws import Draw, fresh_seed
from llm_inductor.verify.gpu_share import ADMISSION, GATE
from llm_inductor.verify.host_budget import HostMemoryError
from llm_inductor.verify.loaded_region import LoadedRegion, load_region
from llm_inductor.verify.pool import POOL, Worker, WorkerFailure, WorkerStartError
from llm_inductor.verify.reference import NoHostReference, host_gaps
from llm_inductor.verify.result import CheckResult, VerifyResult, versions

log = logging.getLogger(__name__)

# Ops whose Inductor kernels are nondeterministic by nature (atomics): bit-equality is not asked of them.
NONDETERMINISTIC_OPS = {
    "index_put",
    "index_put_",
    "scatter_add",
    "index_add",
    "scatter_reduce",
    "_unsafe_index_put",
    "embedding_dense_backward",
    "_embedding_bag_backward",
}
_SIZE_REASONS = {
    "wrong_values",
    "low_precision",
    "nan_mismatch",
    "unwritten_output",
    "output_mismatch",
    "stride_mismatch",
    "stale_output",
}


HARNESS_RETRIES = 2  # runs after the first when the harness fails: three tries in all, each in a fresh worker
# Harness failures that a retry cannot change: a draw larger than the host's budget beside its round's own draws.
NOT_RETRIED = {"harness:host_memory"}
FLUSH_BYTES = 256 * 10**6  # triton.testing.do_bench's L2-flush buffer, allocated in the worker while timing
MAX_PARALLEL = 4  # verifications at once on one GPU; timing is exclusive, so more adds little


def memory_cap(working_set: int) -> int:
    """A worker's device memory cap: the region's working set three times over (the call's inputs, the outputs
    held, the candidate's own buffers), the L2-flush buffer, and 4 GiB for Inductor's compile and the caching
    allocator. The cap stops a runaway candidate; it must not throttle a normal one: near the cap the
    allocator frees its cache and allocates afresh, which shows in small kernels' timings."""
    return 3 * working_set + FLUSH_BYTES + (4 << 30)


def default_parallel(device: str) -> int:
    """Verifications at once: a worker's CPU stages take about four cores (its own thread, the parent's
    host-side references and checks, Triton's compiler), so ``cores // 4``, at most ``MAX_PARALLEL``."""
    if device != "cuda":
        return 1
    return max(1, min(MAX_PARALLEL, (os.cpu_count() or 1) // 4))


class _Reject(Exception):
    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


class _Harness(Exception):
    """The verifier could not run this step; ``what`` names the failure (HARNESS_REASONS' ``harness:<what>``)."""

    def __init__(self, what: str, message: str) -> None:
        super().__init__(message)
        self.what = what


def verify(
    region_path: str | Path,
    candidate_source: str,
    *,
    device: str = "auto",
    speed: bool | None = None,
    inductor_mode: str = "default",
    config: Config | None = None,
    static_policy: bool = True,
    extra_inductor_modes: Sequence[str] = (),
) -> VerifyResult:
    """Verify one candidate against one region file. Raises UsageError for a bad region or device.

    ``inductor_mode`` is the Inductor the candidate must beat (the user's). ``extra_inductor_modes``
    are timed too, for reports only (benchmarks/studies/verify_h200.py times default and max-autotune at once).
    A harness failure is retried and, if it persists, returned as a result with ``harness_failure`` (module doc).
    """
    cfg = config if config is not None else Config.load()[0]
    dev = resolve_device(device)
    region = load_region(region_path)
    if gaps := host_gaps(region.source):  # before any candidate code: the same verdict for every candidate
        message = (
            f"the region calls {', '.join(gaps)}, which has no host (CPU) kernel: its float64 reference cannot "
            "run, so no candidate can be judged against it"
        )
        return VerifyResult(
            False,
            "no_host_reference",
            message,
            [CheckResult("references", False, message)],
            versions=versions(dev, torch.cuda.get_device_name() if dev == "cuda" else None),
            device=dev,
        )
    earlier: list[VerifyResult] = []  # tries that judged nothing
    with draws_for(region, dev, inductor_mode) as draws:
        for attempt in range(1 + HARNESS_RETRIES):
            alone = attempt > 0
            if alone:
                gc.collect()  # what the failed try held: its references and tensors
                if dev == "cuda":
                    torch.cuda.empty_cache()
            run = _Verification(
                region,
                candidate_source,
                dev,
                cfg,
                inductor_mode,
                static_policy,
                (dev == "cuda") if speed is None else speed,
                draws,
                alone,
            )
            run.extra_modes = [m for m in extra_inductor_modes if m != inductor_mode]
            result = run.execute()
            if not result.harness_failure and (alone or not _either(result)):
                break
            earlier.append(result)
            hopeless = result.reason in NOT_RETRIED
            last = attempt == HARNESS_RETRIES or hopeless
            log.warning(
                "llm_inductor: %s on verification try %d (%s)%s",
                "harness failure" if result.harness_failure else result.reason,
                attempt + 1,
                result.message[:300],
                "; giving up" if last else "; running it again alone in a fresh worker",
            )
            if last:
                result.message = (
                    f"not retried, since no retry can change it; the candidate was not judged: {_tries(earlier)}"
                    if hopeless
                    else f"the verifier failed on all {len(earlier)} tries, run alone in fresh workers after the "
                    f"first; the candidate was not judged: {_tries(earlier)}"
                )
                result.checks = [CheckResult("harness", False, result.message)]
                return result
    if earlier:
        if earlier[0].reason == result.reason:
            result.message += " (the same again when run alone in a fresh worker: the candidate's)"
        result.checks.append(
            CheckResult(
                "harness",
                True,
                f"not judged on {len(earlier)} earlier tr{'y' if len(earlier) == 1 else 'ies'}: {_tries(earlier)}",
            )
        )
    return result


def verify_many(
    region_path: str | Path,
    sources: Sequence[str],
    *,
    device: str = "auto",
    parallel: int | None = None,
    **kwargs: Any,
) -> list[VerifyResult]:
    """Verify several candidates of one region at once, in one round: results in the order of ``sources``.

    ``parallel`` verifications run at once (``default_parallel`` when None); on a GPU the memory admission
    and the timing gate (``gpu_share``) decide what actually overlaps. The candidates share the round's
    draws and references (``draw_set``), each with draws of its own besides. ``kwargs`` go to ``verify``.
    """
    dev = resolve_device(device)
    n = max(1, min(len(sources), parallel or default_parallel(dev)))
    with verification_round(), ThreadPoolExecutor(n, thread_name_prefix="llm_inductor-verify") as ex:
        futures = [
            ex.submit(contextvars.copy_context().run, verify, region_path, src, device=dev, **kwargs) for src in sources
        ]
        return [f.result() for f in futures]


def _tries(results: list[VerifyResult]) -> str:
    return "; ".join(f"try {n}: {r.reason}: {r.message}" for n, r in enumerate(results, 1))


def _either(result: VerifyResult) -> bool:
    """A failure that may be the candidate's or the machine's: out of memory, and on a GPU a crash."""
    return result.reason == "oom" or (result.reason == "crash" and result.device == "cuda")


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {device!r}; use cpu (Triton interpreter) or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda, but torch sees no GPU here; use --device cpu to verify under the interpreter")
    return device


class _Verification:
    def __init__(
        self,
        region: LoadedRegion,
        source: str,
        device: str,
        cfg: Config,
        inductor_mode: str,
        static_policy: bool,
        speed: bool,
        draws: DrawSet,
        alone: bool = False,
    ) -> None:
        self.region, self.source, self.device, self.cfg = region, source, device, cfg
        self.mode, self.static_policy, self.speed = inductor_mode, static_policy, speed
        self.draws = draws  # the round's shared draws and references
        self.alone = alone  # a retry: a fresh worker, no spare beside it, and all of the GPU's memory
        self.private: list[Draw] = []  # this candidate's own draws, dropped when it is judged
        self.after: Draw | None = None  # its draw after timing
        self.memory: dict[str, Any] = {}
        self.checks: dict[str, CheckResult] = {}
        self.timings: dict[str, Any] = {}
        self.envelope: dict[str, Any] = {}
        self.worker: Worker | None = None
        self.calls = 0  # calls requested from the worker
        self.judged_calls = 0  # calls of draws that passed
        self.launches = 0
        self.first: Draw | None = None
        self.seen: list[tuple[Draw, list[torch.Tensor]]] = []  # the candidate's last outputs per draw
        self.extra_modes: list[str] = []
        self.deterministic = not (set(region.ops) & NONDETERMINISTIC_OPS)

    # ------------------------------------------------------------------ driver
    def execute(self) -> VerifyResult:
        gpu = None
        harness = False
        try:
            gpu = torch.cuda.get_device_name() if self.device == "cuda" else None
            self.static()
            self.worker = self.take()  # it imports torch while the parent builds the draws
            info = self.plan()
            cap = memory_cap(info.working_set)
            with ADMISSION.admit(self.device, cap, self.alone) as granted:
                self.memory = {"working_set": info.working_set, "cap": granted, "worker_peak": 0, "flush": 0}
                self.worker.wait_ready()  # WorkerStartError: before any candidate code, so never the candidate's
                self.load(granted)
                self.first = info.plan.base[0]
                own = self.own(self.draws.private_draw())
                timed = self.speed and self.device == "cuda"
                if timed:
                    self.after = self.own(Draw("after timing", fresh_seed(), "normal", (), info.positive))
                self.draws.prefetch(*self.private)  # built while the shared draws are judged
                self.run_draws([*info.plan.base, own], "values")
                self.run_draws(info.plan.sizes, "sizes")
                self.recheck()
                if timed:
                    self.time(info.plan.base[0])
                elif self.speed:
                    self.passed("speed", "not judged: timings under the Triton interpreter mean nothing")
            reason, message, accepted = "ok", "all checks passed", True
        except _Reject as r:
            f = r.finding
            self.checks[f.check] = CheckResult(f.check, False, f.message)
            reason, message, accepted = f.reason, f"{f.check}: {f.message}", False
        except NoHostReference as e:  # the region's verdict: nothing of the candidate's was judged
            self.checks["references"] = CheckResult("references", False, str(e))
            reason, message, accepted = "no_host_reference", str(e), False
        except WorkerFailure as e:
            self.checks["worker"] = CheckResult("worker", False, str(e))
            reason, message, accepted = e.reason, f"worker: {e}", False
        except (_Harness, WorkerStartError, MemoryError, torch.OutOfMemoryError, torch.AcceleratorError) as e:
            # Everything here runs in the parent, which never runs candidate code: its out-of-memory and its
            # device errors are the harness's (the worker's come back as answers, or as its death).
            what = (
                e.what
                if isinstance(e, _Harness)
                else "worker_start"
                if isinstance(e, WorkerStartError)
                else "host_memory"
                if isinstance(e, HostMemoryError) and not e.retry_helps
                else "parent_oom"
                if isinstance(e, (MemoryError, torch.OutOfMemoryError))
                else "device"
            )
            self.checks["harness"] = CheckResult("harness", False, f"{type(e).__name__}: {e}")
            reason, message, accepted, harness = f"harness:{what}", f"harness: {type(e).__name__}: {e}", False, True
        finally:
            if self.worker is not None:
                self.worker.close()
            for d in self.private:
                self.draws.forget(d)
        if self.draws.inductor_how:
            how = self.draws.inductor_how
            self.checks.setdefault(
                "references", CheckResult("references", True, f"float64 eager and eager on the host, {how}")
            )
        return VerifyResult(
            accepted,
            reason,
            message,
            list(self.checks.values()),
            self.timings,
            self.envelope,
            versions(self.device, gpu),
            self.device,
            harness,
            self.memory,
        )

    def own(self, draw: Draw) -> Draw:
        """A draw of this candidate's alone: built now, forgotten once it is judged."""
        self.private.append(draw)
        return draw

    def take(self) -> Worker:
        try:
            return POOL.take(self.device, alone=self.alone)
        except OSError as e:  # no process to be had (fork: out of memory or of process slots)
            raise _Harness("worker_start", f"no verification worker could be started: {e}") from None

    def failed(self, check: str, resp: dict[str, Any], where: str = "") -> None:
        """A worker's "not ok" answer: the candidate's failure, or ("internal") the worker's own code raising."""
        if resp["reason"] == "internal":
            raise _Harness("internal", f"the worker's harness raised at '{check}' {where}: {resp['message']}")
        self.reject(check, resp["reason"], where + resp["message"])

    def passed(self, name: str, detail: str) -> None:
        self.checks[name] = CheckResult(name, True, detail)

    def reject(self, check: str, reason: str, message: str) -> None:
        raise _Reject(Finding(check, reason, message))

    @property
    def timeout(self) -> float:
        return float(self.cfg.verify_timeout)

    # ------------------------------------------------------------------ steps
    def static(self) -> None:
        if not self.static_policy:
            self.passed("policy", "skipped (static_policy=False)")
            return
        violations = policy.check_source(self.source)
        if violations:
            self.reject("policy", violations[0].code, "; ".join(str(v) for v in violations[:5]))
        self.passed("policy", "admitted by the allowlist")

    def load(self, cap: int) -> None:
        assert self.worker is not None
        path = self.worker.dir / "candidate.py"
        path.write_text(self.source)
        with GATE.shared(self.device):  # the candidate's import may launch kernels
            resp = self.request(
                {"op": "load", "region": str(self.region.path.resolve()), "candidate": str(path), "memory_cap": cap},
                self.timeout,
            )
        if not resp["ok"]:
            self.failed("import", resp)
        found = isolation({**resp, "violations": resp.get("import_violations")}, "at import")
        if found:
            self.reject(found.check, found.reason, found.message)
        self.passed("import", "imported in the worker")

    def request(self, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.worker is not None
        resp = self.worker.request(msg, timeout)
        peak = int(resp.get("peak_bytes") or 0)
        self.memory["worker_peak"] = max(self.memory.get("worker_peak", 0), peak)
        if peak:  # the peak so far after each kind of step: which one set it
            steps = self.memory.setdefault("peak_after", {})
            steps[msg["op"]] = max(steps.get(msg["op"], 0), peak)
        return resp

    def plan(self) -> PlanInfo:
        info = self.draws.plan()
        usual = self.draws.expect(info.plan.base[0])
        flagged = [j for j, x in enumerate(info.exact) if x]
        self.passed(
            "reference_spread",
            (f"outputs {flagged} are nearly constant across draws: judged without a tolerance floor")
            if flagged
            else "every output varies across draws",
        )
        self.envelope = {
            "sizes": {
                s: sorted({h, *(dict(d.sizes)[s] for d in info.plan.sizes)}) for s, h in self.region.symbols.items()
            },
            "static_shapes": not self.region.symbols,
            # extra sizes the region's own reference cannot run at (its domain ends there): none judged
            "outside_sizes": dict(info.outside),
            # which draws, never their seeds: an entry's envelope travels (a shared cache, a pack)
            "draws": [
                {k: v for k, v in d.to_dict().items() if k != "seed"} for d in (*info.plan.base, *info.plan.sizes)
            ],
            "positive_only": info.positive,
            "dtypes": {
                "inputs": [str(t.dtype) for t in usual.inputs],
                "outputs": [str(s.dtype) for s in usual.specs],
            },
            "inductor_mode": self.mode,
        }
        return info

    def expect(self, draw: Draw) -> Expected:
        return self.draws.expect(draw)

    def call(self, draw: Draw, poisons: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """One call per poisoning: "marked" (the parent finds unwritten elements) or "noise" (data-like)."""
        assert self.worker is not None
        out = self.worker.dir / f"run{self.calls}.pt"
        inputs = self.draws.inputs_file(draw, self.worker.dir)
        try:
            with GATE.shared(self.device):
                resp = self.request(
                    {
                        "op": "run",
                        "inputs": str(inputs),
                        "poisons": poisons,
                        "out": str(out),
                        "hold_bytes": self.memory.get("working_set") or 0,
                    },
                    self.timeout,
                )
        finally:
            inputs.unlink(missing_ok=True)
        self.calls += len(poisons)
        if not resp["ok"]:
            self.failed("run", resp, f"{draw.label()}: ")
        return resp["calls"], self.fetch(out)

    def fetch(self, path: Path) -> dict[str, Any]:
        """The worker's tensors, on the host: plain tensors only (weights_only), judged where the references are."""
        data = torch.load(path, weights_only=True, map_location="cpu")
        path.unlink()
        return data

    def run_draws(self, draws: list[Draw], check: str) -> None:
        worst_c = worst_i = 0.0
        for n, draw in enumerate(draws):
            # An unpredictable number of calls per draw, every one of them checked: a kernel that
            # turns wrong after N calls cannot know which call is the last one looked at. One call, at an
            # unpredictable place, finds data-like noise in fresh memory instead of the marked poison.
            poisons = ["marked"] * (2 + secrets.randbelow(3))
            poisons.insert(secrets.randbelow(len(poisons) + 1), "noise")
            records, data = self.call(draw, poisons)
            exp = self.expect(draw)
            found, verdicts = judge_run(exp, records, data, self.deterministic)
            self.seen.append((draw, data["outputs"][-1]))
            if found is None:
                c, i = worst(verdicts)
                worst_c, worst_i = max(worst_c, c), max(worst_i, i)
                self.judged_calls += len(records)
                self.launches += sum(r["launches"] for r in records)
                n_calls = f"all {self.judged_calls} calls"
                details = {
                    "launch": f"{self.launches} Triton launches in {self.judged_calls} calls",
                    "guard": f"{n_calls}: only allocation, views and copies outside launches",
                    "isolation": f"{n_calls}: no replaced functions, no new threads, no foreign streams",
                    "outputs": f"{n_calls}: shapes, dtypes and strides as the region's",
                    "written": f"{n_calls}: no poisoned element left",
                    "uninitialized": f"{n_calls}: the same right outputs whether fresh memory held the poison "
                    "or data-like noise",
                    "inputs_unchanged": f"{n_calls}: inputs bit-identical after the call",
                    "deterministic": (
                        f"{n_calls}: bit-identical on the same inputs"
                        if self.deterministic
                        else "not asked: the region is nondeterministic by nature"
                    ),
                }
                for name, detail in details.items():
                    self.passed(name, detail)
                continue
            if found.reason in ("stateful", "nondeterministic"):
                found = self.uninitialized(draw) or found
            if found.reason in ("wrong_values", "low_precision", "nan_mismatch"):
                later = n > 0 or check != "values"
                found = (
                    self.stale(draw, data["outputs"][-1], self.seen[:-1])
                    or (self.stateful() if later else None)
                    or found
                )
            if check == "sizes" and found.reason in _SIZE_REASONS:
                found = Finding(
                    "sizes",
                    "wrong_at_size",
                    f"{found.reason} at {draw.label()}, while the region's own sizes passed: {found.message}",
                )
            self.reject(found.check, found.reason, found.message)
        if draws:
            self.passed(
                check,
                f"{len(draws)} draws ({', '.join(d.name for d in draws)}); worst mean rel error "
                f"{worst_c:.3g} (inductor {worst_i:.3g})",
            )
            if check == "values":
                self.passed(
                    "nan_inf",
                    "NaN/Inf positions match"
                    if any(d.dist == "nan_inf" for d in draws)
                    else "no float inputs to inject into",
                )

    def stale(
        self, draw: Draw, outs: list[torch.Tensor], earlier: list[tuple[Draw, list[torch.Tensor]]]
    ) -> Finding | None:
        """Do the outputs belong to other inputs: the candidate's own for an earlier draw, or seed 0's?"""
        for other, seen in earlier:
            if len(seen) == len(outs) and all(same_bits(a, b) for a, b in zip(seen, outs)):
                return Finding(
                    "values",
                    "stale_output",
                    f"the outputs for {draw.label()} are bit for bit the "
                    f"candidate's outputs for {other.label()}: results are reused, not computed",
                )
        seed0 = self.expect(Draw("seed 0", 0, "normal", draw.sizes, draw.positive))
        if [s.shape for s in seed0.specs] != [tuple(o.shape) for o in outs]:
            return None
        if all(v.ok for v in seed0.verdicts(outs)) and not all(v.ok for v in seed0.verdicts(self.expect(draw).ind)):
            return Finding(
                "values",
                "stale_output",
                f"the outputs for {draw.label()} are the reference outputs for "
                "make_inputs(seed=0): a memorized result, not a computed one",
            )
        return None

    def uninitialized(self, draw: Draw) -> Finding | None:
        """Calls on one draw disagreed: do they disagree by what fresh memory held, rather than by call order?

        Marked, noise, noise, marked: a kernel that changes every other call, or for good after N, does not
        split these calls by poisoning; one that behaves by what it reads from memory it never wrote does.
        """
        records, data = self.call(draw, ["marked", "noise", "noise", "marked"])
        if any(isolation(rec, "") or rec["outputs"] == [] for rec in records):
            return None
        return poison_split(self.expect(draw), records, data)

    def stateful(self) -> Finding | None:
        """A later draw failed: does the first draw, which passed, fail now on the same inputs?"""
        calls = self.calls
        assert self.first is not None
        records, data = self.call(self.first, ["marked"])
        found, _ = judge_run(self.expect(self.first), records, data, self.deterministic)
        if found is not None:
            return Finding(
                "stateful",
                "stateful",
                f"{self.first.label()} passed earlier and fails now, after {calls} calls: {found.message}",
            )
        return None

    def recheck(self) -> None:
        found = self.stateful()
        if found:
            self.reject(found.check, found.reason, found.message)
        self.passed("recheck", f"{self.first.label()} still right after {self.calls} calls")

    def time(self, draw: Draw) -> None:
        from llm_inductor.passes.cost import device_spec
        from llm_inductor.verify.timing import device_bandwidth, judge_speed, work

        assert self.worker is not None
        out = self.worker.dir / "timed.pt"
        exp = self.expect(draw)
        inputs = self.draws.inputs_file(draw, self.worker.dir)
        # Compiling Inductor (max-autotune benchmarks its choices) and timing take longer than a check.
        try:
            with GATE.shared(self.device):  # Inductor's compiles: no candidate code, beside other GPU steps
                prepared = self.request(
                    {
                        "op": "prepare",
                        "inputs": str(inputs),
                        "inductor_mode": self.mode,
                        "extra_modes": self.extra_modes,
                    },
                    3 * self.timeout,
                )
            if not prepared["ok"]:
                self.failed("speed", prepared)
            with GATE.exclusive(self.device):  # nothing else runs on this GPU meanwhile
                bandwidth = device_bandwidth()  # once per device and process
                resp = self.request(
                    {
                        "op": "time",
                        "inputs": str(inputs),
                        "inductor_mode": self.mode,
                        "extra_modes": self.extra_modes,
                        "out": str(out),
                    },
                    3 * self.timeout,
                )
        finally:
            inputs.unlink(missing_ok=True)
        self.memory["flush"] = FLUSH_BYTES
        if not resp["ok"]:
            self.failed("speed", resp)
        found = isolation(resp, "while timing")
        if found:
            self.reject(found.check, found.reason, found.message)
        # The last timed call's outputs, then a fresh draw: right when timed, and still right after.
        data = self.fetch(out)
        bad = [v for v in exp.verdicts(data["outputs"][0]) if not v.ok]
        if bad:
            self.reject("post_timing", bad[0].reason, f"the last timed call's output is wrong: {bad[0].detail}")
        spec = device_spec(self.device)
        # The bytes and FLOPs that set the roofline floor are counted here, on fake tensors, not taken from
        # the worker, where the candidate runs.
        report = {**resp, **work(self.region.forward, exp.inputs), "measured_bandwidth": bandwidth}
        reason, message, self.timings = judge_speed(report, self.cfg.speed_margin, spec.bandwidth, spec.flops)
        fresh = self.after
        assert fresh is not None
        records, data = self.call(fresh, ["marked", "marked"])
        found, _ = judge_run(self.expect(fresh), records, data, self.deterministic)
        if found:
            self.reject("post_timing", found.reason, f"after timing: {found.message}")
        self.passed("post_timing", "the last timed output and a fresh draw after timing are right")
        self.envelope["timed_sizes"] = dict(draw.sizes) or "static"
        if reason != "ok":
            self.reject("speed", reason, message)
        self.passed("speed", message)
