"""A stored Triton kernel replaces its region, runs under the interpreter, and is counted."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import pytest
import torch

import llm_inductor
from llm_inductor.cache.store import MemoryStore
from llm_inductor.compile import region_pass as _graph_pass
from llm_inductor.compile import state as _state
from support.util import Block, RMSNorm, entry_for, regions_of, rmsnorm_entry, serve


def test_stored_kernel_is_substituted_and_counted(tmp_path):
    model, x, entry = rmsnorm_entry(tmp_path)
    _state.set_store(MemoryStore([entry]))
    out = serve(model, x, interpret=True)
    with torch.no_grad():
        torch.testing.assert_close(out, model(x), atol=1e-5, rtol=1e-5)
    stats = llm_inductor.stats()
    assert (stats["hits"], stats["misses"], stats["substituted"], stats["kernel_calls"]) == (1, 0, 1, 1)
    assert _state.reports[0].substituted == 1


def test_kernel_really_runs(tmp_path):
    """A kernel that scales its output by 2 shows up in the result: the op is not a no-op."""
    model, x, entry = rmsnorm_entry(tmp_path)
    entry.kernel_source = entry.kernel_source.replace("x * rstd * w", "2.0 * x * rstd * w")
    _state.set_store(MemoryStore([entry]))
    out = serve(model, x, interpret=True)
    with torch.no_grad():
        torch.testing.assert_close(out, 2 * model(x), atol=1e-5, rtol=1e-5)


def test_cpu_graphs_stay_with_inductor_without_interpret(tmp_path):
    model, x, entry = rmsnorm_entry(tmp_path)
    _state.set_store(MemoryStore([entry]))
    serve(model, x)
    stats = llm_inductor.stats()
    assert stats["hits"] == 1 and stats["substituted"] == 0 and stats["kernel_calls"] == 0


def test_discover_mode_never_substitutes(tmp_path):
    model, x, entry = rmsnorm_entry(tmp_path)
    _state.set_store(MemoryStore([entry]))
    serve(model, x, interpret=True, mode="discover")
    assert llm_inductor.stats()["substituted"] == 0


def test_hot_miss_is_recorded_pending_with_its_region_file(tmp_path):
    model, x = RMSNorm(16), torch.randn(3, 16)
    store = MemoryStore()
    _state.set_store(store)
    serve(model, x)
    (record,) = store.pending()
    assert record.ops == ["pow", "mean", "add", "rsqrt", "mul", "mul"]
    assert record.region_path.endswith(f"region_{record.key[:16]}.py")
    assert llm_inductor.stats()["pending"] == 1
    with open(record.region_path) as f:
        assert "def make_inputs" in f.read()


def _deep(layers: int, eps: float = 1e-6) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(*(m for _ in range(layers) for m in (torch.nn.Linear(16, 16), RMSNorm(16, eps))))


def test_a_region_repeated_in_every_layer_is_hot_by_its_summed_share():
    """6 layers: each norm is 4.4% of the graph, 26% together; each matmul 12.3%, 74% together."""
    store = MemoryStore()
    _state.set_store(store)
    serve(_deep(6), torch.randn(4, 16), hot_threshold=0.1)
    rows = _state.reports[0].regions
    norms = [r for r in rows if "rsqrt" in r.ops]
    assert len(norms) == 6 and all(r.share < 0.1 for r in norms) and sum(r.share for r in norms) > 0.1
    assert all(r.hot and r.status == "pending" for r in norms)
    assert {p.key for p in store.pending()} == {r.key for r in rows}  # one record per key, both hot


def test_summed_share_is_per_key():
    """Regions of different keys (another epsilon) are not summed together, and a sum below the threshold is cold."""
    model = torch.nn.Sequential(_deep(3, eps=1e-6), _deep(3, eps=1e-5))
    _state.set_store(MemoryStore())
    serve(model, torch.randn(4, 16), hot_threshold=0.15)  # each epsilon's three norms: about 13%
    norms = [r for r in _state.reports[0].regions if "rsqrt" in r.ops]
    assert len({r.key for r in norms}) == 2 and all(sum(n.share for n in norms if n.key == r.key) < 0.15 for r in norms)
    assert not any(r.hot for r in norms)


def test_kill_switch_is_exactly_inductor(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_INDUCTOR_DISABLE", "1")
    model, x = RMSNorm(16), torch.randn(3, 16)
    serve(model, x)
    assert llm_inductor.stats()["graphs"] == 0


def test_inductor_options_pass_through(tmp_path):
    model, x = RMSNorm(16), torch.randn(3, 16)
    seen = {}
    original = _graph_pass.run

    def spy(gm, kind, cfg):
        import torch._inductor.config as ic

        seen["max_autotune"] = ic.max_autotune
        return original(gm, kind, cfg)

    _graph_pass.run = spy
    try:
        serve(model, x, max_autotune=True)
    finally:
        _graph_pass.run = original
    assert seen == {"max_autotune": True}


def test_unknown_option_names_the_fix():
    with pytest.raises(llm_inductor._errors.UsageError, match="neither an llm_inductor setting"):
        llm_inductor.backend(max_autotunez=True)
    with pytest.raises(llm_inductor._errors.UsageError, match="Valid modes"):
        llm_inductor.backend(mode="fast")


@pytest.mark.parametrize(
    "edit, said",
    [
        (("    m, n = x.shape\n", "    m, n = x.shape\n    assert m < 5, 'too many rows'\n"), "too many rows"),
        (("    return out\n", "    return out, out\n"), "returned 2 outputs where its region declares 1"),
    ],
    ids=["raises", "wrong_output_count"],
)
def test_kernel_failing_at_run_time_falls_back_to_the_regions_own_ops(tmp_path, caplog, edit, said):
    """The fallback runs the ops the key names, never the entry's region file (which is the
    entry author's Python): here that file would write a marker, and returns wrong values."""
    model, x, entry = rmsnorm_entry(tmp_path)
    assert edit[0] in entry.kernel_source
    entry.kernel_source = entry.kernel_source.replace(*edit)
    marker = tmp_path / "region_file_ran"
    entry.region_source = f"open({str(marker)!r}, 'w').close()\ndef forward(x, w):\n    return 0 * x\n"
    _state.set_store(MemoryStore([entry]))
    with caplog.at_level(logging.WARNING, logger="llm_inductor"):
        out = serve(model, x, interpret=True)
    with torch.no_grad():
        torch.testing.assert_close(out, model(x), atol=1e-5, rtol=1e-5)
    assert llm_inductor.stats()["runtime_fallbacks"] == 1
    assert not marker.exists()
    assert any("failed at run time" in r.getMessage() and said in r.getMessage() for r in caplog.records)


