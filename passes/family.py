"""Size families: the canonical region with its sizes abstracted into symbols.

``describe`` (``passes/region.py``) keys every region twice. The exact key hashes the
sizes it saw. The family key hashes the same canonical graph with each size written
as an expression over canonical symbols, so the static graphs of one computation at
other batch or sequence sizes share it, and graphs that differ in anything else do not.

What becomes a symbol, and what is written over symbols:

* **Input dims.** Every static dim of 2 or more, in canonical input and dim order; equal
  values share a symbol (Dynamo's duck sizing). A dynamic dim keeps its symbol's
  identity, never its hint, so a dynamic dim and a static one never share a symbol.
  Sizes 0 and 1 stay literals: they carry broadcast semantics.
* **Strides.** A dense stride is the product of the sizes laid out inside it; any other
  stride is matched by value, like a size argument.
* **Output dims, and the arguments that are sizes by their schema.** Each static
  integer that some symbol, or a product of two or three of them, equals is written as
  the first such expression in a fixed order (fewer factors first, then lower symbols):
  128 that is both a head dim and batch × heads is the head dim. The arguments are the
  ``SymInt`` ones named as sizes (view, reshape and expand sizes, new_empty, full, empty
  and as_strided sizes and strides, split sizes, iota's length).
* **Scalars the pass traces to sizes:** a division by the number of elements a sum
  reduced or an expand broadcast, that is a mean's divisor and its gradient's.

Everything else (dims, exponents, slice bounds, epsilons, any other integer) stays
literal, even where it equals a size, and a literal that no expression matches stays.

Soundness: each abstracted literal ``v`` is written as an expression ``e`` with
``e(σ) = v`` at the graph's own sizes ``σ``. Two graphs with one family key therefore
differ only in ``σ``, and the family's reference (rendered from the key) computes, at
the user's ``σ``, exactly the user's graph. Which sizes a family kernel may serve is
the entry's per-size record; the key only says what the kernel computes.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
import re
from dataclasses import dataclass
from typing import Any

import sympy
import torch
import torch.fx as fx

from llm_inductor._errors import RegionBypass
from llm_inductor.passes.partition import op_name
from llm_inductor.passes.symexpr import check_renderable, to_sympy

# SymInt arguments that are sizes by their name: any op's. Dims, slice bounds, repeats,
# pads and shifts have other names and stay literal.
_SIZE_ARGS = frozenset({"size", "shape", "stride", "sizes", "split_sizes", "split_size"})
# ... and ones whose name is a size for one op only.
_SIZE_ARGS_OF = {"iota": frozenset({"length"})}
_MAX_FACTORS = 3


@functools.cache
def _symint_args(op: torch._ops.OpOverload) -> frozenset[str]:
    """Names of op's SymInt and SymInt[] arguments (the schema text is the only place that tells them from int)."""
    return frozenset(re.findall(r"SymInt(?:\[\d*\])?\??\s+(\w+)", str(op._schema)))


def _overload(n: fx.Node) -> str:
    """``div.Scalar``: the op and its overload ('' for a call that is no ATen op)."""
    t = n.target
    return f"{op_name(n)}.{t._overloadname}" if isinstance(t, torch._ops.OpOverload) else ""


def size_args(n: fx.Node) -> frozenset[str]:
    """The arguments of n that are sizes by its schema."""
    if not isinstance(n.target, torch._ops.OpOverload):
        return frozenset()
    wanted = _SIZE_ARGS | _SIZE_ARGS_OF.get(op_name(n), frozenset())
    return _symint_args(n.target) & wanted


