"""Graph → fusion regions.

A region is a connected group of pointwise, reduction, indexing and view/layout ops
around at most one anchor (a matmul, a conv, or an attention pattern: two matmuls
joined by a softmax, which counts as one anchor so flash-style kernels are possible).

Invariants (see passes/README.md):
- groups only merge along producer→consumer edges, so every region is connected;
- a merge that would put a path through an outside node between two groups is
  refused, so contracting any region never creates a cycle;
- nondeterministic, mutating and unknown ops are never inside a region.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import networkx as nx
import torch
import torch.fx as fx

aten = torch.ops.aten

_SDPA = (
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_cudnn_attention",
)
ANCHORS = {"mm", "addmm", "bmm", "baddbmm", "convolution", *_SDPA, *(f"{n}_backward" for n in _SDPA)}
VIEWS = {
    "view",
    "_unsafe_view",
    "reshape",
    "permute",
    "transpose",
    "t",
    "expand",
    "unsqueeze",
    "squeeze",
    "slice",
    "select",
    "alias",
    "split",
    "split_with_sizes",
    "unbind",
    "chunk",
    "cat",
    "constant_pad_nd",
    "_reshape_alias",
    "as_strided",
    "squeeze_copy",
    "view_copy",
    "permute_copy",
    "slice_scatter",
    "select_scatter",
    "diagonal",
}
INDEXING = {"gather", "index", "index_select", "embedding", "embedding_dense_backward"}
# Ops that are not tagged pointwise but compute elementwise or fill a constant.
EXTRA_POINTWISE = {
    "_to_copy",
    "full",
    "full_like",
    "scalar_tensor",
    "zeros_like",
    "ones_like",
    "empty_like",
    "zeros",
    "ones",
    "arange",
    "iota",
    "copy",
}
REDUCTION_NAMES = {
    "var_mean",
    "amax",
    "amin",
    "sum",
    "mean",
    "prod",
    "argmax",
    "argmin",
    "any",
    "all",
    "var",
    "max",
    "min",
}


def mutates(target: object) -> bool:
    """Whether an op writes to one of its arguments (``copy_``, ``index_put_``, an ``out=`` variant)."""
    schema = getattr(target, "_schema", None)
    return schema is not None and (
        schema.is_mutable or any(a.alias_info is not None and a.alias_info.is_write for a in schema.arguments)
    )


def op_name(node: fx.Node) -> str:
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        return target._schema.name.split("::")[-1]
    return getattr(target, "__name__", str(target))


def _dropout_p(node: fx.Node) -> float:
    names = [a.name for a in node.target._schema.arguments]
    if "dropout_p" not in names:
        return 0.0
    i = names.index("dropout_p")
    p = node.args[i] if i < len(node.args) else node.kwargs.get("dropout_p", 0.0)
    return p if isinstance(p, (int, float)) else 1.0  # a symbolic rate may be nonzero


def _is_tensorish(node: fx.Node) -> bool:
    val = node.meta.get("val")
    if isinstance(val, torch.Tensor):
        return True
    return isinstance(val, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in val)


def classify(node: fx.Node) -> str:
    """anchor | pointwise | reduction | view | index | getitem | opaque."""
    if node.op != "call_function":
        return "opaque"
    if node.target is operator.getitem:
        return "getitem" if _is_tensorish(node) else "opaque"
    target = node.target
    if not isinstance(target, torch._ops.OpOverload) or not _is_tensorish(node):
        return "opaque"
    tags = target.tags
    name = op_name(node)
    if name in ANCHORS:
        # SDPA carries the nondeterministic tag for its dropout; without dropout it is deterministic.
        return "anchor" if _dropout_p(node) == 0 else "opaque"
    if torch.Tag.nondeterministic_seeded in tags or target._schema.is_mutable or name.endswith("_"):
        return "opaque"
    if name in VIEWS:
        return "view"
    if name in INDEXING:
        return "index"
    if torch.Tag.reduction in tags or name in REDUCTION_NAMES:
        return "reduction"
    if torch.Tag.pointwise in tags or name in EXTRA_POINTWISE:
        return "pointwise"
    return "opaque"


@dataclass
class Region:
    index: int
    nodes: list[fx.Node]  # in graph order
    anchor: str | None  # "mm", "convolution", "attention", ... or None
    inputs: list[fx.Node] = field(default_factory=list)  # tensor producers outside the region
    outputs: list[fx.Node] = field(default_factory=list)  # region nodes used outside

    @property
    def ops(self) -> list[str]:
        return [op_name(n) for n in self.nodes if n.target is not operator.getitem]


COMPUTE = ("anchor", "pointwise", "reduction", "index")  # kinds a region needs one of (views alone are not one)
# Views that only reinterpret their input's sizes and strides: no data offset, no copy, no new storage.
ALIASING = {
    "view",
    "_unsafe_view",
    "_reshape_alias",
    "alias",
    "unsqueeze",
    "squeeze",
    "expand",
    "permute",
    "transpose",
    "t",
}


def core(region: Region) -> Region | None:
    """The region without the views that only re-shape its inputs, or None where it has none.

    ``x.view(-1)`` of a graph input lands in the consumer's region, so the same loss has another region
    (and key, and family) in a training script that flattens its labels than in one that does not. Those
    views cost nothing in Inductor's code or anyone's, and computed outside the kernel they keep the values
    the same: the core computes what the region computes from the views' outputs. The region pass looks the
    core up where the region is unknown, so one kernel serves both graphs.
    """
    members = set(region.nodes)
    hoisted: set[fx.Node] = set()
    for n in region.nodes:
        if _aliases(n) and classify(n) == "view":
            # of an input or of a hoisted view; size arguments (SymInt nodes) come from outside the region
            if all(a not in members or a in hoisted for a in n.all_input_nodes):
                hoisted.add(n)
    if not hoisted:
        return None
    rest = [n for n in region.nodes if n not in hoisted]
    if not any(classify(n) in COMPUTE for n in rest):
        return None
    inputs, outputs = _boundary(rest)
    return Region(region.index, rest, region.anchor, inputs, outputs) if outputs else None


def _boundary(nodes: list[fx.Node]) -> tuple[list[fx.Node], list[fx.Node]]:
    """A region's inputs (tensor producers outside it, by first use) and outputs (its nodes used outside)."""
    members = set(nodes)
    inputs: list[fx.Node] = []
    outputs: list[fx.Node] = []
    for n in nodes:
        for a in n.all_input_nodes:
            if a not in members and a not in inputs and isinstance(a.meta.get("val"), torch.Tensor):
                inputs.append(a)
        if any(u not in members for u in n.users) and isinstance(n.meta.get("val"), torch.Tensor):
            outputs.append(n)
    return inputs, outputs