class SplitHeads(torch.nn.Module):
    """q, k, v are strided views of one linear's output, each consumed by another anchor."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(8, 24)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.lin(x).chunk(3, dim=-1)
        return (q @ k.transpose(-1, -2)).softmax(-1) @ v


def test_outputs_that_alias_are_copied_into_the_declared_layout(tmp_path):
    """A region whose outputs are views (of one buffer, at its strides) served by code that returns
    those views, as the reference fallback does: torch.library refuses outputs that alias each
    other, and Inductor asserts the declared strides, so the op copies them into that layout."""
    model, x = SplitHeads(), torch.randn(2, 4, 8)
    with _state.overridden(export_dir=str(tmp_path / "regions")):
        rows = regions_of(model, x)

    def outputs(row):
        return len(json.loads(Path(row.region_path).with_suffix(".json").read_text())["outputs"])

    split = [r for r in rows if r.region_path and outputs(r) == 3]
    assert split, [(r.ops, outputs(r)) for r in rows if r.region_path]
    entries = []
    for row in split:
        entry = entry_for(row.region_path, "rmsnorm.py")
        entry.kernel_source = entry.region_source  # the region's own (aliasing) reference code
        entries.append(entry)
    _state.set_store(MemoryStore(entries))
    out = serve(model, x, interpret=True)
    with torch.no_grad():
        torch.testing.assert_close(out, model(x), atol=1e-5, rtol=1e-5)
    stats = llm_inductor.stats()
    assert stats["substituted"] == len(split) and stats["kernel_calls"] == len(split)


def test_a_region_compiled_under_max_autotune_is_tuned_against_max_autotune(tmp_path, monkeypatch):
    """The pending region remembers the strongest Inductor it was compiled under; the tuner's
    verifier times candidates against that one, not against default Inductor."""
    from llm_inductor.search import verdict

    model, x = RMSNorm(16), torch.randn(3, 16)
    store = MemoryStore()
    _state.set_store(store)
    serve(model, x)
    (record,) = store.pending()
    assert verdict.baseline_mode(record.region_path) == "default"
    serve(model, x, max_autotune=True)
    assert verdict.baseline_mode(record.region_path) == "max-autotune-no-cudagraphs"
    serve(model, x)  # a later default compile never lowers the bar
    assert verdict.baseline_mode(record.region_path) == "max-autotune-no-cudagraphs"

    seen = {}

    def fake_verify(region_path, source, **kwargs):
        seen.update(kwargs)
        return "result"

    import llm_inductor.verify.engine as engine

    monkeypatch.setattr(engine, "verify", fake_verify)
    assert verdict.default_verifier(record.region_path, "src", _state.config()) == "result"
    assert seen["inductor_mode"] == "max-autotune-no-cudagraphs"

    # The prompt's "Inductor's code and time" is measured in the same mode, and cached apart.
    import subprocess
    from types import SimpleNamespace

    from llm_inductor.search import baseline

    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        return SimpleNamespace(returncode=0, stdout=json.dumps({"available": True, "mode": cmd[-1]}), stderr="")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(baseline, "_gpu_name", lambda: "Some GPU")
    monkeypatch.setattr(subprocess, "run", fake_run)
    got = baseline.inductor_baseline(record.region_path, tmp_path / "cache")
    assert calls[0][-2:] == ["--mode", "max-autotune-no-cudagraphs"] and got["mode"] == "max-autotune-no-cudagraphs"
    (cached,) = (tmp_path / "cache" / "search" / "reference").iterdir()
    assert cached.name.endswith("-max-autotune-no-cudagraphs.json")


class ConvFlatten(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU()
        )
        self.head = torch.nn.Sequential(torch.nn.Conv2d(16, 8, 3), torch.nn.Flatten())

    def forward(self, x):
        return self.head(self.features(x))


def test_inputs_reach_the_kernel_at_the_declared_strides(tmp_path):
    """Inductor lays the first conv's output out channels-last and passes that to the op; the
    kernel was verified at the region's (contiguous) strides, so the op hands it those.
    Found by compile_overhead's CNN hit: the reference's view() failed on the channels-last input."""
    torch.manual_seed(0)
    model, x = ConvFlatten().eval(), torch.randn(4, 3, 16, 16)
    with _state.overridden(export_dir=str(tmp_path / "regions")):
        rows = regions_of(model, x)
    (head,) = [r for r in rows if "view" in r.ops]  # conv + flatten: only this region is served
    entry = entry_for(head.region_path, "rmsnorm.py")
    entry.kernel_source = entry.region_source  # its reference code views its input: wrong strides fail
    _state.set_store(MemoryStore([entry]))
    out = serve(model, x, interpret=True, strict=True)  # strict: no quiet fallback to the reference
    with torch.no_grad():
        torch.testing.assert_close(out, model(x), atol=1e-4, rtol=1e-4)
    stats = llm_inductor.stats()
    assert stats["substituted"] == 1 and stats["kernel_calls"] == 1 and stats["runtime_fallbacks"] == 0


def test_chained_regions_are_all_substituted(tmp_path):
    """Regions that feed each other (linear+GELU → linear → RMSNorm) are all served in one rewrite.

    The second region's input is the first one's output, which the first substitution erases.
    Found by compile_overhead's MLP hit: the rewrite raised KeyError and the whole graph fell back."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 16), RMSNorm(16))
    x = torch.randn(8, 16)
    with _state.overridden(export_dir=str(tmp_path / "regions")):
        rows = regions_of(model, x)
    assert [r.anchor for r in rows] == ["addmm", "addmm", None]
    entries = []
    for row in rows:
        entry = entry_for(row.region_path, "rmsnorm.py")
        entry.kernel_source = entry.region_source  # each region's reference code, as its kernel
        entries.append(entry)
    _state.set_store(MemoryStore(entries))
    out = serve(model, x, interpret=True, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(out, model(x), atol=1e-5, rtol=1e-5)
    stats = llm_inductor.stats()
    assert stats["substituted"] == 3 and stats["kernel_calls"] == 3 and stats["fallbacks"] == 0


def test_a_training_step_with_every_region_served_matches_eager(tmp_path):
    """Forward and backward graphs of a transformer block (SDPA, LayerNorm, GELU MLP) with all 21 regions
    served at once, chained ones included: the loss and every gradient match eager."""
    torch.manual_seed(0)
    model, x = Block(), torch.randn(2, 6, 32)
    ref = copy.deepcopy(model)
    with _state.overridden(export_dir=str(tmp_path / "regions")):
        rows = regions_of(copy.deepcopy(model), x, training=True)
    entries = {}
    for row in rows:
        entry = entry_for(row.region_path, "rmsnorm.py")
        entry.kernel_source = entry.region_source
        entries[entry.key] = entry
    _state.reset()
    torch._dynamo.reset()
    _state.set_store(MemoryStore(list(entries.values())))
    out = torch.compile(model, backend=llm_inductor.backend(min_region_us=0, interpret=True, strict=True))(x)
    out.square().mean().backward()
    expected = ref(x)
    expected.square().mean().backward()
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-3)
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(
            p.grad, q.grad, atol=1e-4, rtol=1e-3, msg=lambda m, name=name: f"grad of {name}: {m}"
        )
    stats = llm_inductor.stats()
    assert [r.kind for r in _state.reports] == ["forward", "backward"]
    assert stats["substituted"] == stats["regions"] == len(rows) == 21
    assert stats["kernel_calls"] == 21 and stats["fallbacks"] == stats["runtime_fallbacks"] == 0


