"""Region → canonical form → ``KernelKey`` and a standalone region file.

The canonical order is independent of node names and graph position: outputs are
sorted by a structural (Merkle) hash, nodes are numbered by a post-order walk from
the outputs, and inputs by first use in that walk. The same order is used for the
key, the region file's ``forward(*inputs)`` signature and the substituted op call,
so a kernel written against the region file fits every graph with that key.
The key's contract is stated in docs/contracts.md; the region file, its sidecar and
their one write belong to ``passes/regionfile.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import math
import operator
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx

from llm_inductor._errors import RegionBypass
from llm_inductor.cache.key import KernelKey, TensorSpec
from llm_inductor.passes import family, regionfile
from llm_inductor.passes.partition import Region, op_name
from llm_inductor.passes.regionfile import REGION_SCHEMA, Sidecar
from llm_inductor.passes.symexpr import SymbolNamer, _hint_of

log = logging.getLogger(__name__)
# Wall time spent writing regions' family keys, this process (benchmarks/studies/compile_overhead.py reports it).
FAMILY_SECONDS = [0.0]

# Index inputs: (op, position of the index arg) → (position of the indexed tensor, dim arg position or fixed dim).
_INDEX_USES = {
    "gather": (2, 0, ("arg", 1)),
    "index_select": (2, 0, ("arg", 1)),
    "embedding": (1, 0, ("fixed", 0)),
}


def device_class(device: torch.device) -> str:
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"cuda:sm{major}{minor}"
    return device.type


def _target_text(node: fx.Node) -> str:
    t = node.target
    if t is operator.getitem:
        return "getitem"
    if isinstance(t, torch._ops.OpOverload):
        ns, name = t._schema.name.split("::")
        return f"torch.ops.{ns}.{name}.{t._overloadname}"
    raise RegionBypass(f"unsupported call target {t!r}")


def _fmt_float(x: float) -> str:
    if math.isnan(x):
        return "float('nan')"
    if math.isinf(x):
        return "float('inf')" if x > 0 else "float('-inf')"
    return repr(x)


@dataclass
class RegionInfo:
    key: KernelKey
    region: Region
    inputs: list[fx.Node]  # canonical order
    outputs: list[fx.Node]  # canonical order
    body: list[str]  # forward's statements
    returns: list[str]  # names forward returns, canonical output order
    symbols: dict[str, int]  # canonical symbol → size seen
    bindings: dict[str, tuple[int, int]]  # canonical symbol → (input, dim) that carries it
    index_high: dict[int, str] = field(default_factory=dict)  # input → exclusive upper bound (size expr)
    cost: dict[str, Any] = field(default_factory=dict)
    # The same region with its sizes abstracted (passes/family.py): its key, body, symbols (sizes seen here) and
    # bindings; its source() is the family's region file. None where the region has no family key.
    family: RegionInfo | None = None

    @property
    def digest(self) -> str:
        return self.key.digest

    @property
    def key16(self) -> str:
        return self.key.key16

    @property
    def ops(self) -> list[str]:
        return self.region.ops

    def sidecar(self) -> Sidecar:
        def spec(i: int, s: TensorSpec, kind: str) -> dict[str, Any]:
            d = {"dtype": s.dtype, "shape": list(s.shape), "stride": list(s.stride), "aligned": s.aligned}
            if kind == "input" and i in self.index_high:
                d["index_high"] = self.index_high[i]
            return d

        return Sidecar(
            {
                "region_schema": REGION_SCHEMA,
                "key": self.digest,
                "key16": self.key16,
                "key_fields": self.key.to_dict(),
                "legacy_key": self.key.legacy_digest,  # the schema-1 key: `cache verify` migrates entries under it
                "device": self.key.device,
                "inputs": [spec(i, s, "input") for i, s in enumerate(self.key.inputs)],
                "outputs": [spec(i, s, "output") for i, s in enumerate(self.key.outputs)],
                "symbols": dict(self.symbols),
                "bindings": {k: list(v) for k, v in self.bindings.items()},
                "ops": self.ops,
                "anchor": self.region.anchor,
                "cost": dict(self.cost),
                "torch_version": torch.__version__,
                **self._family_fields(),
            }
        )

    def _family_fields(self) -> dict[str, Any]:
        """An exact region's sidecar names its family (a family's own says ``family`` in its key fields)."""
        if self.family is None:
            return {}
        f = self.family
        return {"family": {"key": f.digest, "key16": f.key16, "symbols": dict(f.symbols)}}

    def source(self) -> str:
        return render_source(self.key, self.body, self.returns, self.symbols, self.bindings, self.index_high)

    def write(self, directory: str | Path) -> Path:
        """Write region_<key16>.py and its sidecar (``regionfile.write``); returns the .py path."""
        return regionfile.write(directory, self.key16, self.source(), self.sidecar())


# Binary ops whose two tensor operands may be swapped: their operands are ordered by
# structural hash, so `w * x` and `x * w` get one key (HF's RMSNorm writes the former).
# Only when both operands are contiguous: TensorIterator lays the output out after the
# first operand's strides, so swapping two permuted operands would change the output strides.
_COMMUTATIVE = {
    "add.Tensor",
    "mul.Tensor",
    "maximum.default",
    "minimum.default",
    "eq.Tensor",
    "ne.Tensor",
    "logical_and.default",
    "logical_or.default",
    "bitwise_and.Tensor",
    "bitwise_or.Tensor",
    "bitwise_xor.Tensor",
}


def _commutes(n: fx.Node) -> bool:
    t = n.target
    if not isinstance(t, torch._ops.OpOverload) or len(n.args) != 2 or n.kwargs.get("alpha", 1) != 1:
        return False
    if f"{t._schema.name.split('::')[-1]}.{t._overloadname}" not in _COMMUTATIVE:
        return False
    vals = [a.meta.get("val") if isinstance(a, fx.Node) else None for a in n.args]
    return all(isinstance(v, torch.Tensor) and v.is_contiguous() for v in vals)


class _Canon:
    def __init__(self, region: Region) -> None:
        self.region = region
        self.members = set(region.nodes)
        self.names: dict[fx.Node, str] = {}
        self.inputs: list[fx.Node] = []
        self.order: list[fx.Node] = []
        self.syms = SymbolNamer()

    # -- structural hash: orders outputs and commutative operands canonically
    def merkle(self) -> dict[fx.Node, str]:
        h: dict[fx.Node, str] = {}

        def leaf(a: Any) -> str:
            # Dynamo's symbol names (s77) must not reach the hash: they are not canonical, and a
            # region rebuilt from its key (passes/rebuild.py) has other names for the same sizes.
            if isinstance(a, fx.Node):
                if a in h:
                    return h[a]
                val = a.meta.get("val")
                if isinstance(val, torch.Tensor):
                    return f"in:{val.dtype}:{tuple(map(self.neutral, val.shape))}"
                return self.neutral(val)  # a size node outside the region: the rebuilt graph has a constant
            return self.neutral(a)

        self.leaf = leaf
        for n in self.region.nodes:
            args = fx.node.map_aggregate(
                (self.args(n), dict(sorted(n.kwargs.items()))), leaf
            )  # kwarg order is not meaning
            h[n] = hashlib.sha256(f"{_target_text(n)}{args}".encode()).hexdigest()
        return h

    @staticmethod
    def neutral(a: Any) -> str:
        """A constant (or a size) as the structural hash sees it."""
        return _neutral(a)

    def args(self, n: fx.Node) -> tuple[Any, ...]:
        """n's positional args, commutative operands in structural-hash order (stable on ties)."""
        if not _commutes(n):
            return tuple(n.args)
        return tuple(sorted(n.args, key=self.leaf))

    def walk(self) -> None:
        h = self.merkle()
        pos = {n: i for i, n in enumerate(self.region.nodes)}
        outputs = sorted(self.region.outputs, key=lambda n: (h[n], pos[n]))
        seen: set[fx.Node] = set()

        def visit(n: fx.Node) -> None:
            stack = [(n, False)]
            while stack:
                cur, done = stack.pop()
                if done:
                    self.names[cur] = f"v{len(self.order)}"
                    self.order.append(cur)
                    continue
                if cur in seen:
                    continue
                seen.add(cur)
                stack.append((cur, True))
                for a in reversed(_nodes_in(self.args(cur), cur.kwargs)):
                    if a in self.members and a not in seen:
                        stack.append((a, False))

        for o in outputs:
            visit(o)
        for n in self.region.nodes:  # anything not reachable from an output (kept for safety)
            visit(n)
        # Number inputs by first use in the canonical node order and argument order.
        for n in self.order:
            for a in _nodes_in(self.args(n), n.kwargs):
                if a not in self.members and isinstance(a.meta.get("val"), torch.Tensor) and a not in self.inputs:
                    self.inputs.append(a)
        for i, a in enumerate(self.inputs):
            self.names[a] = f"in{i}"
        self.outputs = outputs

    def size_text(self, x: Any) -> str:
        return self.syms.render(x)

    def spec(self, val: torch.Tensor) -> TensorSpec:
        for s in (*val.shape, *val.stride()):
            self.syms.observe(s)
        return TensorSpec(
            str(val.dtype),
            tuple(self.syms.render(s) for s in val.shape),
            tuple(self.syms.render(s) for s in val.stride()),
            _aligned(val),
        )

    def arg(self, a: Any) -> str:
        if isinstance(a, fx.Node):
            if a in self.names:
                return self.names[a]
            val = a.meta.get("val")
            if isinstance(val, (torch.SymInt, torch.SymFloat, int, float)):
                return self.syms.render(val) if not isinstance(val, float) else _fmt_float(val)
            raise RegionBypass(f"argument {a.name} is neither a region input nor a size")
        if isinstance(a, (list, tuple)):
            inner = ", ".join(self.arg(x) for x in a)
            return f"[{inner}]" if isinstance(a, list) else f"({inner}{',' if len(a) == 1 else ''})"
        if isinstance(a, bool) or a is None or isinstance(a, str):
            return repr(a)
        if isinstance(a, int):
            return str(a)
        if isinstance(a, float):
            return _fmt_float(a)
        if isinstance(a, (torch.SymInt, torch.SymFloat, torch.SymBool)):
            return self.syms.render(a)
        if isinstance(a, torch.dtype):
            return str(a)
        if isinstance(a, torch.device):
            return "_device"
        if isinstance(a, (torch.layout, torch.memory_format)):
            return f"torch.{str(a).split('.')[-1]}"
        raise RegionBypass(f"cannot render constant of type {type(a).__name__}")

    def statement(self, n: fx.Node) -> str:
        if n.target is operator.getitem:
            return f"{self.names[n]} = {self.arg(n.args[0])}[{int(n.args[1])}]"
        args = [self.arg(a) for a in self.args(n)]
        args += [f"{k}={self.arg(v)}" for k, v in sorted(n.kwargs.items())]
        return f"{self.names[n]} = {_target_text(n)}({', '.join(args)})"


