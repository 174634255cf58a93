"""A failure at any stage leaves the model with Inductor, correct, with one warning naming the stage."""

from __future__ import annotations

import logging

import pytest
import torch

import llm_inductor
from llm_inductor.cache.store import MemoryStore
from llm_inductor.compile import region_pass as _graph_pass
from llm_inductor.compile import runtime as _runtime
from llm_inductor.compile import state as _state
from support.util import RMSNorm, entry_for, regions_of


def boom(*args, **kwargs):
    raise RuntimeError("injected failure")


class BrokenStore(MemoryStore):
    lookup = staticmethod(boom)


def run_model(strict=False):
    torch.manual_seed(0)
    model, x = RMSNorm(33), torch.randn(5, 33)
    torch._dynamo.reset()
    with torch.no_grad():
        out = torch.compile(model, backend=llm_inductor.backend(min_region_us=0, interpret=True, strict=strict))(x)
        torch.testing.assert_close(out, model(x), atol=1e-5, rtol=1e-5)


@pytest.fixture
def served_rmsnorm(tmp_path):
    """A store that serves a correct kernel for the test model's region (so rewrite and compile run)."""
    torch.manual_seed(0)
    with _state.overridden(export_dir=str(tmp_path / "regions")):
        (row,) = regions_of(RMSNorm(33), torch.randn(5, 33))
    _state.reset()
    _state.set_store(MemoryStore([entry_for(row.region_path, "rmsnorm.py")]))


STAGES = {
    "partition": lambda mp: mp.setattr(_graph_pass, "partition", boom),
    "cost": lambda mp: mp.setattr(_graph_pass, "rank", boom),
    "key": lambda mp: mp.setattr(_graph_pass, "describe", boom),
    "lookup": lambda mp: _state.set_store(BrokenStore()),
    "pending": lambda mp: (_state.set_store(MemoryStore()), mp.setattr(_graph_pass, "_record_pending", boom)),
    "rewrite": lambda mp: mp.setattr(_graph_pass, "substitute", boom),
    "compile": lambda mp: mp.setattr(_runtime, "empty_outputs", boom),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_failure_falls_back_with_a_warning(stage, served_rmsnorm, monkeypatch, caplog):
    STAGES[stage](monkeypatch)
    with caplog.at_level(logging.WARNING, logger="llm_inductor"):
        run_model()
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("llm_inductor")]
    assert len(messages) == 1, messages
    assert f"at stage '{stage}'" in messages[0] and "injected failure" in messages[0]
    assert llm_inductor.stats()["fallbacks"] == 1
    assert llm_inductor.stats()["kernel_calls"] == 0


@pytest.mark.parametrize("stage", ["key", "rewrite", "compile"])
def test_strict_mode_raises_instead(stage, served_rmsnorm, monkeypatch):
    STAGES[stage](monkeypatch)
    with pytest.raises(Exception, match=f"stage '{stage}'"):
        run_model(strict=True)