def _aliases(n: fx.Node) -> bool:
    """A view that only reinterprets its input: ALIASING, or a reshape of a contiguous input (which views it)."""
    src = n.args[0] if n.args else None
    if not isinstance(src, fx.Node):
        return False
    if op_name(n) in ALIASING:
        return True
    val = src.meta.get("val")
    if op_name(n) != "reshape" or not isinstance(val, torch.Tensor):
        return False
    static = all(isinstance(d, int) for d in (*val.shape, *val.stride()))
    return static and val.is_contiguous()  # no guard on a dynamic shape; a strided input's reshape may copy


class _Groups:
    """Union-find over nodes, tracking each group's members, anchor count and topo window."""

    def __init__(self, order: dict[fx.Node, int]) -> None:
        self.order = order
        self.parent: dict[fx.Node, fx.Node] = {}
        self.members: dict[fx.Node, set[fx.Node]] = {}
        self.anchor: dict[fx.Node, str | None] = {}

    def add(self, n: fx.Node, anchor: str | None) -> None:
        self.parent[n] = n
        self.members[n] = {n}
        self.anchor[n] = anchor

    def find(self, n: fx.Node) -> fx.Node:
        while self.parent[n] is not n:
            self.parent[n] = self.parent[self.parent[n]]
            n = self.parent[n]
        return n

    def union(self, a: fx.Node, b: fx.Node, anchor: str | None = None) -> fx.Node:
        ra, rb = self.find(a), self.find(b)
        if ra is rb:
            return ra
        if len(self.members[ra]) < len(self.members[rb]):
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.members[ra] |= self.members.pop(rb)
        self.anchor[ra] = anchor or self.anchor[ra] or self.anchor.pop(rb, None)
        self.anchor.pop(rb, None)
        return ra


