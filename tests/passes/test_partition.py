"""Partitioning invariants on real ATen graphs: anchors, attention, acyclic contraction, cost ranking."""

from __future__ import annotations

import math

import networkx as nx
import torch
import torch.nn.functional as F

from llm_inductor.compile import state as _state
from llm_inductor.passes.cost import CPU, H200, rank, region_cost
from llm_inductor.passes.partition import core, partition
from llm_inductor.passes.region import describe
from support.util import Block, UnrolledGRU


def graphs_of(fn, *inputs, training=False):
    graphs = []
    from support.util import regions_of

    with _state.overridden(graph_hook=lambda gm, kind, infos: graphs.append(gm)):
        regions_of(fn, *inputs, training=training)
    return graphs


def causal_attention(q, k, v):
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1) @ v


def test_hand_written_attention_is_one_anchor():
    q, k, v = (torch.randn(2, 3, 10, 16) for _ in range(3))
    (gm,) = graphs_of(causal_attention, q, k, v)
    regions = partition(gm)
    att = [r for r in regions if r.anchor == "attention"]
    assert len(att) == 1
    ops = att[0].ops
    assert ops.count("bmm") == 2 and "exp" in ops and "amax" in ops


def test_anchor_takes_a_pointwise_epilogue_but_not_a_reduction():
    lin = torch.nn.Linear(16, 32)

    def epilogue(x):  # linear + bias + GELU: one region around the matmul
        return F.gelu(lin(x))

    def then_norm(x):  # GELU feeds a norm: the pointwise chain joins the norm, not the matmul
        y = F.gelu(lin(x))
        return y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + 1e-6)

    with torch.no_grad():
        (gm,) = graphs_of(epilogue, torch.randn(4, 16))
        (gm2,) = graphs_of(then_norm, torch.randn(4, 16))
    (region,) = partition(gm)
    assert region.anchor == "addmm" and "erf" in region.ops
    regions = partition(gm2)
    assert len(regions) == 2
    mm = next(r for r in regions if r.anchor == "addmm")
    assert not {"erf", "mean"} & set(mm.ops)


def contracted_is_acyclic(gm) -> bool:
    regions = partition(gm)
    owner = {n: r.index for r in regions for n in r.nodes}
    g = nx.DiGraph()
    for n in gm.graph.nodes:
        g.add_node(owner.get(n, n))
        for u in n.users:
            a, b = owner.get(n, n), owner.get(u, u)
            if a != b:
                g.add_edge(a, b)
    return nx.is_directed_acyclic_graph(g)


def test_contraction_never_creates_a_cycle():
    # The shapes test_backend_models trains these models at: in one session the same kernels are already built.
    graphs = graphs_of(Block(), torch.randn(2, 6, 32), training=True)
    graphs += graphs_of(UnrolledGRU(), torch.randn(5, 3, 8), training=True)
    assert len(graphs) == 4
    for gm in graphs:
        assert contracted_is_acyclic(gm)


def test_partition_is_idempotent_and_leaves_the_graph_alone():
    (gm,) = graphs_of(Block().eval(), torch.randn(2, 5, 32))
    before = str(gm.graph)
    first = [(r.anchor, r.ops) for r in partition(gm)]
    second = [(r.anchor, r.ops) for r in partition(gm)]
    assert first == second and str(gm.graph) == before


def test_regions_carry_specs_and_are_ranked_by_roofline_time():
    (gm,) = graphs_of(Block().eval(), torch.randn(2, 5, 32))
    regions = partition(gm)
    for r in regions:
        for n in (*r.inputs, *r.outputs):
            val = n.meta["val"]
            assert isinstance(val, torch.Tensor) and val.device.type == "cpu"
    rows = rank(regions, H200, hot_threshold=0.2, min_us=0)
    times = [c.seconds for _, c, _, _ in rows]
    assert times == sorted(times, reverse=True)
    assert math.isclose(sum(share for _, _, share, _ in rows), 1.0)
    assert all(hot == (share >= 0.2) for _, _, share, hot in rows)
    mm = next(r for r in regions if r.anchor == "addmm")
    c = region_cost(mm, CPU)
    assert c.flops == 2 * 10 * 32 * 96  # the first projection, qkv: (2·5)×32 @ 32×96
    assert c.seconds == max(c.bytes / CPU.bandwidth, c.flops / CPU.flops_fp32)


def test_sdpa_is_an_anchor_unless_it_drops_out():
    q, k, v = (torch.randn(2, 3, 8, 16) for _ in range(3))

    def attend(q, k, v, p):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)

    for p, expected in ((0.0, 1), (0.5, 0)):
        (gm,) = graphs_of(lambda q, k, v, p=p: attend(q, k, v, p), q, k, v)
        anchors = [r.anchor for r in partition(gm) if r.anchor and r.anchor.startswith("_scaled_dot_product")]
        assert len(anchors) == expected, (p, anchors)


def test_core_hoists_only_the_views_that_reshape_inputs():
    def loss(x, t):  # the labels flattened in the graph, as training scripts do
        return F.cross_entropy(x.float(), t.view(-1))

    x, t = torch.randn(6, 10), torch.randint(0, 10, (2, 3))
    (gm,) = graphs_of(loss, x, t)
    (region,) = partition(gm)
    inner = core(region)
    assert inner is not None and len(inner.nodes) == len(region.nodes) - 1
    (flat,) = [n for n in region.nodes if n not in inner.nodes]  # reshape or view, as the trace wrote it
    assert flat.target in (torch.ops.aten.view.default, torch.ops.aten.reshape.default)
    assert flat in inner.inputs and flat.args[0] in region.inputs  # the kernel reads the view's output
    assert set(inner.outputs) == set(region.outputs) and inner.anchor == region.anchor
    # the same loss written without the view has exactly the core's key
    (plain_gm,) = graphs_of(lambda x, t: F.cross_entropy(x.float(), t), x, t.view(-1))
    (plain,) = partition(plain_gm)
    assert describe(inner).digest == describe(plain).digest != describe(region).digest


def test_core_keeps_copies_offsets_and_views_of_computed_values():
    x = torch.randn(4, 6)
    cases = {
        "no views": lambda x: (x * 2).sum(-1),
        "a slice (a data offset)": lambda x: x[1:].sum(-1),
        "a view of a computed value": lambda x: (x * 2).view(-1).sum(),
    }
    for why, fn in cases.items():
        (gm,) = graphs_of(fn, x)
        regions = partition(gm)
        assert [core(r) for r in regions] == [None] * len(regions), why
    (gm,) = graphs_of(lambda x: x.t().unsqueeze(0).exp().sum(-1), x)  # a chain of views: all of it hoisted
    (region,) = partition(gm)
    assert core(region).ops == ["exp", "sum"]
