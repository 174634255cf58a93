"""Static policy: an allowlist walk over the candidate's AST, before anything runs.

Everything not named here is rejected, with a reason code naming what was found
(``policy:file``, ``policy:monkeypatch``, ...). A blocklist would let the next
trick through; an allowlist only lets through what a Triton wrapper needs:

* imports of torch, triton, triton.language (+ .extra for libdevice) and math;
* in the wrapper: allocation, views, reshapes, sizes, strides, dtypes, devices,
  ``triton.cdiv``/``next_power_of_2`` and kernel launches;
* in ``@triton.jit`` bodies: ``tl.*`` (minus inline assembly), other kernels in
  the file, and Triton tensor methods; never ``torch``;
* at module level: imports, function definitions and constants.

Paths under ``triton.language`` are judged by the object they resolve to, through
import aliases and assigned ones (``c = tl.core; c.inline_asm_elementwise``), not by
their spelling. Every callable is candidate code, heuristics and hooks included,
and nothing may carry state from one call to the next: defaults are immutable,
decorator arguments call only Triton's constructors (so no closure is built at
import), and only lists and dicts built in the current call may be mutated.

The dynamic guard (guard.py) backs this up at run time; either layer alone stops
the known cheats (tests/verify/test_verify_adversarial.py shows both).
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass

from llm_inductor.verify.allowlist import (
    ALLOWED_BUILTINS,
    ALLOWED_MODULES,
    ALLOWED_PREFIXES,
    BUILTIN_REASONS,
    DECORATORS,
    IMPORT_REASONS,
    IMPORT_TIME_BUILTINS,
    IMPORT_TIME_CALLS,
    MUTATING_METHODS,
    TORCH_ALLOWED,
    TORCH_CUDA_ALLOWED,
    TORCH_REASONS,
    TRITON_ALLOWED,
    WRAPPER_ATTRS,
    kernel_attrs,
    torch_dtypes,
    triton_path_verdict,
)

Dotted = tuple[str, ...]  # a module path, ("triton", "language", "core")


@dataclass(frozen=True)
class Violation:
    code: str  # "policy:<name>"
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message} [{self.code}]"


def check_source(source: str) -> list[Violation]:
    """Return the policy violations of a candidate's source; [] means admitted."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return [Violation("policy:syntax", e.lineno or 0, f"syntax error: {e.msg}")]
    return _Walker(tree).run()