def _creates_cycle(g: nx.DiGraph, groups: _Groups, ra: fx.Node, rb: fx.Node) -> bool:
    """Would merging groups ra and rb close a path that leaves and re-enters the union?"""
    both = groups.members[ra] | groups.members[rb]
    order = groups.order
    hi = max(order[n] for n in both)
    stack = [s for n in both for s in g.successors(n) if s not in both and order[s] < hi]
    seen: set[fx.Node] = set()
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        for s in g.successors(n):
            if s in both:
                return True
            if order[s] < hi and s not in seen:
                stack.append(s)
    return False


def _softmax_between(g: nx.DiGraph, kinds: dict[fx.Node, str], first: fx.Node, second: fx.Node) -> set[fx.Node] | None:
    """Fusable nodes on paths first → second, if they contain a softmax (exp and a reduction)."""
    down = nx.descendants(g, first)
    up = nx.ancestors(g, second)
    between = down & up
    if not between or any(kinds[n] not in ("pointwise", "reduction", "view", "getitem") for n in between):
        return None
    names = {op_name(n) for n in between}
    if ("exp" in names and names & {"amax", "sum", "max"}) or names & {"_softmax", "_safe_softmax"}:
        return between
    return None


def partition(gm: fx.GraphModule) -> list[Region]:
    nodes = [n for n in gm.graph.nodes if n.op == "call_function"]
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    kinds = {n: classify(n) for n in nodes}
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    for n in nodes:
        for u in n.users:
            if u in kinds:
                g.add_edge(n, u)

    fusable = [n for n in nodes if kinds[n] != "opaque"]
    groups = _Groups(order)
    for n in fusable:
        groups.add(n, op_name(n) if kinds[n] == "anchor" else None)

    # Getitems always live with their producer (var_mean, split, ...).
    for n in fusable:
        if kinds[n] == "getitem":
            src = n.args[0]
            if isinstance(src, fx.Node) and src in groups.parent:
                groups.union(src, n)
            else:
                kinds[n] = "opaque"
                groups.parent.pop(n), groups.members.pop(n), groups.anchor.pop(n)

    # Attention: matmul → (scale, mask) → softmax → matmul becomes one anchor.
    anchors = [n for n in fusable if kinds[n] == "anchor" and op_name(n) in ("bmm", "mm", "baddbmm")]
    for second in anchors:
        for first in anchors:
            if order[first] >= order[second] or groups.find(first) is groups.find(second):
                continue
            if groups.anchor[groups.find(first)] == "attention":
                continue
            between = _softmax_between(g, kinds, first, second)
            if between is None:
                continue
            # Every path first → second lies inside `between`, so this union cannot close a cycle.
            root = groups.find(second)
            for n in [first, *between]:
                root = groups.union(root, n, anchor="attention")
            break

    def may_merge(p: fx.Node, c: fx.Node, with_anchors: bool) -> bool:
        rp, rc = groups.find(p), groups.find(c)
        if rp is rc:
            return False
        ap, ac = groups.anchor[rp], groups.anchor[rc]
        if (ap and ac) or ((ap or ac) and not with_anchors):
            return False
        if ap or ac:
            # Anchors take pointwise/view epilogues and view-only prologues, never reductions:
            # Inductor does not fuse reductions into matmul templates, and neither will a kernel.
            other = groups.members[rc] if ap else groups.members[rp]
            allowed = ("pointwise", "view", "getitem") if ap else ("view", "getitem")
            if any(kinds[m] not in allowed for m in other):
                return False
        return not _creates_cycle(g, groups, rp, rc)

    # Anchor-free groups first, so a norm after a matmul stays whole instead of its first
    # pointwise op becoming the matmul's epilogue; then anchors take what is left.
    for with_anchors in (False, True):
        for c in fusable:
            if c not in groups.parent:
                continue
            for p in c.all_input_nodes:
                if p in groups.parent and may_merge(p, c, with_anchors):
                    groups.union(p, c)

    regions: list[Region] = []
    for root, members in groups.members.items():
        if not any(kinds[m] in COMPUTE for m in members):
            continue
        ordered = sorted(members, key=order.__getitem__)
        inputs, outputs = _boundary(ordered)
        if not outputs or not inputs:
            continue
        regions.append(Region(len(regions), ordered, groups.anchor[root], inputs, outputs))
    regions.sort(key=lambda r: order[r.nodes[0]])
    for i, r in enumerate(regions):
        r.index = i
    return regions
