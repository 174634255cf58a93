"""Symbolic sizes: canonical names for sympy expressions, and a safe evaluator for them.

Keys and region files name symbolic dims s0, s1, ... in order of first appearance
in the canonical inputs, never by the names Dynamo happened to give them.
Expressions stored in sidecars are evaluated with ``evaluate`` (arithmetic only,
through ``ast``), never with ``eval``: a sidecar is data.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Mapping
from typing import Any

import sympy
import torch

from llm_inductor._errors import RegionBypass

# Functions Inductor's sympy printer may emit, with integer semantics.
FUNCTIONS: dict[str, Any] = {
    "FloorDiv": lambda a, b: a // b,
    "CeilDiv": lambda a, b: -(-a // b),
    "Mod": lambda a, b: a % b,
    "PythonMod": lambda a, b: a % b,
    "Max": lambda *a: max(a),
    "Min": lambda *a: min(a),
}
_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


def to_sympy(x: Any) -> sympy.Expr | int | None:
    if isinstance(x, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        return x.node.expr
    if isinstance(x, (int, sympy.Expr)):
        return x
    return None


class SymbolNamer:
    """Maps Dynamo's symbols to s0, s1, ... in order of first appearance."""

    def __init__(self) -> None:
        self.names: dict[sympy.Symbol, sympy.Symbol] = {}
        self.hints: dict[str, int] = {}

    def preset(self, symbol: sympy.Symbol, canonical: str, hint: int) -> None:
        """Name ``symbol`` ``canonical`` up front (a graph rebuilt from a key knows its names)."""
        self.names[symbol] = sympy.Symbol(canonical, integer=True, positive=True)
        self.hints[canonical] = hint

    def observe(self, x: Any) -> None:
        expr = to_sympy(x)
        if isinstance(expr, sympy.Expr):
            for sym in sorted(expr.free_symbols, key=str):
                if sym not in self.names:
                    canon = sympy.Symbol(f"s{len(self.names)}", integer=True, positive=True)
                    self.names[sym] = canon
                    self.hints[str(canon)] = _hint_of(x, sym)

    def render(self, x: Any) -> str:
        expr = to_sympy(x)
        if expr is None:
            raise RegionBypass(f"not a size expression: {x!r}")
        if isinstance(expr, int):
            return str(expr)
        if expr.is_Integer:
            return str(int(expr))
        unknown = expr.free_symbols - set(self.names)
        if unknown:
            raise RegionBypass(f"size {expr} uses symbols {sorted(map(str, unknown))} not bound to a region input")
        text = str(expr.xreplace(self.names))
        check_renderable(text)
        return text


def _hint_of(x: Any, sym: sympy.Symbol) -> int:
    if isinstance(x, torch.SymInt):
        env = x.node.shape_env
        # torch 2.13 renamed var_to_val to backed_var_to_val (the old name warns); 2.11 has only the old.
        name = "backed_var_to_val" if hasattr(env, "backed_var_to_val") else "var_to_val"
        hint = getattr(env, name, {}).get(sym) if env is not None else None
        if hint is not None:
            return int(hint)
    return 0


def check_renderable(text: str) -> None:
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise RegionBypass(f"size expression {text!r} is not Python: {e}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS):
            raise RegionBypass(f"size expression {text!r} calls an unsupported function")


def evaluate(text: str, env: Mapping[str, Any]) -> Any:
    """Evaluate a stored size expression; values in env may be ints or SymInts."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name) and node.id in env:
            return env[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS:
            return FUNCTIONS[node.func.id](*(ev(a) for a in node.args))
        raise ValueError(f"unsupported size expression {text!r}")

    return ev(ast.parse(text, mode="eval"))
