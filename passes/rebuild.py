"""A region rebuilt from its key alone: the reference for kernels that arrived from elsewhere.

An entry from a pack, from Redis or from a teammate carries a region file, but that file
is Python written by whoever made the entry, and the key's digest is an unkeyed sha256
anyone can recompute. What can be checked is the key's own text:

- every graph line follows the grammar ``_Canon.statement`` writes (``vN = torch.ops.aten.op.overload(...)``
  or ``vN = vK[i]``), parsed here with ``ast`` and never executed;
- every op is an ATen overload that resolves, mutates nothing and that the partitioner
  would put in a region (``partition.classify``);
- the graph built from those lines, propagated on fake tensors at the given sizes and
  described again by ``passes.region.describe``, gives the key's digest back.

A key that passes names one computation. ``rebuild`` returns its ``RegionInfo``, whose
``source()`` is a region file this package wrote; ``Program`` runs the lines on real
tensors (the runtime op's fallback). Neither imports anything an entry carried.
"""

from __future__ import annotations

import ast
import importlib
import math
import operator
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx

from llm_inductor._errors import RegionBypass
from llm_inductor.cache.key import KernelKey, TensorSpec
from llm_inductor.passes.partition import Region, classify, mutates
from llm_inductor.passes.region import RegionInfo, describe
from llm_inductor.passes.symexpr import FUNCTIONS, SymbolNamer, evaluate

_NAMESPACES = ("aten", "prims")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SYMBOL = re.compile(r"s\d+\Z")
_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_TORCH_CONSTANTS = (torch.dtype, torch.layout, torch.memory_format)


class KeyGraphError(ValueError):
    """A key that does not describe a region this package can rebuild; ``reason`` names why.

    grammar: a line outside the grammar; op: an op that is not an allowed ATen overload;
    sizes: no usable size for a symbol; mismatch: the rebuilt graph describes another key.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Ref:
    """A value of the region: ``in3`` or ``v7``."""

    name: str


@dataclass(frozen=True)
class Size:
    """A size expression over the canonical symbols, evaluated where the sizes are known."""

    text: str


class _Device:
    def __repr__(self) -> str:
        return "_device"


DEVICE = _Device()  # the region's device (``_device`` in the key's lines)


@dataclass(frozen=True)
class Stmt:
    name: str
    target: Any  # an OpOverload, or operator.getitem
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


# ---------------------------------------------------------------------------- parsing


def parse(key: KernelKey) -> list[Stmt]:
    """The key's graph lines as statements; raises KeyGraphError for anything outside the grammar."""
    defined = {f"in{i}" for i in range(len(key.inputs))}
    stmts = []
    for i, line in enumerate(key.graph):
        stmt = _statement(line, f"v{i}", defined)
        defined.add(stmt.name)
        stmts.append(stmt)
    for r in key.returns:
        if r not in defined or not r.startswith("v"):
            raise KeyGraphError("grammar", f"the key returns {r!r}, which no graph line defines")
    if not key.returns:
        raise KeyGraphError("grammar", "the key names no returned values (a key of schema 1?)")
    return stmts


def _statement(line: str, name: str, defined: set[str]) -> Stmt:
    def bad(why: str) -> KeyGraphError:
        return KeyGraphError("grammar", f"key line {line[:120]!r}: {why}")

    try:
        tree = ast.parse(line, mode="exec")
    except SyntaxError as e:
        raise bad(f"not a statement ({e.msg})") from None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assign):
        raise bad("not one assignment")
    assign = tree.body[0]
    if len(assign.targets) != 1 or not isinstance(assign.targets[0], ast.Name) or assign.targets[0].id != name:
        raise bad(f"it must assign {name}")
    value = assign.value
    if isinstance(value, ast.Subscript):
        base = value.value
        index = value.slice
        if not (
            isinstance(base, ast.Name)
            and base.id in defined
            and isinstance(index, ast.Constant)
            and type(index.value) is int
        ):
            raise bad("a subscript must be vK[int] of an earlier value")
        return Stmt(name, operator.getitem, (Ref(base.id), index.value), {})
    if not isinstance(value, ast.Call):
        raise bad("the value must be an op call or a subscript")
    target = _op(value.func, bad)
    arg_names = {a.name for a in target._schema.arguments}
    kwargs = {}
    for kw in value.keywords:
        if kw.arg is None or kw.arg not in arg_names:
            raise bad(f"keyword {kw.arg!r} is not an argument of {target}")
        kwargs[kw.arg] = _constant(kw.value, defined, bad)
    return Stmt(name, target, tuple(_constant(a, defined, bad) for a in value.args), kwargs)