@dataclass(frozen=True)
class Size:
    """A size over family symbols: its value at this graph's sizes, and its text in keys and region files.

    Static sizes are literals or products of symbols, kept as text (sympy's printer, called per size,
    made the pass several times slower); only a dynamic size carries a sympy expression.
    """

    value: int | None  # None: dynamic
    text: str
    factors: tuple[str, ...] = ()  # a static product's symbols, in sympy's printing order (by name)
    coefficient: int = 1
    expr: sympy.Expr | None = None  # a dynamic size: Dynamo's expression over canonical symbols

    @classmethod
    def literal(cls, v: int) -> Size:
        return cls(v, str(v), (), v)

    @classmethod
    def product(cls, coefficient: int, factors: tuple[str, ...], value: int) -> Size:
        if not factors or coefficient == 0:
            return cls.literal(coefficient)
        names = tuple(sorted(factors))
        text = "*".join(((str(coefficient),) if coefficient != 1 else ()) + names)
        return cls(value, text, names, coefficient)

    def sympy(self) -> sympy.Expr:
        if self.expr is not None:
            return self.expr
        return sympy.Integer(self.coefficient) * sympy.Mul(*(_symbol(f) for f in self.factors))

    def __mul__(self, other: Size) -> Size:
        if self.expr is None and other.expr is None:
            return Size.product(
                self.coefficient * other.coefficient, self.factors + other.factors, self.value * other.value
            )
        return Size.dynamic(self.sympy() * other.sympy())

    @classmethod
    def dynamic(cls, expr: sympy.Expr) -> Size:
        if expr.is_Integer:
            return cls.literal(int(expr))
        text = str(expr)
        check_renderable(text)
        return cls(None, text, expr=expr)


@functools.cache
def _symbol(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, integer=True, positive=True)


class FamilyNamer:
    """Canonical family symbols s0, s1, ... for static values and dynamic symbols, in order of first appearance."""

    def __init__(self) -> None:
        self.static: dict[int, str] = {}  # a static size value → its symbol
        self.dynamic: dict[sympy.Symbol, sympy.Symbol] = {}  # Dynamo's symbol → its canonical one
        self.hints: dict[str, int] = {}  # canonical symbol → size seen (a dynamic one: its hint, for drawing only)
        self._products: dict[int, Size] | None = None

    def _new(self, hint: int) -> str:
        name = f"s{len(self.hints)}"
        self.hints[name] = hint
        self._products = None
        return name

    def observe(self, x: Any, hint_of: Any) -> None:
        """Name the symbols of an input dim: its own value if static, its free symbols if dynamic."""
        expr = to_sympy(x)
        if isinstance(expr, sympy.Expr) and not expr.is_Integer:
            for s in sorted(expr.free_symbols, key=str):
                if s not in self.dynamic:
                    self.dynamic[s] = _symbol(self._new(hint_of(x, s)))
            return
        v = int(expr)
        if v >= 2 and v not in self.static:
            self.static[v] = self._new(v)

    def size(self, x: Any) -> Size:
        """A size written over symbols: a dynamic one by identity, a static one by value (0 and 1 stay literal).

        An input dim's value is its own symbol, the first expression of its value.
        """
        expr = to_sympy(x)
        if expr is None:
            raise RegionBypass(f"not a size expression: {x!r}")
        if isinstance(expr, sympy.Expr) and not expr.is_Integer:
            unknown = expr.free_symbols - set(self.dynamic)
            if unknown:
                raise RegionBypass(f"size {expr} uses symbols {sorted(map(str, unknown))} not bound to a region input")
            return Size.dynamic(expr.xreplace(self.dynamic))
        v = int(expr)
        return self.products().get(v) or Size.literal(v) if v >= 2 else Size.literal(v)

    def products(self) -> dict[int, Size]:
        """Value → the first expression over static symbols that equals it: one symbol, then products of 2, then 3."""
        if self._products is None:
            found: dict[int, Size] = {}
            ordered = sorted(self.static.items(), key=lambda kv: int(kv[1][1:]))
            for k in range(1, _MAX_FACTORS + 1):
                for combo in itertools.combinations_with_replacement(ordered, k):
                    value = math.prod(v for v, _ in combo)
                    if value not in found:
                        found[value] = Size.product(1, tuple(name for _, name in combo), value)
            self._products = found
        return self._products


