"""What a tuning run shows: a live line per region (stderr) and the closing summary table."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from llm_inductor.config import Config
from llm_inductor.search.context import RegionContext
from llm_inductor.search.search_state import SearchState


def _tokens(n: int, estimated: bool) -> str:
    text = f"{n / 1000:.1f}k" if n >= 1000 else str(n)
    return f"~{text} (est.)" if estimated else text


class ProgressLine:
    """``[key16] round 2 · 7 tried · best 1.31x · 24.1k tok · $0.07 · r2 c3: mismatch``.

    On a terminal the line rewrites itself; elsewhere (logs, CI) each update is a line.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._open = False

    def __call__(self, state: SearchState, ctx: RegionContext, what: str) -> None:
        best = state.best()
        if best is None:
            best_text = "no correct kernel yet"
        elif best.get("speedup"):
            best_text = f"best {best['speedup']:.2f}x"
        else:
            best_text = "correct (speed not judged)"
        s = state.spend
        line = (
            f"[{ctx.key16}] round {state.round} · {len(state.attempts)} tried · {best_text} · "
            f"{_tokens(s.tokens, s.tokens_estimated)} tok · ${s.dollars:.2f} · {what}"
        )
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self._open = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def end(self) -> None:
        if self._open:
            self.stream.write("\n")
            self._open = False


@dataclass
class SummaryRow:
    region: str  # key16 (ops) <- shapes
    key16: str
    outcome: str  # winner | slows_graph | ungated | slower | no winner: <best reason> | waiting | harness failure
    stop: str
    rounds: int
    speedup: float | None
    roofline_pct: float | None
    calls: int
    tokens: int
    tokens_estimated: bool
    cost: float
    entry_id: str | None = None
    in_graph: str = ""
    # Verification throughput and memory (``verify_candidate`` records them per attempt; see ``device_time``).
    verified: int = 0  # attempts verified: judged, or left unjudged by a harness failure
    verify_intervals: list[list[float]] = field(default_factory=list)  # their [start, end] (time.time()), merged
    verify_untimed_s: float = 0.0  # verify_seconds of older records that carry no interval (verified one at a time)
    device_seconds: float = 0.0  # the union of the intervals, plus the untimed seconds
    per_device_minute: float | None = None  # verified / device minutes; None before any device time
    gpu_peak_mib: float | None = None  # the largest verification worker's GPU peak; None without a GPU or a record
    interpreter: bool = False  # verified on the CPU under the Triton interpreter: no GPU, not a GPU's rate

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- device time


def merge_intervals(intervals: Iterable[Iterable[float]]) -> list[list[float]]:
    """Overlapping or touching ``[start, end]`` intervals merged, sorted; empty or reversed ones dropped."""
    merged: list[list[float]] = []
    for start, end in sorted((float(a), float(b)) for a, b in intervals):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def union_seconds(intervals: Iterable[Iterable[float]]) -> float:
    """The length of the union of the intervals: verifications that ran at once count once."""
    return sum(end - start for start, end in merge_intervals(intervals))


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def verified_attempts(state: SearchState) -> list[dict[str, Any]]:
    """The region's attempts that went through the verifier (``verify_seconds``), judged or harness-unjudged."""
    return [a for a in [*state.attempts, *state.unjudged] if _number(a.get("verify_seconds")) is not None]


def device_time(attempts: Iterable[dict[str, Any]]) -> tuple[list[list[float]], float]:
    """(the merged ``[verify_started, verify_ended]`` intervals, the ``verify_seconds`` of attempts without one).

    Older records have no interval; they were verified one at a time, so their seconds add up.
    """
    intervals, untimed = [], 0.0
    for a in attempts:
        start, end = _number(a.get("verify_started")), _number(a.get("verify_ended"))
        if start is not None and end is not None and end >= start:
            intervals.append((start, end))
        else:
            untimed += _number(a.get("verify_seconds")) or 0.0
    return merge_intervals(intervals), untimed


