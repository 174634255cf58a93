"""On a GPU: substitution with real Triton compilation, CUDA graphs, training and dynamic shapes."""

from __future__ import annotations

import pytest
import torch

import llm_inductor
from llm_inductor.cache.store import MemoryStore
from llm_inductor.compile import state as _state
from llm_inductor.compile.region_pass import MAX_AUTOTUNE
from support.cache_entries import make_size_record
from support.util import RMSNorm, entry_for, regions_of

pytestmark = pytest.mark.gpu


@pytest.fixture
def served(tmp_path):
    torch.manual_seed(0)
    model, x = RMSNorm(4096).cuda(), torch.randn(64, 4096, device="cuda")
    with _state.overridden(export_dir=str(tmp_path / "regions")):
        (row,) = regions_of(model, x)
    assert row.key  # the region's key on this device class
    _state.set_store(MemoryStore([entry_for(row.region_path, "rmsnorm.py")]))
    _state.reset()
    torch._dynamo.reset()
    return model


@pytest.mark.parametrize("inductor_mode", [None, "reduce-overhead", "max-autotune-no-cudagraphs"])
def test_substituted_kernel_runs_on_the_gpu(served, inductor_mode):
    if inductor_mode == MAX_AUTOTUNE:  # served under max-autotune only where a record says it won against it
        store = _state.store()
        (entry,) = store.entries()
        store.put_size(make_size_record(entry, {}, gpu=torch.cuda.get_device_name(), inductor_mode=MAX_AUTOTUNE))
    compiled = torch.compile(served, backend=llm_inductor.backend(min_region_us=0, inductor_mode=inductor_mode))
    with torch.no_grad():
        for _ in range(4):  # CUDA graphs: warm-up, record, then replays with fresh inputs
            x = torch.randn(64, 4096, device="cuda")
            torch.testing.assert_close(compiled(x), served(x), atol=1e-4, rtol=1e-4)
    stats = llm_inductor.stats()
    assert stats["substituted"] == 1 and stats["kernel_calls"] >= 1


def test_training_and_dynamic_shapes_on_the_gpu():
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), RMSNorm(128), torch.nn.GELU(), torch.nn.Linear(128, 8)).cuda()
    compiled = torch.compile(model, backend="llm")
    for n in (16, 24, 40):
        x = torch.randn(n, 64, device="cuda")
        torch._dynamo.mark_dynamic(x, 0)
        out = compiled(x)
        torch.testing.assert_close(out, model(x), atol=1e-4, rtol=1e-4)
        out.sum().backward()
    assert llm_inductor.stats()["graphs"] == 2  # one dynamic forward and its backward