def _op(func: ast.expr, bad: Any) -> Any:
    chain = []
    while isinstance(func, ast.Attribute):
        chain.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        raise bad("the callee must be torch.ops.<namespace>.<op>.<overload>")
    chain = [func.id, *reversed(chain)]
    if len(chain) != 5 or chain[:2] != ["torch", "ops"] or chain[2] not in _NAMESPACES:
        raise bad(f"the callee must be torch.ops.{{{','.join(_NAMESPACES)}}}.<op>.<overload>")
    ns, op, overload = chain[2:]
    if not (_IDENT.match(op) and _IDENT.match(overload)) or op.startswith("_foreach"):
        raise bad(f"{op}.{overload} is not an op name")
    target = _resolve(ns, op, overload)
    if target is None and ns == "prims":  # one Inductor registers on import (prims.fma): a region file imports it
        importlib.import_module("torch._inductor.inductor_prims")
        target = _resolve(ns, op, overload)
    if not isinstance(target, torch._ops.OpOverload):
        raise KeyGraphError("op", f"{ns}.{op}.{overload} is not an operator of this torch")
    if mutates(target):
        raise KeyGraphError("op", f"{ns}.{op}.{overload} mutates its arguments")
    return target


def _resolve(ns: str, op: str, overload: str) -> Any:
    try:
        packet = getattr(getattr(torch.ops, ns), op)
        return getattr(packet, overload) if overload in packet.overloads() else None
    except (AttributeError, RuntimeError):
        return None


def _constant(node: ast.expr, defined: set[str], bad: Any) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float, bool, str, type(None)):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in defined:
            return Ref(node.id)
        if node.id == "_device":
            return DEVICE
        if _SYMBOL.match(node.id):
            return Size(node.id)
        raise bad(f"unknown name {node.id!r}")
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_constant(e, defined, bad) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "torch":
        value = getattr(torch, node.attr, None) if _IDENT.match(node.attr) else None
        if isinstance(value, _TORCH_CONSTANTS):
            return value
        raise bad(f"torch.{node.attr} is not a dtype, layout or memory format")
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "float"
        and len(node.args) == 1
        and not node.keywords
        and isinstance(node.args[0], ast.Constant)
        and node.args[0].value in _FLOATS
    ):
        return _FLOATS[node.args[0].value]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        value = _constant(node.operand, defined, bad)
        if type(value) in (int, float):
            return -value
    if isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Call)):
        return _size(node, bad)
    raise bad(f"{ast.unparse(node)[:60]!r} is not a constant the key grammar allows")


def _size(node: ast.expr, bad: Any) -> Size:
    """Arithmetic over symbols and ints, with the functions Inductor's sympy printer emits."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            if not (isinstance(sub.func, ast.Name) and sub.func.id in FUNCTIONS) or sub.keywords:
                raise bad(f"{ast.unparse(node)[:60]!r}: only {sorted(FUNCTIONS)} may be called in a size")
        elif isinstance(sub, ast.Name):
            if not (_SYMBOL.match(sub.id) or sub.id in FUNCTIONS):
                raise bad(f"{ast.unparse(node)[:60]!r}: {sub.id!r} is not a size symbol")
        elif isinstance(sub, ast.Constant):
            if type(sub.value) is not int:
                raise bad(f"{ast.unparse(node)[:60]!r}: sizes are integers")
        elif not isinstance(sub, (ast.BinOp, ast.UnaryOp, ast.operator, ast.unaryop, ast.Load)):
            raise bad(f"{ast.unparse(node)[:60]!r} is not a size expression")
    return Size(ast.unparse(node))


# ---------------------------------------------------------------------------- evaluation


def _materialize(a: Any, values: Mapping[str, Any], sizes: Mapping[str, Any], device: torch.device) -> Any:
    if isinstance(a, Ref):
        return values[a.name]
    if isinstance(a, Size):
        return evaluate(a.text, sizes)
    if a is DEVICE:
        return device
    if isinstance(a, list):
        return [_materialize(x, values, sizes, device) for x in a]
    if isinstance(a, tuple):
        return tuple(_materialize(x, values, sizes, device) for x in a)
    if isinstance(a, dict):
        return {k: _materialize(x, values, sizes, device) for k, x in a.items()}
    return a


def bindings(key: KernelKey) -> dict[str, tuple[int, int]]:
    """Canonical symbol → the first (input, dim) whose size it is, as ``describe`` binds them."""
    found: dict[str, tuple[int, int]] = {}
    for i, spec in enumerate(key.inputs):
        for d, text in enumerate(spec.shape):
            if _SYMBOL.match(text):
                found.setdefault(text, (i, d))
    return found


class Program:
    """The key's lines, run op by op on real tensors (no code generated, nothing imported)."""

    def __init__(self, key: KernelKey) -> None:
        self.key = key
        self.stmts = parse(key)
        self.bindings = bindings(key)

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        sizes = {s: inputs[i].shape[d] for s, (i, d) in self.bindings.items()}
        values: dict[str, Any] = {f"in{i}": t for i, t in enumerate(inputs)}
        device = inputs[0].device
        for st in self.stmts:
            args = _materialize(st.args, values, sizes, device)
            values[st.name] = st.target(*args, **_materialize(st.kwargs, values, sizes, device))
        return tuple(values[r] for r in self.key.returns)


# ---------------------------------------------------------------------------- rebuild