def _aligned(val: torch.Tensor) -> bool:
    """Whether the storage offset is a multiple of 16 bytes (a symbolic offset counts as aligned)."""
    offset = val.storage_offset()
    return not isinstance(offset, int) or (offset * val.element_size()) % 16 == 0


def _neutral(a: Any) -> str:
    return "?" if isinstance(a, (torch.SymInt, torch.SymFloat, torch.SymBool)) else repr(a)


def _nodes_in(args: Any, kwargs: Any) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg((args, kwargs), lambda a: found.append(a) if a not in found else None)
    return found


def describe(region: Region, *, device: str | None = None, symbols: SymbolNamer | None = None) -> RegionInfo:
    """Canonicalize a region: key, forward body, symbols. Raises RegionBypass when it cannot.

    ``device`` and ``symbols`` are for ``passes.rebuild``, which re-describes a graph rebuilt
    from a key: the key's device class (its fake inputs cannot ask a GPU) and a namer that
    already maps the rebuilt graph's symbols to the key's canonical names.
    """
    c = _Canon(region)
    if symbols is not None:
        c.syms = symbols
    c.walk()
    bindings: dict[str, tuple[int, int]] = {}
    for a in c.inputs:
        c.spec(a.meta["val"])  # names the inputs' symbols in canonical order first
    for i, a in enumerate(c.inputs):
        for d, s in enumerate(a.meta["val"].shape):
            name = c.syms.render(s)
            if name.startswith("s") and name[1:].isdigit():
                bindings.setdefault(name, (i, d))
    unbound = sorted(set(c.syms.hints) - set(bindings))
    if unbound:
        raise RegionBypass(f"symbolic dims {unbound} are not the size of any region input dim")
    index_high = _index_bounds(c)
    in_specs = tuple(
        dataclasses.replace(c.spec(a.meta["val"]), index_high=index_high.get(i)) for i, a in enumerate(c.inputs)
    )
    body = [c.statement(n) for n in c.order]
    out_specs = tuple(c.spec(o.meta["val"]) for o in c.outputs)
    if set(c.syms.hints) - set(bindings):  # spec() of an output met a new symbol
        raise RegionBypass("an output size depends on a symbol no input carries")
    returns = [c.names[o] for o in c.outputs]
    key = KernelKey(
        graph=tuple(body),
        inputs=in_specs,
        outputs=out_specs,
        returns=tuple(returns),
        device=device or device_class(c.inputs[0].meta["val"].device),
    )
    info = RegionInfo(key, region, c.inputs, c.outputs, body, returns, dict(c.syms.hints), bindings, index_high)
    info.family = _describe_family(c, info)
    return info