def strides(namer: FamilyNamer, shape: tuple[Size, ...], values: tuple[Any, ...]) -> tuple[Size, ...]:
    """Strides over symbols: a dense stride is the product of the sizes inside it, anything else goes by value.

    Dims are laid out from the smallest stride up (ties: the later dim inside), as a contiguous
    or permuted tensor is; a padded stride restarts the product from its own expression.
    """
    if any(not isinstance(to_sympy(v), int) for v in values):  # dynamic strides: Dynamo's expressions
        return tuple(namer.size(v) for v in values)
    out: list[Size] = [Size.literal(0)] * len(values)
    inner = Size.literal(1)
    for d in sorted(range(len(values)), key=lambda d: (int(values[d]), -d)):
        v = int(values[d])
        out[d] = inner if inner.value == v else namer.size(v)
        inner = out[d]
        if shape[d].value != 1:
            inner = inner * shape[d]
    return tuple(out)


# ---------------------------------------------------------------------------- traced scalars

_DIVISIONS = {"div.Scalar", "div.Tensor"}


def traced_divisor(n: fx.Node, namer: FamilyNamer) -> Size | None:
    """The size expression behind n's divisor, where n divides what a sum reduced or an expand broadcast by its count.

    ``sum(x, dims) / N`` with N the product of x's reduced dims is a mean; ``expand(g, sizes) / N``
    with N the product of the broadcast dims is a mean's gradient. Anything else: None.
    """
    if _overload(n) not in _DIVISIONS or len(n.args) != 2 or n.kwargs:
        return None
    src, divisor = n.args
    if isinstance(divisor, bool) or not isinstance(divisor, (int, float)) or not isinstance(src, fx.Node):
        return None
    if divisor < 2 or divisor != int(divisor):
        return None
    dims = _counted_dims(src)
    if dims is None:
        return None
    shape, counted = dims
    if not counted or not all(isinstance(shape[d], int) for d in counted):
        return None
    size = functools.reduce(operator.mul, (namer.size(shape[d]) for d in counted))
    return size if size.value == int(divisor) else None


def _counted_dims(src: fx.Node) -> tuple[tuple[Any, ...], list[int]] | None:
    """(shape, dims) whose element count src's producer counts: a sum's reduced dims, an expand's broadcast ones."""
    name = _overload(src)
    if name == "sum.dim_IntList" and isinstance(src.args[0], fx.Node):
        x = src.args[0].meta.get("val")
        dims = src.args[1] if len(src.args) > 1 else None
        if not isinstance(x, torch.Tensor) or not dims or x.dim() == 0:
            return None
        return tuple(x.shape), sorted({d % x.dim() for d in dims})
    if name == "expand.default" and isinstance(src.args[0], fx.Node):
        g, out = src.args[0].meta.get("val"), src.meta.get("val")
        if not isinstance(g, torch.Tensor) or not isinstance(out, torch.Tensor):
            return None
        lead = out.dim() - g.dim()
        broadcast = [d for d in range(out.dim()) if d < lead or (g.shape[d - lead] == 1 and out.shape[d] != 1)]
        return tuple(out.shape), broadcast
    return None


def lifted_arg(a: Any, namer: FamilyNamer) -> Any:
    """A size argument with every static int of 2 or more written over symbols (lists elementwise)."""
    if isinstance(a, (list, tuple)):
        return type(a)(lifted_arg(x, namer) for x in a)
    if isinstance(a, bool) or not isinstance(a, int) or a < 2:
        return a
    return Lifted(namer.size(a).text)


def lifted_divisor(size: Size) -> Lifted:
    """A traced divisor, written as its size expression whether it was 4096 or 4096.0.

    ``div`` is true division whatever the divisor's Python type, and a Python scalar takes no part in
    type promotion against a tensor, so both compute the same; and the key grammar that rebuilds a key
    (``passes/rebuild.py``, also the runtime's fallback) reads sizes as integer expressions only.
    """
    return Lifted(size.text)


class Lifted:
    """An argument already written over symbols: the canon renders its text as is."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text
