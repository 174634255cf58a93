"""Swap a region for one ``llm_inductor::kernel`` call.

The rewrite works on a copy of the graph, so the caller can always hand the
untouched original to Inductor if compiling the rewritten one fails.
"""

from __future__ import annotations

import operator

import torch
import torch.fx as fx
from torch.fx.passes.tools_common import legalize_graph

from llm_inductor.passes.region import RegionInfo


def copy_graph(gm: fx.GraphModule) -> tuple[fx.GraphModule, dict[fx.Node, fx.Node]]:
    graph = fx.Graph()
    val_map: dict[fx.Node, fx.Node] = {}
    out = graph.graph_copy(gm.graph, val_map)
    graph.output(out)
    for old, new in val_map.items():
        new.meta = dict(old.meta)
    return fx.GraphModule(gm, graph), val_map


def substitute(gm: fx.GraphModule, val_map: dict[fx.Node, fx.Node], info: RegionInfo, entry_id: str) -> None:
    """Replace info's region (nodes of the original graph, mapped through val_map) in gm's graph."""
    graph = gm.graph
    members = [val_map[n] for n in info.region.nodes]
    inputs = [val_map[n] for n in info.inputs]
    outputs = [val_map[n] for n in info.outputs]
    op = torch.ops.llm_inductor.kernel.default
    with graph.inserting_after(members[-1]):
        call = graph.call_function(op, (entry_id, inputs))
    call.meta["val"] = [o.meta["val"] for o in outputs]
    getters: list[fx.Node] = []
    with graph.inserting_after(call):
        for i, o in enumerate(outputs):
            g = graph.call_function(operator.getitem, (call, i))
            g.meta = dict(o.meta)
            getters.append(g)
    for orig, o, g in zip(info.outputs, outputs, getters):
        o.replace_all_uses_with(g)
        val_map[orig] = g  # a later region that reads this output gets the getter, not the erased node
    for n in reversed(members):
        graph.erase_node(n)


def finish(gm: fx.GraphModule) -> fx.GraphModule:
    """Restore a topological order (outputs' users may sit between region nodes), then check."""
    legalize_graph(gm)
    gm.graph.lint()
    gm.recompile()
    return gm
