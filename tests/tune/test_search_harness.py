"""The search loop keeps what the verifier could not judge apart from what it judged.

A harness failure (the verifier's ``harness_failure``, or the verifier raising) is not an attempt: the answer is
kept unjudged, never ranked or fed back, and the region's search halts for the run without a stop reason.
A verdict on the region (``degenerate_region``) ends its search: no candidate is to blame for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from llm_inductor.config import Config
from llm_inductor.search.context import load_context
from llm_inductor.search.llm.providers import Completion
from llm_inductor.search.loop import Searcher
from llm_inductor.search.progress import summary_row
from llm_inductor.search.search_state import SearchState, load_state
from support.search import GOOD, WRONG, answer, copy_region, read_jsonl, shared_region

NOT_STARTED = {
    "accepted": False,
    "reason": "harness:worker_start",
    "harness_failure": True,
    "message": "the verifier failed on all 3 tries: the verification worker did not start",
}
DEGENERATE = {
    "accepted": False,
    "reason": "degenerate_region",
    "message": "values: the float64 reference is zero up to rounding ... not worth tuning",
}
ACCEPTED = {"accepted": True, "reason": "ok", "message": "all checks passed"}


@pytest.fixture
def region(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLM_INDUCTOR_INTERPRET", "1")
    return copy_region(shared_region(tmp_path), Path(Config.load()[0].cache_dir))


class Verifier:
    """Answers each call with the next of ``results``: a result dict, or an exception to raise."""

    def __init__(self, *results: Any) -> None:
        self.results, self.seen = list(results), []

    def __call__(self, region_path: str, source: str, cfg: Config) -> dict[str, Any]:
        self.seen.append(source)
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


def start(region: Path, verifier: Verifier, state: SearchState | None = None, **options: Any):
    cfg, _ = Config.load({"candidates": 2, "rounds": 3, "strategy": "refine", **options})
    ctx = load_context(region, cfg, None, "cpu")
    state = state or SearchState(ctx.key, str(region), cfg.strategy)
    lines: list[str] = []
    s = Searcher(
        cfg,
        SimpleNamespace(name="stub", model="stub-model"),
        "cpu",
        verifier,
        progress=lambda st, c, what: lines.append(what),
    )
    return s, state, ctx, cfg, lines


def test_a_harness_failure_is_kept_unjudged_and_halts_the_region_for_the_run(region):
    verify = Verifier(NOT_STARTED)
    s, state, ctx, cfg, lines = start(region, verify)
    first = s.plan(state, ctx, s.region_meter(state))
    assert len(first) == 2
    s.consume(state, ctx, first[0], Completion(answer(GOOD)))
    s.consume(state, ctx, first[1], Completion(answer(WRONG)))

    assert verify.seen == [GOOD]  # the second answer is not sent to a harness that just failed
    assert state.attempts == [] and [a["code"] for a in state.unjudged] == [GOOD, WRONG]
    assert [a["outcome"] for a in state.unjudged] == ["harness:worker_start"] * 2
    assert s.plan(state, ctx, s.region_meter(state)) == [] and state.done is None  # halted, not stopped
    assert any("not judged, harness failure (harness:worker_start)" in line for line in lines)
    row = summary_row(state, ctx)
    assert row.outcome == "harness failure" and "2 unjudged" in row.stop and "did not start" in row.stop
    # The record of the LLM calls keeps them (their cost is spent), as not judged.
    rows = read_jsonl(cfg.cache_path / "search" / "attempts.jsonl")
    assert [r["outcome"] for r in rows] == ["harness:worker_start"] * 2 and not any(r["accepted"] for r in rows)

    # A later run goes on with the region; nothing of the unjudged answers reaches the LLM.
    later = Verifier(ACCEPTED)
    s2, state2, ctx, cfg, _ = start(region, later, load_state(cfg, ctx.key16))
    second = s2.plan(state2, ctx, s2.region_meter(state2))
    assert len(second) == 2 and all(r.parent is None for r in second)  # fresh drafts: there is nothing to refine
    sent = json.dumps([r.messages for r in second])
    assert "harness" not in sent and "did not start" not in sent and "_rms" not in sent
    s2.consume(state2, ctx, second[0], Completion(answer(GOOD)))
    assert state2.harness is None and [a["outcome"] for a in state2.attempts] == ["ok"]
    assert summary_row(state2, ctx).outcome != "harness failure"


def test_a_verifier_that_raises_is_a_harness_failure_not_the_candidates(region):
    s, state, ctx, cfg, _ = start(region, Verifier(ZeroDivisionError("float division by zero")), candidates=1)
    (request,) = s.plan(state, ctx, s.region_meter(state))
    a = s.consume(state, ctx, request, Completion(answer(GOOD)))
    assert a["outcome"] == "harness:verifier_error" and "ZeroDivisionError" in a["message"]
    assert state.attempts == [] and state.unjudged == [a] and state.ranked() == []


def test_a_degenerate_region_ends_its_search_and_is_no_candidates_fault(region):
    verify = Verifier(DEGENERATE, DEGENERATE)
    s, state, ctx, cfg, _ = start(region, verify)
    for request in s.plan(state, ctx, s.region_meter(state)):
        s.consume(state, ctx, request, Completion(answer(GOOD)))
    assert [a["outcome"] for a in state.attempts] == ["degenerate_region"] * 2
    assert state.done.startswith("degenerate_region: ") and "not worth tuning" in state.done
    assert state.ranked() == []  # never a parent to refine, never fed back
    assert s.plan(state, ctx, s.region_meter(state)) == []
    assert summary_row(state, ctx).stop == state.done