class TwoNorms(torch.nn.Module):
    """Two RMSNorms of one training graph whose regions have the same ops and output specs but
    return different intermediates ([N, 1] fp32 each): rstd from the first, the variance from the second."""

    def __init__(self, d: int = 32) -> None:
        super().__init__()
        self.register_buffer("w", torch.randn(d))
        self.m = torch.nn.Parameter(torch.randn(d, d))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        var1 = x1.pow(2).mean(-1, keepdim=True)
        rstd1 = torch.rsqrt(var1 + 1e-6)
        y1 = self.w * (x1 * rstd1)
        var2 = x2.pow(2).mean(-1, keepdim=True)
        y2 = self.w * (x2 * torch.rsqrt(var2 + 1e-6))
        # cumsum is no region op: rstd1 and var2 leave their regions as outputs
        stats = torch.cumsum(rstd1, 0).sum() + torch.cumsum(var2, 0).sum()
        return (x1 @ self.m).sum() + torch.cumsum(y1, 0).sum() + torch.cumsum(y2, 0).sum() + stats


def test_regions_returning_different_intermediates_get_their_own_kernels(tmp_path):
    """Key schema 1 gave both norm regions one key (it did not say which values a region returns),
    so a training graph could be served a kernel that returns rstd where the variance was wanted."""
    torch.manual_seed(0)
    model, x1, x2 = TwoNorms(), torch.randn(8, 32), torch.randn(8, 32)
    with _state.overridden(export_dir=str(tmp_path / "regions")):
        rows = [
            r
            for r in regions_of(model, x1, x2, training=True)
            if r.ops == ["pow", "mean", "add", "rsqrt", "mul", "mul"]
        ]
    metas = [json.loads(Path(r.region_path).with_suffix(".json").read_text()) for r in rows]
    assert len(rows) == 2 and rows[0].key != rows[1].key
    assert metas[0]["legacy_key"] == metas[1]["legacy_key"]  # the collision schema 1 had
    entries = []
    for row in rows:  # each region's kernel stores the statistic its region returns
        entry = entry_for(row.region_path, "rmsnorm_stat.py")
        if _returns_variance(row):
            entry.kernel_source = entry.kernel_source.replace(
                "tl.store(stat_ptr + row, rstd)", "tl.store(stat_ptr + row, var)"
            )
        entries.append(entry)
    assert sum("stat_ptr + row, var" in e.kernel_source for e in entries) == 1
    _state.set_store(MemoryStore(entries))
    _state.reset()
    torch._dynamo.reset()
    model.m.grad = None  # regions_of ran a backward
    compiled = torch.compile(model, backend=llm_inductor.backend(min_region_us=0, interpret=True))
    loss = compiled(x1, x2)
    loss.backward()
    got = model.m.grad.clone()
    model.m.grad = None
    expected = model(x1, x2)
    expected.backward()
    torch.testing.assert_close(loss, expected, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(got, model.m.grad, atol=1e-4, rtol=1e-5)
    stats = llm_inductor.stats()
    assert stats["substituted"] == 2 and stats["kernel_calls"] == 2 and stats["runtime_fallbacks"] == 0


def _returns_variance(row) -> bool:
    """Whether the region's returned [N, 1] value is the mean itself (the variance), read off its key."""
    meta = json.loads(Path(row.region_path).with_suffix(".json").read_text())
    graph, returns = meta["key_fields"]["graph"], meta["key_fields"]["returns"]
    producers = {line.split(" = ")[0]: line for line in graph}
    return any("aten.mean." in producers[r] for r in returns)
