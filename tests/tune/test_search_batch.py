"""Batch files and replay: export → answers in the Batch output format → import → next round or winner.

The round trip ends where it matters: a fresh process compiling the model with
``backend="llm"`` finds the stored winner in the persistent cache and runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llm_inductor.cli import main
from llm_inductor.config import Config
from llm_inductor.search.llm.batch import output_line, parse_custom_id, read_requests
from llm_inductor.search.search_state import load_state
from llm_inductor.search.tune import tune
from support.search import COMPILE_SCRIPT, GOOD, WRONG, answer, copy_region, read_jsonl, shared_region, verifier


@pytest.fixture
def region(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLM_INDUCTOR_INTERPRET", "1")
    return copy_region(shared_region(tmp_path), Path(Config.load()[0].cache_dir))


def answer_file(path: Path, requests_file: Path, code: str, usage=(900, 250)) -> Path:
    path.write_text(
        "".join(
            output_line(
                r.custom_id, answer(code), dict(prompt_tokens=usage[0], completion_tokens=usage[1]) if usage else None
            )
            + "\n"
            for r in read_requests(requests_file)
        )
    )
    return path


def test_batch_round_trip_to_a_later_compile(region, tmp_path, monkeypatch):
    cfg, _ = Config.load({"candidates": 2, "rounds": 3})
    key16 = region.stem.removeprefix("region_")
    requests = tmp_path / "requests.jsonl"

    # Round 1: export the pending region's prompts in the Batch API request format.
    report = tune(pending=True, export_batch=requests, config=cfg, verifier=verifier(), progress=False)
    assert report.exported == 2 and report.rows[0].outcome == "waiting for answers"
    lines = read_jsonl(requests)
    assert [line["custom_id"] for line in lines] == [f"{key16}-r1-c0", f"{key16}-r1-c1"]
    assert {line["method"] for line in lines} == {"POST"} and {line["url"] for line in lines} == {
        "/v1/chat/completions"
    }
    assert region.read_text().strip() in lines[0]["body"]["messages"][-1]["content"]

    # Wrong answers: import verifies them, and writes round 2 with the feedback.
    nxt = tmp_path / "round2.jsonl"
    report = tune(
        import_batch=answer_file(tmp_path / "out1.jsonl", requests, WRONG),
        export_batch=nxt,
        config=cfg,
        verifier=verifier(),
        progress=False,
    )
    assert report.answered == 2 and report.exported == 2 and report.winners == 0
    r2 = read_requests(nxt)
    assert {parse_custom_id(r.custom_id).round for r in r2} == {2}
    assert "Verifier result for your module: rejected" in r2[0].messages[-1]["content"]
    assert "BLOCK + eps" in r2[0].messages[-2]["content"]  # the wrong module, replayed as the assistant turn

    # Good answers, one without `usage`: a winner in the persistent store, tokens marked as estimates.
    out2 = tmp_path / "out2.jsonl"
    answer_file(out2, nxt, GOOD)
    first, rest = out2.read_text().splitlines()
    no_usage = json.loads(rest)
    del no_usage["response"]["body"]["usage"]
    out2.write_text(first + "\n" + json.dumps(no_usage) + "\n")
    report = tune(import_batch=out2, config=cfg, verifier=verifier(), progress=False)
    assert report.winners == 1 and report.exported == 0
    state = load_state(cfg, key16)
    assert state.done.startswith("target") and state.spend.calls == 4 and state.spend.tokens_estimated
    # Batch answers bill at half the live price.
    billed = [a for a in state.attempts if not a["tokens_estimated"]]
    assert billed[0]["cost"] == pytest.approx(0.5 * (900 * cfg.price_in + 250 * cfg.price_out) / 1e6)

    # A fresh process compiles the model and serves the stored kernel from the persistent cache.
    env = {
        **os.environ,
        "LLM_INDUCTOR_CACHE_DIR": cfg.cache_dir,
        "LLM_INDUCTOR_INTERPRET": "1",
        "TRITON_INTERPRET": "1",
        "LLM_INDUCTOR_MIN_REGION_US": "0",
    }
    proc = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stats = json.loads(proc.stdout.split("STATS", 1)[1])
    assert stats["hits"] == 1 and stats["substituted"] == 1 and stats["kernel_calls"] >= 1


def test_import_of_unknown_answers_is_a_usage_error(region, tmp_path, capsys):
    bogus = tmp_path / "out.jsonl"
    bogus.write_text(output_line("0123456789abcdef-r1-c0", answer(GOOD)) + "\n")
    assert main(["tune", "--import-batch", str(bogus)]) == 2
    assert "no answer matches an outstanding request" in capsys.readouterr().err
    bogus.write_text('{"custom_id": "nope"}\n')
    assert main(["tune", "--import-batch", str(bogus)]) == 2


def test_replay_reanswers_a_recorded_search(region, tmp_path, monkeypatch):
    """A batch search's responses file is a replay file: replaying it reproduces the winner."""
    cfg, _ = Config.load({"candidates": 1})
    requests = tmp_path / "requests.jsonl"
    tune([region], export_batch=requests, config=cfg, verifier=verifier(), progress=False)
    tune(
        import_batch=answer_file(tmp_path / "out.jsonl", requests, GOOD),
        config=cfg,
        verifier=verifier(),
        progress=False,
    )
    recorded = cfg.cache_path / "search" / "responses.jsonl"
    assert len(read_jsonl(recorded)) == 1

    fresh = tmp_path / "fresh_cache"
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(fresh))
    cfg2, _ = Config.load({"provider": "replay", "replay": str(recorded), "candidates": 1})
    region2 = copy_region(region, fresh)
    report = tune([region2], config=cfg2, verifier=verifier(), progress=False)
    assert report.rows[0].outcome == "winner" and report.provider == "replay"
    assert load_state(cfg2, region.stem.removeprefix("region_")).attempts[0]["code"] == GOOD


