"""Imports go one way: each module has a layer; no import (module- or function-level) goes up a layer or closes a cycle.

The modules are read, not imported: every ``.py`` under ``llm_inductor/``, ``passes/``
(``llm_inductor.passes``) and ``cache/`` (``llm_inductor.cache``). ``from P import n``
is an edge to ``P.n`` when that is a module, else to ``P``; relative imports are
resolved. Running ``P/__init__`` on the way to ``P.n`` is not counted: every import
does that, and a package's ``__init__`` is the package's own layer.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {
    "llm_inductor": ROOT / "llm_inductor",
    "llm_inductor.passes": ROOT / "passes",
    "llm_inductor.cache": ROOT / "cache",
}

# Lowest first. A module may import its own layer and the layers below it. The first matching
# pattern wins ("x.*" matches x's submodules, "x" itself only that module).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "base",
        (
            "llm_inductor._errors",
            "llm_inductor.config",
            "llm_inductor._version",
            "llm_inductor._paths",
            "llm_inductor._files",
        ),
    ),
    ("key", ("llm_inductor.cache.key",)),
    ("passes", ("llm_inductor.passes", "llm_inductor.passes.*")),
    ("verify", ("llm_inductor.verify", "llm_inductor.verify.*")),
    ("cache", ("llm_inductor.cache", "llm_inductor.cache.*")),
    ("compile", ("llm_inductor.compile", "llm_inductor.compile.*")),
    ("tune", ("llm_inductor.search", "llm_inductor.search.*")),
    ("cli", ("llm_inductor.cli", "llm_inductor._cli_regions", "llm_inductor._script", "llm_inductor.report")),
    ("package", ("llm_inductor",)),
]
# CLI modules that live in their stage's folder: matched before the folder's layer.
CLI_IN_FOLDERS = ("llm_inductor.cache.cli", "llm_inductor.search.cli", "llm_inductor.verify.cli")
# Inside the tune layer: the search uses providers only through the registry (search/register.py loads them).
CONCRETE_PROVIDERS = (
    "llm_inductor.search.llm.batch",
    "llm_inductor.search.llm.openai_provider",
    "llm_inductor.search.llm.replay",
)


def modules() -> dict[str, Path]:
    found = {}
    for pkg, folder in FOLDERS.items():
        for f in sorted(folder.rglob("*.py")):
            parts = list(f.relative_to(folder).with_suffix("").parts)
            if pkg == "llm_inductor" and parts[0] in ("passes", "cache"):
                continue  # an install's copy; the top-level folders are the source
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([pkg, *parts])] = f
    return found


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imports(mods: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module → {imported module: line of the first such import}, internal modules only."""
    edges: dict[str, dict[str, int]] = {}
    for name, f in mods.items():
        out: dict[str, int] = {}
        package = name if f.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                if not t.startswith("llm_inductor"):
                    continue
                t = _resolve(t, mods)
                if t and t != name:
                    out.setdefault(t, node.lineno)
        edges[name] = out
    return edges


def layer_of(name: str) -> int:
    if name in CLI_IN_FOLDERS:
        return [n for n, _ in LAYERS].index("cli")
    for i, (_, patterns) in enumerate(LAYERS):
        for p in patterns:
            if name == p or (p.endswith(".*") and name.startswith(p[:-1])):
                return i
    raise AssertionError(f"{name} is in no layer: add it to LAYERS in {__file__}")


MODS = modules()
EDGES = imports(MODS)


def _where(a: str, b: str) -> str:
    return f"{a} -> {b} ({MODS[a].relative_to(ROOT)}:{EDGES[a][b]})"


def test_every_module_has_a_layer():
    for name in MODS:
        layer_of(name)


def test_no_import_goes_up_a_layer():
    up = [
        f"{_where(a, b)}: {LAYERS[layer_of(a)][0]} imports {LAYERS[layer_of(b)][0]}"
        for a, targets in EDGES.items()
        for b in targets
        if layer_of(b) > layer_of(a)
    ]
    assert not up, "imports that go up a layer:\n  " + "\n  ".join(up)


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in EDGES[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(EDGES):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    cycles = _cycles()
    described = []
    for comp in cycles:
        inside = [_where(a, b) for a in comp for b in EDGES[a] if b in comp]
        described.append(f"{len(comp)} modules: " + "; ".join(inside))
    assert not cycles, "import cycles:\n  " + "\n  ".join(described)


@pytest.mark.parametrize(
    "user",
    [
        "llm_inductor.search.loop",
        "llm_inductor.search.tune",
        "llm_inductor.search.llm.providers",
        "llm_inductor.search.strategies",
    ],
)
def test_the_search_reaches_providers_only_through_the_registry(user):
    concrete = [_where(user, b) for b in EDGES[user] if b in CONCRETE_PROVIDERS]
    assert not concrete, "imports of a concrete provider (use providers.select_provider):\n  " + "\n  ".join(concrete)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    """The walk itself: an import inside a function, and a relative one, both count."""
    pkg = tmp_path / "llm_inductor"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("def f():\n    from llm_inductor import high\n")
    (pkg / "high.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from .. import low\nfrom . import b\n")
    (pkg / "sub" / "b.py").write_text("")
    monkeypatch.setitem(FOLDERS, "llm_inductor", pkg)
    monkeypatch.delitem(FOLDERS, "llm_inductor.passes")
    monkeypatch.delitem(FOLDERS, "llm_inductor.cache")
    mods = modules()
    edges = imports(mods)
    assert edges["llm_inductor.low"] == {"llm_inductor.high": 2}
    assert edges["llm_inductor.sub.a"] == {"llm_inductor.low": 1, "llm_inductor.sub.b": 2}


def test_only_passes_and_cache_join_the_package_from_a_checkout():
    """From a checkout, the top-level passes/ and cache/ are llm_inductor.passes and llm_inductor.cache;
    no other folder of the repository becomes part of the package."""
    code = (
        "import importlib, llm_inductor.cache.key, llm_inductor.passes.rebuild\n"
        "for name in ('llm_inductor.benchmarks', 'llm_inductor.tests', 'llm_inductor.llm_inductor'):\n"
        "    try:\n        importlib.import_module(name)\n    except ModuleNotFoundError:\n        continue\n"
        "    raise SystemExit(name + ' is importable')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