def _describe_family(exact: _Canon, info: RegionInfo) -> RegionInfo | None:
    """The family of an exactly described region: every size written over symbols (passes/family.py).

    Never raises: a region without a family key keeps its exact key.
    """
    start = time.perf_counter()
    try:
        return _family_of(exact, info)
    except RegionBypass:
        return None
    except Exception as e:  # a gap in the abstraction must not cost the region its exact key
        log.debug("llm_inductor: no family key for region %s: %s: %s", info.key16, type(e).__name__, e)
        return None
    finally:
        FAMILY_SECONDS[0] += time.perf_counter() - start


def _family_of(exact: _Canon, info: RegionInfo) -> RegionInfo | None:
    c = _FamilyCanon(exact.region)
    c.walk()
    for a in c.inputs:
        for s in a.meta["val"].shape:
            c.fam.observe(s, _hint_of)
    bindings: dict[str, tuple[int, int]] = {}
    for i, a in enumerate(c.inputs):
        for d, s in enumerate(a.meta["val"].shape):
            name = c.size_text(s)
            if name in c.fam.hints:
                bindings.setdefault(name, (i, d))
    if set(c.fam.hints) - set(bindings):  # a dynamic symbol only inside an expression: no dim carries it
        return None
    index_high = _index_bounds(c)
    in_specs = tuple(
        dataclasses.replace(c.spec(a.meta["val"]), index_high=index_high.get(i)) for i, a in enumerate(c.inputs)
    )
    body = [c.statement(n) for n in c.order]
    out_specs = tuple(c.spec(o.meta["val"]) for o in c.outputs)
    returns = [c.names[o] for o in c.outputs]
    key = dataclasses.replace(
        info.key, graph=tuple(body), inputs=in_specs, outputs=out_specs, returns=tuple(returns), family=True
    )
    return RegionInfo(
        key, info.region, c.inputs, c.outputs, body, returns, dict(c.fam.hints), bindings, index_high, info.cost
    )