class _Walker:
    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.out: list[Violation] = []
        self.modules: dict[str, str] = {}  # local name → module it is bound to ("tl" → "triton.language")
        self.defined = _bound_names(tree)
        self.module_names: set[str] = set()  # names bound at module level
        self.kernels: set[str] = set()
        self.globals_assigned: set[str] = set()  # module-level names bound by assignment
        self.aliases: dict[str, set[Dotted]] = {}  # local name → the module paths assignments bind it to
        self.scopes = _Scopes(tree)
        self.judged: set[int] = set()  # attribute nodes inside a chain already reported

    def bad(self, node: ast.AST, code: str, message: str) -> None:
        self.out.append(Violation(f"policy:{code}", getattr(node, "lineno", 0), message))

    def run(self) -> list[Violation]:
        for stmt in self.tree.body:
            self.module_stmt(stmt)
        self.aliases = self.assigned_aliases()
        for stmt in self.tree.body:
            if isinstance(stmt, ast.FunctionDef):
                self.function(stmt, kernel=stmt.name in self.kernels)
            elif isinstance(stmt, ast.Assign):
                self.host_expr(stmt.value)
        if not self.kernels:
            self.bad(self.tree, "no_kernel", "the candidate must define at least one @triton.jit kernel")
        if "forward" not in {s.name for s in self.tree.body if isinstance(s, ast.FunctionDef)}:
            self.bad(self.tree, "no_forward", "the candidate must define forward(*inputs) at module level")
        return sorted(self.out, key=lambda v: v.line)

    # ------------------------------------------------------------------ module level
    def module_stmt(self, s: ast.stmt) -> None:
        if isinstance(s, (ast.Import, ast.ImportFrom)):
            self.imports(s)
        elif isinstance(s, ast.FunctionDef):
            self.module_names.add(s.name)
            if any(self.decorator(d) == "jit" for d in s.decorator_list):
                self.kernels.add(s.name)
        elif isinstance(s, ast.Assign) and all(isinstance(t, ast.Name) for t in s.targets):
            for t in s.targets:
                assert isinstance(t, ast.Name)
                self.module_names.add(t.id)
                self.globals_assigned.add(t.id)
                if not _is_immutable(s.value, module_level=True):
                    self.bad(s, "global_state", f"module-level '{t.id}' is not a constant: no state across calls")
        elif isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and isinstance(s.value.value, str):
            pass  # docstring
        elif isinstance(s, ast.Assign) and any(isinstance(t, ast.Attribute) for t in s.targets):
            self.statement(s, kernel=False)  # reports monkeypatching with its own reason
        elif isinstance(s, ast.Try):
            self.bad(s, "try_except", "try/except is not allowed: a launch that fails must fail the candidate")
        elif isinstance(s, ast.ClassDef):
            self.bad(s, "class", "classes are not allowed: a candidate is kernels plus one wrapper")
        else:
            self.bad(
                s,
                "module_code",
                f"module-level {type(s).__name__} runs code at import; only imports, "
                "functions and constants may appear at module level",
            )

    def imports(self, s: ast.Import | ast.ImportFrom) -> None:
        if isinstance(s, ast.Import):
            for a in s.names:
                if not self.module_ok(s, a.name):
                    continue
                self.triton_path(s, tuple(a.name.split(".")))
                local = a.asname or a.name.split(".")[0]
                self.modules[local] = a.name if a.asname else a.name.split(".")[0]
                self.module_names.add(local)
            return
        mod = s.module or ""
        if s.level or not self.module_ok(s, mod):
            if s.level:
                self.bad(s, "import", "relative imports are not allowed")
            return
        for a in s.names:
            full = f"{mod}.{a.name}"
            local = a.asname or a.name
            self.module_names.add(local)
            if mod == "__future__":
                continue
            self.triton_path(s, tuple(full.split(".")))
            if mod == "triton" and a.name not in TRITON_ALLOWED:
                self.bad(s, "import", f"'from triton import {a.name}' is not allowed; use {sorted(TRITON_ALLOWED)}")
            elif mod == "torch" and a.name not in TORCH_ALLOWED and a.name not in torch_dtypes():
                self.bad(s, TORCH_REASONS.get(a.name, "torch_attr"), f"'from torch import {a.name}' is not allowed")
            self.modules[local] = full

    def module_ok(self, s: ast.stmt, name: str) -> bool:
        if name in ALLOWED_MODULES or any(name == p or name.startswith(p + ".") for p in ALLOWED_PREFIXES):
            return True
        root = name.split(".")[0]
        reason = IMPORT_REASONS.get(root, "import")
        if name.startswith("torch.utils.cpp_extension") or name.startswith("torch.cuda"):
            reason = "native_code" if "cpp_extension" in name else "stream"
        self.bad(s, reason, f"import of '{name}' is not allowed; allowed: torch, triton, triton.language, math")
        return False

    def decorator(self, d: ast.expr) -> str | None:
        target = d.func if isinstance(d, ast.Call) else d
        path = self.dotted(target)
        if path is None:
            return None
        if path[0] in self.modules:
            path = self.modules[path[0]].split(".") + path[1:]
        if len(path) == 2 and path[0] == "triton" and path[1] in DECORATORS:
            return path[1]
        return None

    # ------------------------------------------------------------------ functions
    def function(self, f: ast.FunctionDef, kernel: bool) -> None:
        for d in f.decorator_list:
            if self.decorator(d) is None:
                self.bad(d, "decorator", "only @triton.jit, @triton.autotune and @triton.heuristics are allowed")
            elif isinstance(d, ast.Call):
                for a in (*d.args, *(k.value for k in d.keywords)):
                    self.host_expr(a)
                    self.import_time(a)
        for default in (*f.args.defaults, *(x for x in f.args.kw_defaults if x is not None)):
            if not _is_immutable(default):
                self.bad(
                    default,
                    "global_state",
                    f"default argument of '{f.name}' is not an immutable constant: a default outlives the call",
                )
        if kernel and "forward" == f.name:
            self.bad(f, "no_forward", "forward must be the host wrapper, not a @triton.jit kernel")
        for s in f.body:
            self.statement(s, kernel)

    def statement(self, s: ast.stmt, kernel: bool) -> None:
        if isinstance(s, (ast.Global, ast.Nonlocal)):
            self.bad(s, "global_state", f"'{type(s).__name__.lower()}' is not allowed: no state across calls")
            return
        if isinstance(s, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            self.bad(s, "try_except", "try/except is not allowed: a launch that fails must fail the candidate")
            return
        if isinstance(s, (ast.Import, ast.ImportFrom)):
            self.bad(s, "import", "imports belong at module level")
            return
        if isinstance(s, (ast.ClassDef, ast.AsyncFunctionDef, ast.AsyncWith, ast.AsyncFor)):
            self.bad(s, "class" if isinstance(s, ast.ClassDef) else "thread", f"{type(s).__name__} is not allowed")
            return
        if isinstance(s, ast.FunctionDef):
            # A nested helper (the `def grid(meta)` idiom of the Triton tutorials) is rebuilt on
            # every call, so it holds no state; its body gets the same checks as its parent's.
            if s.decorator_list or any(
                not isinstance(d, ast.Constant) for d in s.args.defaults + s.args.kw_defaults if d
            ):
                self.bad(s, "module_code", "a nested function may not have decorators or non-constant defaults")
                return
            for inner in s.body:
                self.statement(inner, kernel)
            return
        if isinstance(s, ast.With):
            for item in s.items:
                (self.kernel_expr if kernel else self.host_expr)(item.context_expr)
                path = self.resolved(
                    item.context_expr.func if isinstance(item.context_expr, ast.Call) else item.context_expr
                )
                if kernel or path != ["torch", "cuda", "device"]:
                    self.bad(
                        s,
                        "stream" if path and "stream" in path[-1].lower() else "with",
                        "only 'with torch.cuda.device(...)' is allowed",
                    )
        for t in _targets(s):
            self.target(t, kernel)
        for node in ast.iter_child_nodes(s):
            if isinstance(node, ast.stmt):
                self.statement(node, kernel)
            elif isinstance(node, ast.expr):
                (self.kernel_expr if kernel else self.host_expr)(node)

    def target(self, t: ast.expr, kernel: bool) -> None:
        if isinstance(t, (ast.Tuple, ast.List)):
            for e in t.elts:
                self.target(e, kernel)
        elif isinstance(t, ast.Starred):
            self.target(t.value, kernel)
        elif isinstance(t, ast.Attribute):
            base = _root_name(t)
            if base in self.modules or base in self.module_names:
                self.bad(t, "monkeypatch", f"assignment to '{ast.unparse(t)}' changes a module or global object")
            else:
                self.bad(t, "setattr", f"assignment to attribute '{ast.unparse(t)}' is not allowed")
        elif isinstance(t, ast.Subscript):
            base = _root_name(t)
            if base in self.module_names:
                self.bad(t, "global_state", f"'{ast.unparse(t)}' writes into module-level state")
            elif not kernel and not self.fresh(t.value, t, containers=False):
                self.bad(
                    t,
                    "global_state",
                    f"'{ast.unparse(t)}' writes into an object this call did not create "
                    "(a parameter, or an alias of one): it may outlive the call",
                )

    # ------------------------------------------------------------------ expressions
    def common(self, node: ast.AST) -> bool:
        """Checks shared by host and kernel code; False when the node was rejected."""
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.Attribute) and node.attr.startswith("__"):
            self.bad(node, "reflection", f"dunder attribute '{node.attr}' is not allowed")
            return False
        if isinstance(node, ast.Attribute) and not self.triton_attr_ok(node):
            return False
        if isinstance(node, ast.Lambda):
            for default in (*node.args.defaults, *(x for x in node.args.kw_defaults if x is not None)):
                if not _is_immutable(default):
                    self.bad(
                        default,
                        "global_state",
                        "a lambda's default argument is not an immutable constant: "
                        "it outlives the call (a lambda given to triton.heuristics or a pre_hook runs on "
                        "every launch)",
                    )
        if isinstance(node, (ast.Await, ast.Yield, ast.YieldFrom)):
            self.bad(node, "module_code", f"{type(node).__name__} is not allowed")
            return False
        return True

    def name(self, node: ast.Name) -> bool:
        n = node.id
        if n in BUILTIN_REASONS and n not in self.defined:
            self.bad(node, BUILTIN_REASONS[n], f"builtin '{n}' is not allowed")
            return False
        if n.startswith("__") and n.endswith("__"):
            self.bad(node, "reflection", f"'{n}' is not allowed")
            return False
        if n in self.defined or n in ALLOWED_BUILTINS or not hasattr(builtins, n):
            return True
        self.bad(node, BUILTIN_REASONS.get(n, "builtin"), f"builtin '{n}' is not allowed")
        return False

    def host_expr(self, e: ast.expr) -> None:
        for node in ast.walk(e):
            if not self.common(node):
                continue
            if isinstance(node, ast.Attribute):
                self.host_attr(node)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                base = _root_name(node.func)
                if node.func.attr in MUTATING_METHODS and base in self.globals_assigned:
                    self.bad(node, "global_state", f"'{ast.unparse(node.func)}' mutates module-level state")
                elif node.func.attr in MUTATING_METHODS and not self.fresh(node.func.value, node, containers=True):
                    self.bad(
                        node,
                        "global_state",
                        f"'{ast.unparse(node.func)}' mutates an object this call did not "
                        "build (a parameter, a closure's or an alias): only lists and dicts made in the call "
                        "may be mutated",
                    )

    def host_attr(self, node: ast.Attribute) -> None:
        path = self.resolved(node)
        if path and path[0] in ("torch", "triton", "math"):
            self.module_attr(node, path)
        elif not (isinstance(node.value, ast.Name) and node.value.id in self.modules):
            if node.attr not in WRAPPER_ATTRS:
                self.bad(
                    node,
                    "attr",
                    f"'.{node.attr}' is not an allocation, view or size method; "
                    "do the arithmetic in a @triton.jit kernel",
                )

    def module_attr(self, node: ast.Attribute, path: list[str]) -> None:
        """A dotted path through an allowed module, e.g. torch.empty, torch.cuda.device, tl.load."""
        root, rest = path[0], path[1:]
        if not rest:
            return
        if root == "math":
            return
        if root == "triton":
            if rest[0] == "language":
                return  # judged by what it resolves to, in common()
            if rest[0] not in TRITON_ALLOWED or len(rest) > 1:
                self.bad(
                    node,
                    "monkeypatch" if rest[0] in ("testing", "runtime") else "triton_attr",
                    f"'{'.'.join(path)}' is not allowed; use {sorted(TRITON_ALLOWED)}",
                )
            return
        if rest[0] == "cuda":
            if len(rest) == 1:
                return  # the prefix of torch.cuda.<x>, judged at the outer Attribute node
            if rest[1] not in TORCH_CUDA_ALLOWED:
                self.bad(node, TORCH_REASONS.get(rest[1], "torch_attr"), f"'{'.'.join(path)}' is not allowed")
            return
        if (rest[0] in TORCH_ALLOWED or rest[0] in torch_dtypes()) and len(rest) == 1:
            return
        if rest[0] in TORCH_ALLOWED or rest[0] in torch_dtypes():  # torch.Tensor.exp(x) and the like
            self.bad(node, "torch_attr", f"'{'.'.join(path)}' is not allowed in a wrapper")
            return
        if isinstance(node.value, ast.Name):  # report once, at the first attribute below torch
            self.bad(
                node,
                TORCH_REASONS.get(rest[0], "torch_attr"),
                f"'torch.{rest[0]}' is not allowed in a wrapper: allocate, view and launch only; "
                "do the arithmetic in a @triton.jit kernel",
            )

    def kernel_expr(self, e: ast.expr) -> None:
        for node in ast.walk(e):
            if not self.common(node):
                continue
            if isinstance(node, ast.Name) and self.modules.get(node.id, "").startswith("torch"):
                self.bad(node, "torch_in_kernel", "torch is not available inside @triton.jit kernels")
            elif isinstance(node, ast.Attribute):
                path = self.resolved(node)
                if path and path[0] == "triton":
                    self.module_attr(node, path)
                elif path and path[0] == "math":
                    pass
                elif not (isinstance(node.value, ast.Name) and node.value.id in self.modules):
                    if node.attr not in kernel_attrs():
                        self.bad(node, "attr", f"'.{node.attr}' is not a Triton tensor method or property")

    # ------------------------------------------------------------------ helpers
    def dotted(self, node: ast.expr) -> list[str] | None:
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name):
            return [node.id, *reversed(parts)]
        return None

    def import_time(self, e: ast.expr) -> None:
        """A decorator argument, evaluated once at import: it may build values, never run the candidate's code."""
        todo = [e]
        while todo:
            node = todo.pop()
            if isinstance(node, ast.Lambda):
                continue  # its body runs per launch, as host code; its defaults are judged in common()
            if isinstance(node, ast.NamedExpr):
                self.bad(node, "global_state", "':=' in a decorator binds a module-level name: no state across calls")
            elif isinstance(node, ast.Call) and not self.import_time_call(node.func):
                self.bad(
                    node,
                    "module_code",
                    f"'{ast.unparse(node.func)}(...)' runs at import, in a decorator; only "
                    f"{sorted(IMPORT_TIME_CALLS)} and plain builtins may: a call could return closures over "
                    "state that outlives every call",
                )
            todo.extend(ast.iter_child_nodes(node))

    def import_time_call(self, func: ast.expr) -> bool:
        if isinstance(func, ast.Name) and func.id not in self.defined:
            return func.id in IMPORT_TIME_BUILTINS
        path = self.resolved(func)
        return path is not None and ".".join(path) in IMPORT_TIME_CALLS

    def fresh(self, receiver: ast.expr, at: ast.AST, containers: bool) -> bool:
        """Is the object a mutation goes to one that the enclosing call built? (Then it dies with the call.)"""
        if not isinstance(receiver, ast.Name):
            return False
        binds = self.scopes.bindings(receiver.id, at)
        if not binds:  # a parameter, or bound at module level
            return False
        return all(v is not None and _builds_new(v, containers, self.defined) for v in binds)

    def triton_attr_ok(self, node: ast.Attribute) -> bool:
        """False when a path under triton.language reaches a forbidden object, however it is spelled."""
        if id(node) in self.judged:
            return False
        for path in self.expansions(node):
            if self.triton_path(node, path):
                inner: ast.expr = node.value
                while isinstance(inner, ast.Attribute):
                    self.judged.add(id(inner))
                    inner = inner.value
                return False
        return True

    def triton_path(self, node: ast.AST, path: Dotted) -> bool:
        if path[:2] != ("triton", "language") or len(path) < 3:
            return False
        verdict = triton_path_verdict(path)
        if verdict:
            self.bad(node, *verdict)
        return verdict is not None

    def expansions(self, node: ast.expr) -> list[Dotted]:
        """Every module path a dotted expression can name, through import aliases and assigned aliases."""
        path = self.dotted(node)
        if path is None:
            return []
        root, rest = path[0], tuple(path[1:])
        out = [tuple(self.modules[root].split(".")) + rest] if root in self.modules else []
        return out + [base + rest for base in self.aliases.get(root, ())]

    def assigned_aliases(self) -> dict[str, set[Dotted]]:
        """Names bound by assignment (or a default) to a dotted path through a module: ``c = tl.core``."""
        pairs: list[tuple[str, ast.expr]] = []
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    pairs += _name_pairs(t, node.value)
            elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
                pairs += _name_pairs(node.target, node.value)
            elif isinstance(node, ast.arguments):
                positional = [*node.posonlyargs, *node.args]
                for a, d in zip(positional[len(positional) - len(node.defaults) :], node.defaults):
                    pairs.append((a.arg, d))
                pairs += [(a.arg, d) for a, d in zip(node.kwonlyargs, node.kw_defaults) if d is not None]
        self.aliases = {}
        changed = True
        while changed:  # aliases of aliases (expansions reads self.aliases), to a fixed point
            changed = False
            for name, value in pairs:
                for path in self.expansions(value):
                    if len(path) <= 8 and path not in self.aliases.setdefault(name, set()):  # `c = c.x` grows
                        self.aliases[name].add(path)
                        changed = True
        return self.aliases

    def resolved(self, node: ast.expr) -> list[str] | None:
        """The dotted path with the local module alias expanded (tl.load → triton.language.load)."""
        path = self.dotted(node)
        if path is None or path[0] not in self.modules:
            return None
        return self.modules[path[0]].split(".") + path[1:]