def _symbols(key: KernelKey) -> list[str]:
    """The canonical symbols in order of first appearance in the input specs (s0, s1, ...)."""
    seen: list[str] = []
    for spec in key.inputs:
        for text in (*spec.shape, *spec.stride):
            for name in sorted(set(re.findall(r"\bs\d+\b", text)), key=lambda n: int(n[1:])):
                if name not in seen:
                    seen.append(name)
    if seen != [f"s{i}" for i in range(len(seen))]:
        raise KeyGraphError("grammar", f"the key's symbols {seen} are not numbered in order of first use")
    return seen


def rebuild(key: KernelKey, sizes: Mapping[str, int]) -> RegionInfo:
    """Rebuild the region a key describes, at ``sizes`` for its symbols, and check it against the digest.

    Raises KeyGraphError. ``sizes`` must come from something this machine trusts: a region
    its own compile recorded, never the entry being checked.
    """
    from torch._dynamo.source import ConstantSource
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv

    stmts = parse(key)
    names = _symbols(key)
    missing = [s for s in names if not (isinstance(sizes.get(s), int) and sizes[s] >= 2)]
    if missing:
        raise KeyGraphError("sizes", f"no size of at least 2 for {missing} (sizes given: {dict(sizes)})")
    env, namer = ShapeEnv(duck_shape=False), SymbolNamer()  # distinct symbols of equal sizes stay distinct
    symvals: dict[str, Any] = {}
    for s in names:
        sym = env.create_symbol(sizes[s], ConstantSource(s), dynamic_dim=DimDynamic.DYNAMIC)
        symvals[s] = env.create_symintnode(sym, hint=sizes[s])
        namer.preset(sym, s, sizes[s])
    device = torch.device("cuda" if key.device.startswith("cuda") else key.device)
    graph = fx.Graph()
    values: dict[str, fx.Node] = {}
    try:
        with FakeTensorMode(shape_env=env, allow_non_fake_inputs=False), warnings.catch_warnings():
            # the graph is only described, never run: sizes stay SymInt constants, as the key writes them
            warnings.filterwarnings("ignore", message="Raw SymInt value", category=UserWarning)
            for i, spec in enumerate(key.inputs):
                node = values[f"in{i}"] = graph.placeholder(f"in{i}")
                node.meta["val"] = _fake_input(spec, symvals, device)
            for st in stmts:
                node = graph.call_function(
                    st.target,
                    _materialize(st.args, values, symvals, device),
                    _materialize(st.kwargs, values, symvals, device),
                )
                meta = {k: v.meta["val"] for k, v in values.items()}
                node.meta["val"] = st.target(
                    *_materialize(st.args, meta, symvals, device), **_materialize(st.kwargs, meta, symvals, device)
                )
                values[st.name] = node
    except KeyGraphError:
        raise
    except Exception as e:  # an op refusing its arguments: the key describes nothing that runs
        raise KeyGraphError("mismatch", f"the key's graph does not run: {type(e).__name__}: {e}") from None
    members = [values[st.name] for st in stmts]
    for node in members:
        if classify(node) == "opaque":
            raise KeyGraphError("op", f"{node.target} is not an op a region may hold")
    outputs = [values[r] for r in key.returns]
    graph.output(tuple(outputs))
    region = Region(0, members, None, [values[f"in{i}"] for i in range(len(key.inputs))], outputs)
    try:
        info = describe(region, device=key.device, symbols=namer)
    except RegionBypass as e:
        raise KeyGraphError("mismatch", f"the rebuilt graph cannot be described: {e}") from None
    if key.family:
        # A family key (passes/family.py) is rebuilt over its symbols, as a graph with dynamic sizes, and
        # compared with that graph's family: a family names Dynamo's symbols as it names static sizes.
        if info.family is None:
            raise KeyGraphError("mismatch", "the rebuilt graph has no family key")
        info = info.family
    if info.digest != key.digest:
        diff = sorted(set(info.key.debug_lines()) ^ set(key.debug_lines()))[:4]
        raise KeyGraphError("mismatch", f"the rebuilt graph describes key {info.key16}, not {key.key16}: {diff}")
    return info


def _fake_input(spec: TensorSpec, symvals: Mapping[str, Any], device: torch.device) -> torch.Tensor:
    dtype = getattr(torch, spec.dtype.replace("torch.", ""), None)
    if not isinstance(dtype, torch.dtype):
        raise KeyGraphError("grammar", f"unknown dtype {spec.dtype!r} in the key")
    shape = [evaluate(x, symvals) for x in spec.shape]
    stride = [evaluate(x, symvals) for x in spec.stride]
    if spec.aligned:
        return torch.empty_strided(shape, stride, dtype=dtype, device=device)
    # an unaligned input starts one element into its storage (16-byte alignment broken for every dtype < 16 B)
    extent = 1 + sum((n - 1) * st for n, st in zip(shape, stride))
    return torch.empty(extent + 1, dtype=dtype, device=device).as_strided(shape, stride, 1)


def sizes_from(symbols: Any) -> dict[str, int]:
    """A sidecar's ``symbols`` as sizes, keeping only canonical names with integer values."""
    if not isinstance(symbols, dict):
        return {}
    return {k: v for k, v in symbols.items() if isinstance(k, str) and _SYMBOL.match(k) and type(v) is int}