class _FamilyCanon(_Canon):
    """A canonical walk that no size reaches, rendered with sizes over family symbols.

    Its own walk, not the exact one's: the exact structural hash sees concrete shapes and size
    arguments, so the order of outputs and commutative operands (and the input numbering with them)
    could change with the sizes. Here a size of 2 or more hashes alike whatever its value; ties keep
    the graph's order, which is the program's, at any size.
    """

    def __init__(self, region: Region) -> None:
        super().__init__(region)
        self.fam = family.FamilyNamer()

    @staticmethod
    def neutral(a: Any) -> str:
        # A dynamic size hashes as a static one does: the graph of one computation, compiled with dynamic
        # shapes or not, is walked in one order.
        if isinstance(a, (torch.SymInt, torch.SymFloat, torch.SymBool)):
            return "n"
        if isinstance(a, int) and not isinstance(a, bool) and a >= 2:
            return "n"
        return repr(a)

    def size_text(self, x: Any) -> str:
        return self.fam.size(x).text

    def spec(self, val: torch.Tensor) -> TensorSpec:
        shape = tuple(self.fam.size(s) for s in val.shape)
        strides = family.strides(self.fam, shape, tuple(val.stride()))
        return TensorSpec(str(val.dtype), tuple(s.text for s in shape), tuple(s.text for s in strides), _aligned(val))

    def arg(self, a: Any) -> str:
        if isinstance(a, family.Lifted):
            return a.text
        if isinstance(a, fx.Node) and a not in self.names:
            val = a.meta.get("val")
            if isinstance(val, (torch.SymInt, torch.SymFloat)):
                return self.size_text(val)
        if isinstance(a, (torch.SymInt, torch.SymFloat)):
            return self.size_text(a)
        return super().arg(a)

    def statement(self, n: fx.Node) -> str:
        if n.target is operator.getitem:
            return super().statement(n)
        sizes = family.size_args(n)
        args = list(self.args(n))
        kwargs = dict(n.kwargs)
        if sizes:
            schema = n.target._schema.arguments
            args = [family.lifted_arg(a, self.fam) if schema[i].name in sizes else a for i, a in enumerate(args)]
            kwargs = {k: family.lifted_arg(v, self.fam) if k in sizes else v for k, v in kwargs.items()}
        divisor = family.traced_divisor(n, self.fam)
        if divisor is not None:
            args[1] = family.lifted_divisor(divisor)
        rendered = [self.arg(a) for a in args]
        rendered += [f"{k}={self.arg(v)}" for k, v in sorted(kwargs.items())]
        return f"{self.names[n]} = {_target_text(n)}({', '.join(rendered)})"


