"""The search loop against a loopback OpenAI-compatible server, driven by the real ``openai`` client.

Each test scripts the server's answers, runs ``tune`` on a real RMSNorm region with
real Triton candidates (verified under the interpreter), and asserts the outcome,
what was sent back to the LLM, the token and cost accounting, and the budgets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llm_inductor.cache.store import MemoryStore
from llm_inductor.compile import state as _state
from llm_inductor.config import Config
from llm_inductor.search.search_state import load_state
from llm_inductor.search.tune import tune
from support.loopback import LoopbackLLM, Reply, sequence
from support.search import (
    GOOD,
    SYNTAX_ERROR,
    WRONG,
    answer,
    copy_region,
    read_jsonl,
    shared_region,
    verifier,
    with_timing,
)

SECRET = "sk-loopback-SECRET-4242"


@pytest.fixture
def region(tmp_path: Path) -> Path:
    return copy_region(shared_region(tmp_path), Path(Config.load()[0].cache_dir))


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch):
    def start(*replies: Reply, script=None) -> LoopbackLLM:
        llm = LoopbackLLM(script or sequence(*replies)).__enter__()
        servers.append(llm)
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", SECRET)
        return llm

    servers: list[LoopbackLLM] = []
    monkeypatch.setenv("LLM_INDUCTOR_INTERPRET", "1")
    yield start
    for s in servers:
        s.__exit__(None, None, None)


def run(region: Path, check=None, **options):
    cfg, _ = Config.load({"model": "loopback-model", "candidates": 1, "rounds": 3, **options})
    store = MemoryStore()
    report = tune([region], config=cfg, verifier=check or verifier(), store=store, progress=False)
    key16 = region.stem.removeprefix("region_")
    return report, store, load_state(cfg, key16), cfg


def attempts(cfg: Config) -> list[dict]:
    return read_jsonl(cfg.cache_path / "search" / "attempts.jsonl")


def test_good_kernel_wins_in_one_round_with_real_token_accounting(region, endpoint):
    llm = endpoint(Reply.text(answer(GOOD), usage=(1200, 300)))
    report, store, state, cfg = run(region, candidates=2)

    assert [r.outcome for r in report.rows] == ["winner"]
    assert state.done.startswith("target: correct")  # no GPU: a correct kernel is the target
    entry = store.lookup(state.key)
    assert entry is not None and entry.kernel_source == GOOD
    assert entry.speed["cpu"]["graph_ab"]["note"] == "not measured (cpu)"
    # Two candidates in parallel, one round; the prompt is the template filled with the region.
    assert len(llm.seen) == 2
    prompt = llm.seen[0].last_user
    assert llm.seen[0].body["model"] == "loopback-model"
    assert (
        region.read_text().strip() in prompt and "## Contract" in prompt and "in1: torch.float32 shape [33]" in prompt
    )
    # Tokens come from `usage`; cost from the configured prices.
    rows = attempts(cfg)
    assert [r["tokens_in"] for r in rows] == [1200, 1200] and not any(r["tokens_estimated"] for r in rows)
    assert state.spend.tokens == 2 * 1500 and state.spend.calls == 2
    assert state.spend.dollars == pytest.approx(2 * (1200 * cfg.price_in + 300 * cfg.price_out) / 1e6)
    assert entry.provenance["tokens_in"] == 2400 and entry.provenance["model"] == "loopback-model"


def test_syntax_error_then_fix_after_feedback(region, endpoint):
    llm = endpoint(Reply.text(answer(SYNTAX_ERROR)), Reply.text(answer(GOOD)))
    report, store, state, cfg = run(region)

    assert [a["outcome"] for a in state.attempts][-1] == "ok" and report.rows[0].outcome == "winner"
    first = state.attempts[0]
    assert not first["accepted"] and "syntax" in first["outcome"].lower() + first["message"].lower()
    # The second request replays the broken module and feeds back what the verifier said.
    turn = llm.seen[1].messages
    assert turn[-2]["role"] == "assistant" and "def forward(in0, in1)\n" in turn[-2]["content"]
    assert "Verifier result for your module: rejected" in turn[-1]["content"]
    assert first["message"].splitlines()[0][:40] in turn[-1]["content"]
    assert state.round == 2 and store.lookup(state.key) is not None


def test_wrong_numbers_then_fix(region, endpoint):
    llm = endpoint(Reply.text(answer(WRONG)), Reply.text(answer(GOOD)))
    report, store, state, cfg = run(region)

    first = state.attempts[0]
    assert not first["accepted"] and first["code"] == WRONG
    feedback = llm.seen[1].last_user
    assert f"rejected ({first['outcome']})" in feedback and "Fix it." in feedback
    assert report.rows[0].outcome == "winner" and store.lookup(state.key).kernel_source == GOOD


def test_slower_than_inductor_is_not_a_winner_and_stays_on_inductor(region, endpoint):
    """On the CPU speed is not judged, so the timing layer injects what a GPU run would say: 0.5x."""
    llm = endpoint(Reply.text(answer(GOOD)))
    report, store, state, cfg = run(region, check=with_timing(candidate_ms=2.0, inductor_ms=1.0), rounds=2)

    assert [a["outcome"] for a in state.attempts] == ["slower", "slower"]
    assert report.rows[0].outcome == "slower than Inductor" and report.winners == 0
    assert state.done == "rounds (2)"
    # The second round was told it is correct but slow, with the numbers.
    feedback = llm.seen[1].last_user
    assert "correct, but slower than Inductor" in feedback and "0.50x" in feedback
    assert store.lookup(state.key) is None and len(store) == 0


def test_fast_enough_reaches_the_speedup_target(region, endpoint):
    endpoint(Reply.text(answer(GOOD)))
    report, store, state, cfg = run(region, check=with_timing(candidate_ms=0.5, inductor_ms=1.0))

    assert state.done == "target: 2.00x >= 1.5x" and state.round == 1
    assert store.lookup(state.key).speed["cpu"]["speedup"] == pytest.approx(2.0)


def test_429_is_retried_inside_one_call(region, endpoint):
    llm = endpoint(Reply.error(429), Reply.text(answer(GOOD)))
    report, store, state, cfg = run(region)

    assert len(llm.seen) == 2  # the SDK retried the 429 once
    assert state.spend.calls == 1 and state.attempts[0]["http_attempts"] == 2
    assert report.rows[0].outcome == "winner"


def test_500s_until_the_call_budget_is_spent(region, endpoint):
    llm = endpoint(Reply.error(500))
    report, store, state, cfg = run(region, candidates=2, rounds=5, max_calls=3)

    assert state.spend.calls == 3 and state.done == "budget: calls (3/3)"
    assert [a["outcome"] for a in state.attempts] == ["server_error"] * 3
    assert len(llm.seen) == 3 * 3  # each call: the first try and the SDK's 2 retries
    assert report.rows[0].outcome == "no winner: server_error" and len(store) == 0


def test_answer_without_code_block_gets_told_so(region, endpoint):
    llm = endpoint(Reply.text("Use a two-pass reduction over each row.", usage=None), Reply.text(answer(GOOD)))
    report, store, state, cfg = run(region)

    first = state.attempts[0]
    assert first["outcome"] == "no_code" and first["tokens_estimated"]
    assert "no ```python code block" in llm.seen[1].last_user
    assert llm.seen[1].messages[-2]["content"] == "Use a two-pass reduction over each row."
    assert report.rows[0].outcome == "winner" and report.rows[0].tokens_estimated


def test_timeout_is_a_failed_attempt_within_budget(region, endpoint):
    endpoint(Reply(answer(GOOD), delay=1.5))
    report, store, state, cfg = run(region, request_timeout=0.3, max_calls=1)

    assert [a["outcome"] for a in state.attempts] == ["timeout"]
    assert state.attempts[0]["llm_seconds"] >= 0.3 * 3
    assert state.done == "budget: calls (1/1)" and len(store) == 0


def test_the_api_key_is_never_written_or_logged(region, endpoint, caplog):
    endpoint(Reply.text(answer(WRONG)), Reply.text(answer(GOOD)))
    with caplog.at_level("DEBUG"):
        report, store, state, cfg = run(region)
    assert report.rows[0].outcome == "winner"
    leaked = [p for p in cfg.cache_path.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaked == []
    assert SECRET not in caplog.text
    assert SECRET not in json.dumps(store.lookup(state.key).to_dict())


def test_failed_search_leaves_the_region_on_inductor(region, endpoint):
    endpoint(Reply.text(answer(WRONG)))
    report, store, state, cfg = run(region, rounds=2)
    assert report.winners == 0 and store.lookup(state.key) is None

    # A compile with this store in interpret mode substitutes nothing: Inductor keeps the region.
    _state.set_store(store)
    _state.reset()
    torch._dynamo.reset()
    w = torch.randn(33)
    f = lambda x: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w  # noqa: E731
    import llm_inductor

    x = torch.randn(8, 33)
    with torch.no_grad():
        y = torch.compile(f, backend=llm_inductor.backend(interpret=True, min_region_us=0))(x)
    torch.testing.assert_close(y, f(x))
    assert _state.stats()["misses"] == 1 and _state.stats()["substituted"] == 0


def test_a_verifier_that_cannot_run_halts_the_search_and_tune_exits_3(region, endpoint, monkeypatch, capsys):
    """Every verification worker dies before it is ready: the answer is kept unjudged, not fed back as a
    rejection, no second round is asked for, and `tune` says so with exit 3 rather than "no winner" (exit 1)."""
    from llm_inductor.cli import main
    from llm_inductor.verify import engine, pool

    monkeypatch.setattr(engine, "POOL", pool.Pool())
    monkeypatch.setattr(pool.sys, "executable", "/bin/false")
    monkeypatch.setattr("llm_inductor.cli.log_path", lambda: region.parent / "cli.log")
    llm = endpoint(Reply.text(answer(GOOD)))
    monkeypatch.setenv("LLM_INDUCTOR_MODEL", "loopback-model")
    monkeypatch.setenv("LLM_INDUCTOR_CANDIDATES", "1")
    monkeypatch.setenv("LLM_INDUCTOR_ROUNDS", "3")
    assert main(["tune", str(region)]) == 3
    out, err = capsys.readouterr()
    assert "harness failure" in out and "internal error: harness failure" in err and "no winner:" not in err
    state = load_state(Config.load()[0], region.stem.removeprefix("region_"))
    assert len(llm.seen) == 1 and state.attempts == [] and [a["code"] for a in state.unjudged] == [GOOD]
    assert state.unjudged[0]["outcome"] == "harness:worker_start" and state.done is None
