"""AOTAutograd's cache stays on under backend="llm", and its key follows the kernel set.

A hit skips the region pass, so these tests pin down the three things that make that
safe and visible: the token reaches AOTAutograd's key (and only it), any change to
what the store serves is a miss, and a hit replays the pass's counters. A wrong key
would serve a graph compiled with a revoked or deleted kernel, or hide a new one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters

import llm_inductor
from llm_inductor.cache.store import MemoryStore
from llm_inductor.compile import aot as _aot
from llm_inductor.compile import state as _state
from support.paths import SUPPORT, TESTS
from support.util import RMSNorm, entry_for, regions_of


def _aot_counts() -> tuple[int, int]:
    c = counters["aot_autograd"]
    return c["autograd_cache_hit"], c["autograd_cache_miss"]


def _compile_and_run(model, x, **options):
    """A fresh Dynamo compile (as in a new process) and one call; returns (output, AOT hit?, AOT miss?)."""
    torch._dynamo.reset()
    hit0, miss0 = _aot_counts()
    with torch.no_grad():
        out = torch.compile(model, backend=llm_inductor.backend(min_region_us=0, interpret=True, **options))(x)
    hit1, miss1 = _aot_counts()
    return out, hit1 - hit0, miss1 - miss0


@pytest.fixture
def rmsnorm(tmp_path):
    torch.manual_seed(0)
    model, x = RMSNorm(33), torch.randn(5, 33)
    with _state.overridden(export_dir=str(tmp_path / "regions")):
        (row,) = regions_of(model, x)
    _state.reset()
    return model, x, entry_for(row.region_path, "rmsnorm.py")


def test_a_recompile_hits_and_replays_the_pass_counters(rmsnorm):
    model, x, _ = rmsnorm
    _state.set_store(MemoryStore())
    _, hit, miss = _compile_and_run(model, x)
    assert (hit, miss) == (0, 1)
    first = llm_inductor.stats()
    assert first["graphs"] == 1 and first["misses"] == 1
    _, hit, miss = _compile_and_run(model, x)
    assert (hit, miss) == (1, 0)  # the pass did not run ...
    second = llm_inductor.stats()
    assert second["graphs"] == 2 and second["misses"] == 2  # ... but its counts did
    assert len(_state.reports) == 2 and _state.reports[1] == _state.reports[0]  # the region report too
    assert _state.reports[1].regions[0].status == "pending"

    (record,) = (_state.config().cache_path / "compiles").glob("*.json")
    os.utime(record, (1, 1))
    _compile_and_run(model, x)
    assert record.stat().st_mtime > 1  # a replayed record stays young for `cache prune --older-than`
    _aot._records.clear()  # as in a fresh process, which reads the record from disk ...
    record.write_text('{"token": ')  # ... and finds it damaged: a hit that replays nothing, and works
    out, hit, miss = _compile_and_run(model, x)
    assert (hit, miss) == (1, 0) and llm_inductor.stats()["graphs"] == 3  # nothing replayed this time
    assert torch.allclose(out, model(x), atol=1e-5)


def test_a_put_and_a_removal_are_misses_and_the_kernel_set_is_exact(rmsnorm):
    model, x, entry = rmsnorm
    store = MemoryStore()
    _state.set_store(store)
    expected = model(x)
    _compile_and_run(model, x)

    store.put(entry)  # a new kernel: the graph saved without it must not be served
    out, hit, miss = _compile_and_run(model, x)
    assert (hit, miss) == (0, 1)
    s = llm_inductor.stats()
    assert (s["hits"], s["substituted"], s["kernel_calls"]) == (1, 1, 1)
    assert torch.allclose(out, expected, atol=1e-5)

    out, hit, miss = _compile_and_run(model, x)  # same kernel set: AOTAutograd serves it, the kernel still runs
    assert (hit, miss) == (1, 0)
    s = llm_inductor.stats()
    assert (s["hits"], s["substituted"], s["kernel_calls"]) == (2, 2, 2)
    assert torch.allclose(out, expected, atol=1e-5)

    store.remove(entry.key)  # withdrawn: the graph that calls it must not be served again
    out, hit, miss = _compile_and_run(model, x)
    assert (hit, miss) == (0, 1)
    s = llm_inductor.stats()
    assert (s["substituted"], s["kernel_calls"]) == (2, 2)
    assert torch.allclose(out, expected, atol=1e-5)


def test_settings_are_in_the_key(rmsnorm):
    model, x, entry = rmsnorm
    _state.set_store(MemoryStore([entry]))
    _compile_and_run(model, x)
    _, hit, miss = _compile_and_run(model, x, mode="discover")  # discover never substitutes
    assert (hit, miss) == (0, 1)
    assert llm_inductor.stats()["substituted"] == 1


def test_no_token_means_no_aot_cache(rmsnorm):
    model, x, _ = rmsnorm

    class NoGeneration(MemoryStore):
        generation = None  # a store written against the bare KernelStore protocol

    _state.set_store(NoGeneration())
    for _ in range(2):
        _, hit, miss = _compile_and_run(model, x)
        assert (hit, miss) == (0, 0)  # switched off, as before the token existed
    assert llm_inductor.stats()["graphs"] == 2  # the pass ran both times
    _state.set_store(MemoryStore())
    assert _aot.token(_state.config().replace(mode="tune"), MemoryStore()) is None


def test_the_token_changes_aotautograds_key_and_not_inductors(rmsnorm):
    """The mechanism itself, on the torch under test: an attribute of the Dynamo graph module."""
    model, x, _ = rmsnorm
    _state.set_store(MemoryStore())
    _compile_and_run(model, x)
    fx_before = counters["inductor"]["fxgraph_cache_hit"]
    _state.set_store(MemoryStore())  # a new store: a new generation, so a new token
    _, hit, miss = _compile_and_run(model, x)
    assert (hit, miss) == (0, 1)
    # AOTAutograd missed, and Inductor's FX cache hit: the ATen graph (and its key) is unchanged.
    assert counters["inductor"]["fxgraph_cache_hit"] == fx_before + 1


def _child(tmp_path: Path, phase: str, **env: str) -> dict:
    out = tmp_path / f"{phase}.json"
    e = {k: v for k, v in os.environ.items() if not k.startswith("LLM_INDUCTOR_")}
    e.update(
        PYTHONPATH=str(TESTS),
        TRITON_INTERPRET="1",
        LLM_INDUCTOR_INTERPRET="1",
        LLM_INDUCTOR_MIN_REGION_US="0",
        LLM_INDUCTOR_CACHE_DIR=str(tmp_path / "cache"),
        TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"),
        **env,
    )
    proc = subprocess.run(
        [sys.executable, str(SUPPORT / "aot_cache_child.py"), phase, str(out)],
        env=e,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_across_processes_with_the_persistent_store(tmp_path):
    """Fresh processes over one SQLite cache: a miss, a hit, a kernel added, a revocation."""
    first = _child(tmp_path, "compile")
    assert (first["aot_hit"], first["stats"]["misses"], first["stats"]["pending"]) == (0, 1, 1)
    second = _child(tmp_path, "compile")
    assert second["aot_hit"] == 1 and second["stats"]["misses"] == 1 and second["stats"]["pending"] == 1

    added = _child(tmp_path, "add")  # puts the kernel through the store (signed with this cache's key)
    assert added["aot_hit"] == 0 and added["stats"]["substituted"] == 1 and added["stats"]["kernel_calls"] == 1
    served = _child(tmp_path, "compile")
    assert served["aot_hit"] == 1 and served["stats"]["substituted"] == 1 and served["stats"]["kernel_calls"] == 1
    assert served["err"] < 1e-5

    revoked = _child(tmp_path, "revoke")  # revoked in another process: this one must not replay the kernel
    assert revoked["aot_hit"] == 0 and revoked["stats"]["substituted"] == 0 and revoked["stats"]["kernel_calls"] == 0
    assert revoked["err"] < 1e-5


def test_training_graphs_hit_with_their_kernels_and_the_gradients_stay_right(tmp_path):
    """Forward and backward (compiled lazily) both come back from AOTAutograd's cache with their kernels."""
    from llm_inductor.cache.entry import Entry

    torch.manual_seed(0)
    model, x = RMSNorm(33), torch.randn(5, 33, requires_grad=True)
    with _state.overridden(export_dir=str(tmp_path / "regions")):
        rows = regions_of(model, x, training=True)
    store = MemoryStore()
    for py in {row.region_path for row in rows if row.region_path}:  # the region's own code serves as its kernel
        meta = json.loads(Path(py).with_suffix(".json").read_text())
        src = Path(py).read_text()
        store.put(
            Entry(
                key=meta["key"], key_fields=meta["key_fields"], kernel_source=src, region_source=src, region_meta=meta
            )
        )
    _state.set_store(store)
    _state.reset()
    eager_out = model(x)
    eager_grads = torch.autograd.grad(eager_out.square().sum(), (x, model.weight))

    def step():
        torch._dynamo.reset()
        hit0 = _aot_counts()[0]
        out = torch.compile(model, backend=llm_inductor.backend(min_region_us=0, interpret=True))(x)
        grads = torch.autograd.grad(out.square().sum(), (x, model.weight))
        assert torch.allclose(out, eager_out, atol=1e-5)
        assert all(torch.allclose(g, e, atol=1e-4) for g, e in zip(grads, eager_grads))
        return _aot_counts()[0] - hit0, llm_inductor.stats()

    hit, first = step()
    assert hit == 0 and first["graphs"] == 2 and first["substituted"] >= 2  # forward and backward kernels
    calls = first["kernel_calls"]
    hit, second = step()
    assert hit == 1
    assert second["graphs"] == 4 and second["substituted"] == 2 * first["substituted"]
    assert second["kernel_calls"] == 2 * calls  # the replayed graphs call the same kernels