def _index_bounds(c: _Canon) -> dict[int, str]:
    """Exclusive upper bounds for integer inputs that reach an index argument."""
    highs: dict[int, str] = {}
    for n in c.order:
        name = op_name(n)
        uses: list[tuple[Any, str]] = []
        if name in _INDEX_USES:
            idx_pos, src_pos, (how, d) = _INDEX_USES[name]
            idx_pos = 1 if name == "embedding" else idx_pos
            if len(n.args) > idx_pos and isinstance(n.args[src_pos], fx.Node):
                dim = n.args[d] if how == "arg" else d
                uses.append((n.args[idx_pos], c.size_text(n.args[src_pos].meta["val"].shape[dim])))
        elif name == "index":
            src = n.args[0].meta["val"]
            for d, idx in enumerate(n.args[1]):
                if idx is not None:
                    uses.append((idx, c.size_text(src.shape[d])))
        for idx, high in uses:
            for inp in _integer_sources(idx, c):
                highs.setdefault(c.inputs.index(inp), high)
    return highs


def _integer_sources(node: Any, c: _Canon) -> list[fx.Node]:
    found, stack, seen = [], [node], set()
    while stack:
        n = stack.pop()
        if not isinstance(n, fx.Node) or n in seen:
            continue
        seen.add(n)
        val = n.meta.get("val")
        if not isinstance(val, torch.Tensor) or val.dtype.is_floating_point or val.dtype == torch.bool:
            continue
        if n in c.inputs:
            found.append(n)
        elif n in c.members:
            stack.extend(n.all_input_nodes)
    return found