def _targets(s: ast.stmt) -> list[ast.expr]:
    if isinstance(s, ast.Assign):
        return list(s.targets)
    if isinstance(s, (ast.AugAssign, ast.AnnAssign)):
        return [s.target]
    if isinstance(s, ast.Delete):
        return list(s.targets)
    return []


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _bound_names(tree: ast.Module) -> set[str]:
    """Every name the file binds anywhere (imports, defs, parameters, targets)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
    return names


class _Scopes:
    """Which function encloses each node, and what every function binds each of its names to."""

    def __init__(self, tree: ast.Module) -> None:
        self.parent: dict[int, ast.AST] = {}  # node → innermost enclosing function (absent at module level)
        self.binds: dict[int, dict[str, list[ast.expr | None]]] = {}  # function → name → bound values (None: other)
        self.outer: dict[int, ast.AST | None] = {}
        self.seen: set[int] = set()  # target names already bound with their value
        self._visit(tree, None)

    def _visit(self, node: ast.AST, fn: ast.AST | None) -> None:
        for child in ast.iter_child_nodes(node):
            if fn is not None:
                self.parent[id(child)] = fn
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                if fn is not None and not isinstance(child, ast.Lambda):
                    self.binds[id(fn)].setdefault(child.name, []).append(None)
                self.outer[id(child)] = fn
                names: dict[str, list[ast.expr | None]] = {}
                for a in (
                    *child.args.posonlyargs,
                    *child.args.args,
                    *child.args.kwonlyargs,
                    child.args.vararg,
                    child.args.kwarg,
                ):
                    if a is not None:
                        names[a.arg] = [None]  # a parameter: whatever the caller passes, Triton's own lists too
                self.binds[id(child)] = names
                self._visit(child, child)
                continue
            if fn is not None:
                self._bind(child, self.binds[id(fn)])
            self._visit(child, fn)

    def _bind(self, node: ast.AST, names: dict[str, list[ast.expr | None]]) -> None:
        target = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target = node.targets[0]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            target = node.target
        if target is not None:
            names.setdefault(target.id, []).append(node.value)
            self.seen.add(id(target))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and id(node) not in self.seen:
            names.setdefault(node.id, []).append(None)  # unpacking, for, with, :=, comprehensions

    def bindings(self, name: str, at: ast.AST) -> list[ast.expr | None]:
        """What the function that ``name`` resolves to (from ``at``) binds it to; [] at module level."""
        fn = self.parent.get(id(at))
        while fn is not None:
            names = self.binds[id(fn)]
            if name in names:
                return names[name]
            fn = self.outer.get(id(fn))
        return []


def _builds_new(value: ast.expr, containers: bool, defined: set[str]) -> bool:
    """Does evaluating ``value`` make a new object (not hand back one that exists)? ``containers``: a list/dict/set."""
    if isinstance(value, (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)):
        return True
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id not in defined:
        if value.func.id in ("list", "dict", "set"):
            return True
        if value.func.id in ("min", "max"):
            return False  # hands back one of its arguments
    return not containers and isinstance(value, (ast.Call, ast.BinOp, ast.Constant))


def _name_pairs(target: ast.expr, value: ast.expr) -> list[tuple[str, ast.expr]]:
    if isinstance(target, ast.Name):
        return [(target.id, value)]
    if (
        isinstance(target, (ast.Tuple, ast.List))
        and isinstance(value, (ast.Tuple, ast.List))
        and len(target.elts) == len(value.elts)
    ):
        return [p for t, v in zip(target.elts, value.elts) for p in _name_pairs(t, v)]
    return []


def _is_immutable(e: ast.expr, module_level: bool = False) -> bool:
    """A value that cannot carry state: literals, tuples of them, dtype-like attributes, tl.constexpr(...).

    ``module_level``: also triton.Config(...) and a list of them (an autotune config list), which a
    module-level constant may be; as a default argument a list is state that outlives a call.
    """

    def ok(x: ast.expr) -> bool:
        return _is_immutable(x, module_level)

    if isinstance(e, ast.Constant):
        return True
    if isinstance(e, ast.Tuple):
        return all(ok(x) for x in e.elts)
    if isinstance(e, (ast.UnaryOp, ast.BinOp)):
        return all(ok(x) for x in ast.iter_child_nodes(e) if isinstance(x, ast.expr))
    if isinstance(e, ast.Attribute):
        return True  # e.g. torch.float32, tl.float32 (judged by the attribute rules)
    if isinstance(e, ast.Call) and isinstance(e.func, ast.Attribute) and e.func.attr == "constexpr":
        return not e.keywords and all(ok(x) for x in e.args)
    if module_level and isinstance(e, ast.Call) and isinstance(e.func, ast.Attribute) and e.func.attr == "Config":
        return all(ok(x) or isinstance(x, ast.Dict) for x in (*e.args, *(k.value for k in e.keywords)))
    if module_level and isinstance(e, ast.List):
        return bool(e.elts) and all(
            isinstance(x, ast.Call) and isinstance(x.func, ast.Attribute) and x.func.attr == "Config" for x in e.elts
        )
    return False
