"""Shared test setup: each test gets its own cache and Inductor cache directories."""

from __future__ import annotations

import os
import sys

import pytest
import torch

# Triton picks interpreter mode at its own import: without a GPU, kernels in these tests run on the CPU.
if "triton" not in sys.modules and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
    # CI's two cores run two test workers, so Inductor's pool of compile workers (started in every process
    # that compiles, children included) costs its start-up and buys no parallelism: 81 -> 69 s for the
    # compile_overhead script's test alone. Tests that want the pool set it for their children.
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path, monkeypatch):
    """No test reads or writes ~/.cache/llm_inductor or a shared Inductor cache."""
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(tmp_path / "llm_cache"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor_cache"))
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LLM_INDUCTOR_PROVIDER", "LLM_INDUCTOR_REDIS_URL"):
        monkeypatch.delenv(var, raising=False)
    from llm_inductor.compile import state as _state

    torch._dynamo.reset()
    _state.reset()
    _state.set_config(None)  # re-read from the environment
    _state.set_store(None)
    _state._stores.clear()
    with _state.overridden(export_dir=None, graph_hook=None):  # a test's own overrides end with it
        yield
    _state.set_store(None)