def test_an_import_cut_short_goes_on_from_a_moved_cache(region, tmp_path, monkeypatch):
    """Rounds run machines apart: the cache directory is copied elsewhere, and an import that was
    killed between consuming answers and writing the next round is finished by running it again."""
    import shutil

    import llm_inductor.search.tune as tune_mod

    cfg, _ = Config.load({"candidates": 2, "rounds": 3})
    key16 = region.stem.removeprefix("region_")
    requests = tmp_path / "requests.jsonl"
    tune(pending=True, export_batch=requests, config=cfg, verifier=verifier(), progress=False)
    out1 = answer_file(tmp_path / "out1.jsonl", requests, WRONG)

    def killed(*args, **kwargs):
        raise SystemExit(124)  # `timeout` on the GPU machine, after both answers were consumed

    with monkeypatch.context() as m:
        m.setattr(tune_mod, "_export", killed)
        with pytest.raises(SystemExit):
            tune(
                import_batch=out1,
                export_batch=tmp_path / "never.jsonl",
                config=cfg,
                verifier=verifier(),
                progress=False,
            )
    stranded = load_state(cfg, key16)
    assert len(stranded.attempts) == 2 and not stranded.outstanding and stranded.done is None

    moved = tmp_path / "elsewhere" / "cache"
    shutil.copytree(cfg.cache_path, moved)
    shutil.rmtree(cfg.cache_path)
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(moved))
    cfg2, _ = Config.load({"candidates": 2, "rounds": 3})
    assert load_state(cfg2, key16).region_path == str(moved / "regions" / region.name)

    nxt = tmp_path / "round2.jsonl"
    report = tune(import_batch=out1, export_batch=nxt, config=cfg2, verifier=verifier(), progress=False)
    assert report.answered == 0 and report.exported == 2
    assert {parse_custom_id(r.custom_id).round for r in read_requests(nxt)} == {2}
    assert len(load_state(cfg2, key16).attempts) == 2  # nothing verified twice


def test_an_import_takes_regions_in_the_order_of_the_answers_file(tmp_path, monkeypatch):
    """An import cut short by a time limit has done the regions its user put first (not the states' disk order)."""
    from types import SimpleNamespace

    from llm_inductor.search import search_state
    from llm_inductor.search import tune as tune_module

    def state(key16: str) -> SimpleNamespace:
        cid = f"{key16}-r1-c0"
        return SimpleNamespace(
            key16=key16,
            outstanding={cid: {}},
            done=None,
            region_path=str(tmp_path / f"region_{key16}.py"),
            requests=lambda: [SimpleNamespace(custom_id=cid)],
        )

    states = [state(k) for k in ("aaaa000000000000", "bbbb000000000000", "cccc000000000000")]
    monkeypatch.setattr(search_state, "all_states", lambda cfg: states)
    seen: list[str] = []
    answers = {"cccc000000000000-r1-c0": "a", "aaaa000000000000-r1-c1": "b", "aaaa000000000000-r1-c0": "c"}
    run = SimpleNamespace(
        cfg=None,
        provider=SimpleNamespace(read_answers=lambda path, requests: answers),
        context=lambda path: None,
        searcher=SimpleNamespace(consume_batch=lambda st, ctx, mine: seen.append(st.key16) or len(mine)),
    )
    report = SimpleNamespace(answered=0)
    touched = tune_module._import(run, tmp_path / "round1.out.jsonl", report)
    assert seen == ["cccc000000000000", "aaaa000000000000"] and report.answered == 3
    assert [p.name for p in touched] == ["region_cccc000000000000.py", "region_aaaa000000000000.py"]
