"""The rewrite's node order: an input mutation kept in the graph stays where it was, and the output stays last."""

from __future__ import annotations

import pytest
import torch
import torch.fx as fx

import llm_inductor
from llm_inductor.cache.entry import Entry
from llm_inductor.cache.store import MemoryStore
from llm_inductor.compile import state as _state
from llm_inductor.passes.regionfile import read_sidecar, region_scripts
from llm_inductor.passes.rewrite import RewriteError, refuse_spanning_a_write, stable_order
from support.util import regions_of

aten = torch.ops.aten


def _mutating(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x.add_(1)
    y[0] = 5
    return (x * y).softmax(-1)


def test_a_graph_that_mutates_its_inputs_keeps_its_kernels_and_its_writes(tmp_path):
    """Inference graphs keep input mutations as ``copy_`` nodes that read the region's outputs. Every region is
    served by its own code as the kernel (the interpreter runs it): the graph must compile, not fall back."""
    with _state.overridden(export_dir=str(tmp_path / "regions")):
        regions_of(_mutating, torch.randn(4, 6), torch.randn(4, 6))
    entries = []
    for py in region_scripts(tmp_path / "regions"):
        meta, src = read_sidecar(py).to_dict(), py.read_text()
        entries.append(
            Entry(
                key=meta["key"], key_fields=meta["key_fields"], kernel_source=src, region_source=src, region_meta=meta
            )
        )
    assert entries
    _state.set_store(MemoryStore(entries))
    _state.reset()
    torch._dynamo.reset()
    torch.manual_seed(0)
    x, y = torch.randn(4, 6), torch.randn(4, 6)
    want_x, want_y = x.clone(), y.clone()
    want = _mutating(want_x, want_y)
    with torch.no_grad():
        got = torch.compile(_mutating, backend=llm_inductor.backend(min_region_us=0, interpret=True))(x, y)
    stats = llm_inductor.stats()
    assert stats["substituted"] == len(entries) and stats["fallbacks"] == 0, stats
    torch.testing.assert_close(got, want)
    torch.testing.assert_close((x, y), (want_x, want_y))  # the writes happened, once


def _graph(order: list[str]) -> tuple[fx.Graph, dict[str, fx.Node]]:
    """a (input) → k = a + 1 → u = k * 2; w = copy_(a, k); output (u,): nodes listed in the order given."""
    g = fx.Graph()
    n: dict[str, fx.Node] = {}
    n["a"] = g.placeholder("a")
    n["k"] = g.call_function(aten.add.Tensor, (n["a"], 1))
    n["u"] = g.call_function(aten.mul.Tensor, (n["k"], 2))
    n["w"] = g.call_function(aten.copy_.default, (n["a"], n["k"]))
    n["out"] = g.output((n["u"],))
    for name in order:  # move into the order asked for
        n["out"].prepend(n[name])
    return g, n


def test_the_order_keeps_a_write_after_what_came_before_it_and_the_output_last():
    # u reads k, which sits after it (as a region's kernel call sits at its last node's place): k moves up, and
    # the write, after both, stays there
    g, n = _graph(["a", "u", "k", "w"])
    assert [x.name for x in stable_order(g)] == [n[k].name for k in ("a", "k", "u", "w", "out")]


def test_a_read_that_would_have_to_cross_the_write_is_refused():
    """u came before the write and reads k, which comes after it: k may not move above the write (it would add
    to the written a), nor u below it (what came before a write stays before it)."""
    g = fx.Graph()
    a = g.placeholder("a")
    w = g.call_function(aten.copy_.default, (a, a))
    k = g.call_function(aten.add.Tensor, (a, 1))
    u = g.call_function(aten.mul.Tensor, (k, 2))
    g.output((u,))
    w.prepend(u)  # a, u, w, k
    with pytest.raises(RewriteError, match="no order"):
        stable_order(g)


def test_a_region_with_a_write_inside_it_is_not_swapped():
    g, n = _graph(["a", "k", "w", "u"])
    with pytest.raises(RewriteError, match="in-place"):
        refuse_spanning_a_write(g, [n["k"], n["u"]])
    refuse_spanning_a_write(g, [n["k"]])  # the write after the region: fine
