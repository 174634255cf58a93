"""``llm-inductor tune SCRIPT.py``: run the script in cache mode, tune its hot misses, store the winners."""

from __future__ import annotations

import json

import pytest

from llm_inductor.cli import main
from llm_inductor.config import Config
from support.loopback import LoopbackLLM, Reply, sequence
from support.search import GOOD, answer, verifier

SCRIPT = """
import sys
import torch
w = torch.randn(33)
def f(x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w
with torch.no_grad():
    torch.compile(f)(torch.randn(8, 33))
print("script ran with", sys.argv[1:])
"""


def test_tune_script_end_to_end(tmp_path, monkeypatch, capsys):
    import llm_inductor.search.tune as tune_module

    script = tmp_path / "model.py"
    script.write_text(SCRIPT)
    monkeypatch.setenv("LLM_INDUCTOR_INTERPRET", "1")
    monkeypatch.setenv("LLM_INDUCTOR_MIN_REGION_US", "0")
    monkeypatch.setenv("LLM_INDUCTOR_MODEL", "loopback-model")
    monkeypatch.setenv("LLM_INDUCTOR_CANDIDATES", "1")
    monkeypatch.setattr(tune_module, "default_verifier", verifier())
    summary = tmp_path / "summary.json"
    with LoopbackLLM(sequence(Reply.text(answer(GOOD)))) as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        code = main(["tune", "--json", str(summary), str(script), "--flag"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "script ran with ['--flag']" in out.out  # the script got its own arguments
    rows = json.loads(summary.read_text())["rows"]
    assert [r["outcome"] for r in rows] == ["winner"] and rows[0]["calls"] == 1
    assert "round 1" in out.err  # the live progress line
    # The run recorded the region's graph for the in-graph gate.
    cache = Config.load()[0].cache_path
    assert (cache / "graphs" / "by_region" / rows[0]["key16"]).is_file()
    # Tuning again finds nothing pending: the winner resolved the region.
    monkeypatch.setenv("LLM_INDUCTOR_PROVIDER", "batch")
    assert main(["tune", "--pending", "--export-batch", str(tmp_path / "r.jsonl")]) == 1
    assert "nothing to tune" in capsys.readouterr().err


def test_online_mode_tunes_during_the_compile_then_serves_the_winner(tmp_path, monkeypatch):
    """torch.compile(..., options={"tune": True}): the miss is tuned inside the compile and substituted.

    The search runs in a child process (online.py says why), so it uses the real verifier.
    """
    import torch

    from llm_inductor.compile import state as _state
    from llm_inductor.search.context import load_context
    from llm_inductor.search.llm import prompts
    from llm_inductor.search.llm.providers import prompt_hash
    from support.search import copy_region, real_engine, shared_region

    if real_engine() is None:
        pytest.skip("needs llm_inductor.verify.engine")
    cfg = Config.load()[0]
    ctx = load_context(copy_region(shared_region(tmp_path), tmp_path / "probe"), cfg, None, "cpu")
    replay = tmp_path / "replay.jsonl"
    replay.write_text(
        json.dumps({"prompt_hash": prompt_hash(prompts.initial_messages(ctx)), "content": answer(GOOD)}) + "\n"
    )

    w = torch.randn(33)
    f = lambda x: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w  # noqa: E731
    options = {
        "tune": True,
        "interpret": True,
        "min_region_us": 0,
        "candidates": 1,
        "provider": "replay",
        "replay": str(replay),
    }
    x = torch.randn(8, 33)
    _state.reset()
    with torch.no_grad():
        y = torch.compile(f, backend="llm", options=options)(x)
    torch.testing.assert_close(y, f(x))
    stats = _state.stats()
    assert stats["substituted"] == 1 and stats["kernel_calls"] == 1, stats
    assert [row.status for r in _state.reports for row in r.regions] == ["hit (tuned now)"]