def per_minute(count: int, seconds: float) -> float | None:
    return count / (seconds / 60.0) if count and seconds > 0 else None


def _attempt_peak(a: dict[str, Any]) -> float | None:
    """``gpu_peak_mib``, else (an older winner that kept its verification) the record's worker peak."""
    peak = _number(a.get("gpu_peak_mib"))
    if peak is None:
        memory = (a.get("verification") or {}).get("memory") if isinstance(a.get("verification"), dict) else None
        worker = _number(memory.get("worker_peak")) if isinstance(memory, dict) else None
        peak = worker / 2**20 if worker is not None else None
    return peak


def gpu_peak_mib(attempts: Iterable[dict[str, Any]]) -> float | None:
    peaks = [p for p in map(_attempt_peak, attempts) if p is not None]
    return max(peaks) if peaks else None


def summary_row(state: SearchState, ctx: RegionContext) -> SummaryRow:
    best = state.winner() or state.best()
    res = state.result or {}
    if res.get("status") == "served":
        outcome = "winner"
    elif res.get("status"):
        outcome = res["status"]
    elif state.outstanding:
        outcome = "waiting for answers"
    elif state.best() is not None:
        outcome = "slower than Inductor" if state.winner() is None else "winner (not stored)"
    elif state.harness:  # the verifier failed where no candidate was at fault: say so, not "no winner"
        outcome = "harness failure"
    else:
        ranked = state.ranked()
        outcome = f"no winner: best {ranked[0]['outcome']}" if ranked else "no winner: no answer"
        if not ranked and state.attempts:
            outcome = f"no winner: {state.attempts[-1]['outcome']}"
    stop = state.done or (f"{len(state.unjudged)} unjudged, halted by {state.harness}" if state.harness else "")
    s = state.spend
    verified = verified_attempts(state)
    intervals, untimed = device_time(verified)
    seconds = union_seconds(intervals) + untimed
    interpreter = not ctx.facts.is_gpu
    return SummaryRow(
        ctx.summary(),
        ctx.key16,
        outcome,
        stop,
        state.round,
        best.get("speedup") if best else None,
        best.get("roofline_pct") if best else None,
        s.calls,
        s.tokens,
        s.tokens_estimated,
        s.dollars,
        res.get("entry_id"),
        (res.get("gate") or {}).get("note", ""),
        verified=len(verified),
        verify_intervals=intervals,
        verify_untimed_s=untimed,
        device_seconds=seconds,
        per_device_minute=per_minute(len(verified), seconds),
        gpu_peak_mib=None if interpreter else gpu_peak_mib(verified),
        interpreter=interpreter,
    )


@dataclass
class RunTotal:
    """The whole run: every region's verified attempts over the union of every region's intervals."""

    verified: int = 0
    device_seconds: float = 0.0
    per_device_minute: float | None = None
    worker_gpu_peak_mib: float | None = None  # the largest worker peak of any region
    parent_gpu_peak_mib: float | None = None  # this process's torch.cuda.max_memory_allocated; None: not measured
    interpreter: bool = False  # no GPU: verified under the Triton interpreter

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        spent = _duration(self.device_seconds)
        if self.interpreter:
            rate = (
                f"run: {self.verified} candidate(s) verified in {spent} under the Triton interpreter "
                f"(CPU; not a GPU's rate) = {_rate(self.per_device_minute)} per minute"
            )
            return f"{rate}; peak GPU memory: no GPU"
        rate = (
            f"run: {self.verified} candidate(s) verified in {spent} of device time = "
            f"{_rate(self.per_device_minute)} per device-minute"
        )
        parent = "not measured" if self.parent_gpu_peak_mib is None else f"{_mib(self.parent_gpu_peak_mib)} MiB"
        worker = "not recorded" if self.worker_gpu_peak_mib is None else f"{_mib(self.worker_gpu_peak_mib)} MiB"
        return f"{rate}; peak GPU memory: parent {parent} + largest worker {worker}"


