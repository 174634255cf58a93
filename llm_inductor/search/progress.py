"""What a tuning run shows: a live line per region (stderr) and the closing summary table."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    )


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def summary_table(rows: list[SummaryRow]) -> str:
    head = f"{'region':58} {'outcome':24} {'speedup':>8} {'%roof':>6} {'calls':>5} {'tokens':>13} {'cost':>8}  stop"
    lines = [head, "-" * len(head)]
    for r in rows:
        region = r.region if len(r.region) <= 58 else r.region[:57] + "…"
        lines.append(
            f"{region:58} {r.outcome[:24]:24} {_num(r.speedup, '.2f') + ('x' if r.speedup else ''):>8} "
            f"{_num(r.roofline_pct, '.0f'):>6} {r.calls:>5} {_tokens(r.tokens, r.tokens_estimated):>13} "
            f"{'$' + format(r.cost, '.3f'):>8}  {r.stop}"
        )
        if r.in_graph:
            lines.append(f"{'':58} in-graph: {r.in_graph}")
    if any(r.tokens_estimated for r in rows):
        lines.append("~ (est.): some answers had no `usage`; their tokens and cost are estimates (4 chars/token).")
    return "\n".join(lines)


def config_lines(cfg: Config) -> str:
    return "\n".join(f"  {name:18} {value!s:28} {env}" for name, env, value in cfg.describe())