# ---------------------------------------------------------------------------- source


_HEADER = '''"""Region {key16}: {ops}.

Generated by llm_inductor from a torch.compile graph. forward() is the reference
computation; make_inputs() draws fresh inputs with the region's shapes, strides
and dtypes. Metadata (key fields, specs, cost) is in region_{key16}.json.
"""
import torch

KEY = "{digest}"
SYMBOLS = {symbols!r}  # symbolic dims and the sizes seen


def forward({params}):
'''

_MAKE = """

def _tensor(g, device, dtype, shape, stride, high=None):
    n = 1 + sum((s - 1) * st for s, st in zip(shape, stride)) if all(shape) else 0
    if dtype.is_floating_point or dtype.is_complex:
        base = torch.randn(n, generator=g, dtype=torch.float32).to(dtype)
    elif dtype == torch.bool:
        base = torch.rand(n, generator=g) < 0.5
    else:
        base = torch.randint(0, 16 if high is None else max(int(high), 1), (n,), generator=g).to(dtype)
    return base.to(device).as_strided(shape, stride)


def make_inputs(seed=0, device="cpu", sizes=None):
{binds}    g = torch.Generator().manual_seed(seed)
    return (
{calls}    )
"""


_PRIM = re.compile(r"torch\.ops\.prims\.(\w+)\.")


@functools.cache
def _inductor_prims() -> frozenset[str]:
    """The prims Inductor registers when it is imported (``prims.fma`` in its decompositions, among others)."""
    import torch._inductor.inductor_prims as inductor_prims

    ops = (v for v in vars(inductor_prims).values() if isinstance(v, torch._ops.OpOverload))
    return frozenset(op._schema.name.removeprefix("prims::") for op in ops if op._schema.name.startswith("prims::"))


def _tuple(items: tuple[str, ...]) -> str:
    return f"({', '.join(items)}{',' if len(items) == 1 else ''})"


def render_source(
    key: KernelKey,
    body: list[str],
    returns: list[str],
    symbols: dict[str, int],
    bindings: dict[str, tuple[int, int]],
    index_high: dict[int, str],
) -> str:
    params = ", ".join(f"in{i}" for i in range(len(key.inputs)))
    ops = sorted({line.split("(")[0].split(".")[-2] for line in body if "torch.ops." in line})
    out = _HEADER.format(key16=key.key16, ops=", ".join(ops), digest=key.digest, symbols=symbols, params=params)
    uses = sorted(_inductor_prims() & {m.group(1) for line in body for m in _PRIM.finditer(line)})
    if uses:  # registered by Inductor's import: a process that runs the file without it must import them
        imports = f"import torch._inductor.inductor_prims  # noqa: F401  (registers prims.{', prims.'.join(uses)})"
        out = out.replace("\nimport torch\n", f"\nimport torch\n{imports}\n", 1)
    lines = ["_device = in0.device"]
    lines += [f"{s} = in{i}.size({d})" for s, (i, d) in sorted(bindings.items())]
    lines += body
    out += "".join(f"    {line}\n" for line in lines)
    out += f"    return {returns[0] if len(returns) == 1 else _tuple(tuple(returns))}\n"
    binds = "".join(f"    {s} = env[{s!r}]\n" for s in sorted(symbols))
    if binds:  # sizes given by the caller override the sizes seen
        binds = "    env = dict(SYMBOLS, **(sizes or {}))\n" + binds
    calls = "".join(
        f"        _tensor(g, device, {s.dtype}, {_tuple(s.shape)}, {_tuple(s.stride)}, {index_high.get(i)}),\n"
        for i, s in enumerate(key.inputs)
    )
    return out + _MAKE.format(binds=binds, calls=calls)
