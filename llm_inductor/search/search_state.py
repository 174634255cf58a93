"""The search state of one region, kept in ``<cache_dir>/search/state/<key16>.json`` between rounds.

A batch search runs one round per export/import, possibly days and machines
apart; a live search saves after every answer, so a killed run resumes. The state
holds every attempt (with its module and feedback, which refinement replays), the
requests still waiting for an answer, the answers the verifier could not judge (a
harness failure: kept with their modules, never ranked or fed back), the spend so
far and, once it stops, why.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_inductor._files import atomic_write
from llm_inductor.config import Config
from llm_inductor.search.llm.budget import Spend
from llm_inductor.search.llm.providers import Request
from llm_inductor.verify.result import REGION_REASONS

STATE_SCHEMA = 1
PROVIDER_FAILURES = (
    "rate_limited",
    "server_error",
    "timeout",
    "connection",
    "bad_response",
    "replay_miss",
    "batch_error",
    "cancelled",
)


def score(a: dict[str, Any]) -> tuple[float, float]:
    """Rank attempts for refinement: correct and fast first, then wrong numbers, then failures to run."""
    if a.get("accepted"):
        return (3.0, a.get("speedup") or 1.0)
    if not a.get("code"):
        return (0.5 if a.get("outcome") == "no_code" else -1.0, 0.0)
    reason = str(a.get("outcome", ""))
    if reason in REGION_REASONS:
        return (-1.0, 0.0)  # the region's verdict, not this module's: nothing to refine
    close = any(w in reason for w in ("mismatch", "numer", "tolerance", "wrong", "nan"))
    return (2.0 if close else 1.0, 0.0)


@dataclass
class SearchState:
    key: str
    region_path: str
    strategy: str
    round: int = 0  # the last round whose requests were issued
    attempts: list[dict[str, Any]] = field(default_factory=list)
    outstanding: dict[str, dict[str, Any]] = field(default_factory=dict)  # custom_id → {messages, parent}
    unjudged: list[dict[str, Any]] = field(default_factory=list)  # answers a harness failure left unjudged
    harness: str | None = None  # the last harness failure, until the verifier judges an answer again
    spend: Spend = field(default_factory=Spend)
    done: str | None = None  # the stop reason, once stopped
    result: dict[str, Any] | None = None  # what was stored: entry_id, status, gate
    created: float = field(default_factory=time.time)
    schema: int = STATE_SCHEMA

    @property
    def key16(self) -> str:
        return self.key[:16]

    def best(self) -> dict[str, Any] | None:
        """The best correct attempt, or None."""
        correct = [a for a in self.attempts if a.get("accepted")]
        return max(correct, key=score) if correct else None

    def winner(self) -> dict[str, Any] | None:
        """The best attempt that beats Inductor (or is correct, where speed is not judged)."""
        wins = [a for a in self.attempts if a.get("outcome") == "ok"]
        return max(wins, key=score) if wins else None

    def ranked(self) -> list[dict[str, Any]]:
        return sorted((a for a in self.attempts if score(a)[0] >= 0), key=score, reverse=True)

    def issue(self, requests: list[Request]) -> None:
        for r in requests:
            self.outstanding[r.custom_id] = {"messages": r.messages, "parent": r.parent}

    def requests(self) -> list[Request]:
        return [Request(cid, o["messages"], o.get("parent")) for cid, o in self.outstanding.items()]

    def history(self) -> str:
        """``r1: 2 syntax_error, 1 mismatch; r2: 1 ok``: earlier outcomes, for feedback turns."""
        by_round: dict[int, dict[str, int]] = {}
        for a in self.attempts:
            counts = by_round.setdefault(a["round"], {})
            counts[a["outcome"]] = counts.get(a["outcome"], 0) + 1
        return "; ".join(
            f"r{r}: " + ", ".join(f"{n} {o}" for o, n in sorted(c.items())) for r, c in sorted(by_round.items())
        )

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["spend"] = self.spend.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchState:
        if d.get("schema") != STATE_SCHEMA:
            raise ValueError(f"search state schema {d.get('schema')!r} (this build reads {STATE_SCHEMA})")
        d = dict(d)
        d["spend"] = Spend.from_dict(d.get("spend", {}))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def state_path(cfg: Config, key16: str) -> Path:
    return cfg.cache_path / "search" / "state" / f"{key16}.json"


def _relocated(cfg: Config, state: SearchState) -> SearchState:
    """A cache directory travels between machines: a region file missing at its recorded
    absolute path is looked up under this cache's ``regions/`` folder by name."""
    recorded = Path(state.region_path)
    if not recorded.is_file():
        here = cfg.cache_path / "regions" / recorded.name
        if here.is_file():
            state.region_path = str(here)
    return state


def load_state(cfg: Config, key16: str) -> SearchState | None:
    path = state_path(cfg, key16)
    if not path.is_file():
        return None
    return _relocated(cfg, SearchState.from_dict(json.loads(path.read_text())))


def save_state(cfg: Config, state: SearchState) -> None:
    path = state_path(cfg, state.key16)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(state.to_dict(), default=str))


def all_states(cfg: Config) -> list[SearchState]:
    folder = cfg.cache_path / "search" / "state"
    out = []
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out.append(_relocated(cfg, SearchState.from_dict(json.loads(p.read_text()))))
        except (ValueError, TypeError):
            continue
    return out