def run_total(rows: list[SummaryRow], parent_gpu_peak_mib: float | None = None, device: str | None = None) -> RunTotal:
    """``device``: the run's target ("cuda" or "cpu"); without it, a run is the interpreter's when every row is."""
    interpreter = device == "cpu" if device else bool(rows) and all(r.interpreter for r in rows)
    verified = sum(r.verified for r in rows)
    seconds = union_seconds(i for r in rows for i in r.verify_intervals) + sum(r.verify_untimed_s for r in rows)
    peaks = [r.gpu_peak_mib for r in rows if r.gpu_peak_mib is not None]
    return RunTotal(
        verified,
        seconds,
        per_minute(verified, seconds),
        None if interpreter else (max(peaks) if peaks else None),
        None if interpreter else parent_gpu_peak_mib,
        interpreter,
    )


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}" if x < 1000 else f"{x:.0f}"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def _mib(x: float) -> str:
    return f"{x:.1f}" if x < 10 else f"{x:.0f}"


def _row_rate(r: SummaryRow) -> str:
    return _rate(r.per_device_minute) + ("*" if r.interpreter and r.per_device_minute is not None else "")


def _row_peak(r: SummaryRow) -> str:
    return "no GPU" if r.interpreter else "-" if r.gpu_peak_mib is None else _mib(r.gpu_peak_mib)


def summary_table(rows: list[SummaryRow], total: RunTotal | None = None) -> str:
    """The table, its notes and the run's total line (``total``; from the rows alone when not given)."""
    head = (
        f"{'region':58} {'outcome':24} {'speedup':>8} {'%roof':>6} {'calls':>5} {'tokens':>13} {'cost':>8} "
        f"{'verified':>8} {'cand/dev-min':>12} {'peak MiB':>8}  stop"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        region = r.region if len(r.region) <= 58 else r.region[:57] + "…"
        lines.append(
            f"{region:58} {r.outcome[:24]:24} {_num(r.speedup, '.2f') + ('x' if r.speedup else ''):>8} "
            f"{_num(r.roofline_pct, '.0f'):>6} {r.calls:>5} {_tokens(r.tokens, r.tokens_estimated):>13} "
            f"{'$' + format(r.cost, '.3f'):>8} {r.verified:>8} {_row_rate(r):>12} {_row_peak(r):>8}  {r.stop}"
        )
        if r.in_graph:
            lines.append(f"{'':58} in-graph: {r.in_graph}")
    if any(r.tokens_estimated for r in rows):
        lines.append("~ (est.): some answers had no `usage`; their tokens and cost are estimates (4 chars/token).")
    if any(r.verified for r in rows):
        lines.append("cand/dev-min: candidates verified per minute of verification (verifications at once count once)")
        lines.append("peak MiB: the largest verification worker's GPU peak (its torch.cuda.max_memory_allocated)")
    if any(r.interpreter and r.per_device_minute is not None for r in rows):
        lines.append("* measured under the Triton interpreter on the CPU: no GPU, so not a GPU's rate.")
    total = total if total is not None else run_total(rows)
    lines.append(total.line())
    return "\n".join(lines)


def config_lines(cfg: Config) -> str:
    return "\n".join(f"  {name:18} {value!s:28} {env}" for name, env, value in cfg.describe())


def extension_table(extensions: list[Any]) -> str:
    """Family kernels timed at new sizes by ``tune --pending`` (``search.families.Extension``): one line each."""
    lines = ["family kernels extended by verification and timing (no LLM):"]
    for e in extensions:
        sizes = ",".join(f"{k}={v}" for k, v in sorted(e.sizes.items(), key=lambda kv: int(kv[0][1:])))
        speed = f"{e.speedup:.2f}x" if isinstance(e.speedup, (int, float)) else "-"
        lines.append(f"  {e.key16}  family {e.family16}  at {sizes:28}  {speed:>7}  {e.outcome}")
    return "\n".join(lines)
