"""Swap a region for one ``llm_inductor::kernel`` call.

The rewrite works on a copy of the graph, so the caller can always hand the
untouched original to Inductor if compiling the rewritten one fails.
"""

from __future__ import annotations

import heapq
import operator

import torch
import torch.fx as fx

from llm_inductor.passes.partition import mutates
from llm_inductor.passes.region import RegionInfo


class RewriteError(RuntimeError):
    """The region cannot be swapped in this graph without changing what the graph computes."""


def _mutates(n: fx.Node) -> bool:
    """Whether n writes to one of its arguments (an input mutation kept in the graph: ``copy_`` and kin)."""
    return n.op == "call_function" and mutates(n.target)


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
    refuse_spanning_a_write(graph, members)
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


def refuse_spanning_a_write(graph: fx.Graph, members: list[fx.Node]) -> None:
    """The kernel call takes the place of the region's last node: a region with an in-place op between its
    first and last nodes would move its earlier reads past that write."""
    member_set, inside = set(members), False
    for n in graph.nodes:
        if n in member_set:
            inside = True
            member_set.discard(n)
            if not member_set:
                return
        elif inside and _mutates(n):
            raise RewriteError(f"an in-place {n.target} lies inside the region; it stays with Inductor")


def stable_order(graph: fx.Graph) -> list[fx.Node]:
    """A topological order of the graph's nodes, close to the current one.

    Of the nodes whose inputs are placed, the one that comes first now goes next. An in-place op is a
    barrier: it stays after every node that was before it, and before every node that was after it (a read of
    the buffer it writes must see the same value as before). The output node stays last.
    ``torch.fx.passes.tools_common.legalize_graph`` gives no such guarantee: it can put an input mutation's
    ``copy_`` after the output, which Inductor refuses (the whole graph then lost its kernels).

    Raises RewriteError when no such order exists: a use of a region's output before a write that the region's
    kernel call now follows.
    """
    nodes = list(graph.nodes)
    pos = {n: i for i, n in enumerate(nodes)}
    barrier_before, last = [], -1  # for each position, the latest in-place op before it (-1: none)
    behind: dict[int, list[int]] = {}  # an in-place op's position: the positions that wait for it
    writes = {i for i, n in enumerate(nodes) if _mutates(n)}
    for i in range(len(nodes)):
        barrier_before.append(last)
        behind.setdefault(last, []).append(i)
        if i in writes:
            last = i
    waiting = {n: len(set(n.all_input_nodes)) for n in nodes}
    placed = [False] * len(nodes)
    frontier = 0  # every position below this is placed

    def eligible(i: int) -> bool:
        n = nodes[i]
        if waiting[n] or placed[i]:
            return False
        if n.op == "output" or i in writes:
            return frontier >= i  # everything before it is placed
        b = barrier_before[i]
        return b < 0 or placed[b]

    heap = [i for i in range(len(nodes)) if eligible(i)]
    heapq.heapify(heap)
    order: list[fx.Node] = []
    while heap:
        i = heapq.heappop(heap)
        if placed[i] or not eligible(i):
            continue
        placed[i] = True
        order.append(nodes[i])
        woken = [pos[u] for u in nodes[i].users]
        for u in nodes[i].users:
            waiting[u] -= 1
        while frontier < len(nodes) and placed[frontier]:
            frontier += 1
        if frontier < len(nodes):
            woken.append(frontier)  # an in-place op or the output whose predecessors are now all placed
        woken.extend(behind.get(i, ()))  # after an in-place op, the nodes that waited for it
        for j in woken:
            if eligible(j):
                heapq.heappush(heap, j)
    if len(order) != len(nodes):
        stuck = next(n for i, n in enumerate(nodes) if not placed[i])
        raise RewriteError(f"no order of the rewritten graph keeps {stuck} after what it reads; it stays with Inductor")
    return order


def finish(gm: fx.GraphModule) -> fx.GraphModule:
    """Restore a topological order (outputs' users may sit between region nodes), then check."""
    order = stable_order(gm.graph)
    output = order[-1]
    for n in order[:-1]:
        output.prepend(n)
    gm.graph.lint()
    gm.recompile()
    return gm
