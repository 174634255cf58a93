"""Budgets per region and per run: LLM calls, tokens, dollars and wall time.

A call is admitted only if what is spent plus what is already in flight, plus this
call's own estimate, stays inside every limit, so N candidates drawn in parallel
cannot overshoot a budget by N-1 calls. Tokens of a call in flight are estimated
from its prompt plus the mean answer so far; the spend itself always uses the
answer's ``usage`` (or an estimate flagged as such).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from llm_inductor.config import Config
from llm_inductor.search.llm.providers import Completion

DEFAULT_ANSWER_TOKENS = 2500  # a kernel module with a sentence or two around it


@dataclass
class Spend:
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_estimated: bool = False
    dollars: float = 0.0
    seconds: float = 0.0  # wall time of finished search sessions on this region

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out

    def add(self, c: Completion) -> None:
        self.calls += 1
        self.tokens_in += c.tokens_in
        self.tokens_out += c.tokens_out
        self.tokens_estimated |= c.tokens_estimated
        self.dollars += c.cost

    def mean_answer(self) -> int:
        return self.tokens_out // self.calls if self.calls and self.tokens_out else DEFAULT_ANSWER_TOKENS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Spend:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(frozen=True)
class Limits:
    calls: int | None = None
    tokens: int | None = None
    dollars: float | None = None
    seconds: float | None = None

    @classmethod
    def per_region(cls, cfg: Config) -> Limits:
        return cls(cfg.max_calls, cfg.max_tokens, cfg.max_dollars, cfg.max_seconds)

    @classmethod
    def per_run(cls, cfg: Config) -> Limits:
        return cls(
            getattr(cfg, "run_max_calls", None),
            getattr(cfg, "run_max_tokens", None),
            cfg.run_max_dollars,
            cfg.run_max_seconds,
        )


@dataclass
class Meter:
    """Spend against limits, with reservations for calls in flight."""

    limits: Limits
    spend: Spend = field(default_factory=Spend)
    started: float = field(default_factory=time.monotonic)
    _inflight_calls: int = 0
    _inflight_tokens: int = 0
    _inflight_dollars: float = 0.0

    def elapsed(self) -> float:
        return self.spend.seconds + (time.monotonic() - self.started)

    def exhausted(self, calls: int = 0, tokens: int = 0, dollars: float = 0.0) -> str | None:
        """The first limit that spend + in flight + this much more would pass, as a reason; else None."""
        lim, s = self.limits, self.spend
        if lim.calls is not None and s.calls + self._inflight_calls + calls > lim.calls:
            return f"budget: calls ({s.calls}/{lim.calls})"
        if lim.tokens is not None and s.tokens + self._inflight_tokens + tokens > lim.tokens:
            return f"budget: tokens ({s.tokens}/{lim.tokens})"
        if lim.dollars is not None and s.dollars + self._inflight_dollars + dollars > lim.dollars:
            return f"budget: dollars (${s.dollars:.2f}/${lim.dollars:.2f})"
        if lim.seconds is not None and self.elapsed() >= lim.seconds:
            return f"budget: wall time ({self.elapsed():.0f}/{lim.seconds:.0f} s)"
        return None

    def reserve(self, tokens: int, dollars: float) -> None:
        self._inflight_calls += 1
        self._inflight_tokens += tokens
        self._inflight_dollars += dollars

    def settle(self, tokens: int, dollars: float, c: Completion | None) -> None:
        self._inflight_calls -= 1
        self._inflight_tokens -= tokens
        self._inflight_dollars -= dollars
        if c is not None:
            self.spend.add(c)

    def close_session(self) -> None:
        """Fold this session's wall time into the spend (a batch search spans many sessions)."""
        self.spend.seconds = self.elapsed()
        self.started = time.monotonic()


def call_estimate(prompt_tokens: int, meter: Meter, cfg: Config, discount: float = 1.0) -> tuple[int, float]:
    out = meter.spend.mean_answer()
    return prompt_tokens + out, discount * (prompt_tokens * cfg.price_in + out * cfg.price_out) / 1e6
