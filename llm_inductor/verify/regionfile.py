"""Loading a region file (docs/contracts.md, "Region file") and its output specs at any size.

The region file is ours (or the user's, handed to ``llm-inductor verify``), never
the candidate's: the parent imports it to compute references. Its sidecar gives
the output specs the graph downstream depends on; a region without a sidecar is
traced under ``FakeTensorMode`` instead. Every problem with the region itself is
a ``UsageError`` (exit 2), never a rejection of the candidate.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

import torch

from llm_inductor._errors import UsageError
from llm_inductor.passes.symexpr import evaluate


@dataclass(frozen=True)
class TensorMeta:
    dtype: torch.dtype
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def line(self) -> str:
        return f"{str(self.dtype).replace('torch.', '')}{list(self.shape)} stride={self.stride}"


def dtype_from_name(name: str) -> torch.dtype:
    dt = getattr(torch, name.replace("torch.", ""), None)
    if not isinstance(dt, torch.dtype):
        raise UsageError(f"unknown dtype {name!r} in the region sidecar")
    return dt


@dataclass
class Region:
    path: Path
    source: str
    module: ModuleType
    meta: dict[str, Any] | None  # the sidecar, when there is one
    symbols: dict[str, int] = field(default_factory=dict)  # symbolic dim → size seen

    @property
    def digest(self) -> str:
        """Identifies the region's code for memoized references (source plus sidecar)."""
        side = json.dumps(self.meta, sort_keys=True) if self.meta else ""
        return hashlib.sha256((self.source + side).encode()).hexdigest()

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def forward(self) -> Callable[..., Any]:
        return self.module.forward

    @property
    def ops(self) -> list[str]:
        if self.meta and "ops" in self.meta:
            return list(self.meta["ops"])
        return sorted({line.split("(")[0].split(".")[-2] for line in self.source.splitlines() if "torch.ops." in line})

    def make_inputs(self, seed: int, sizes: dict[str, int] | None = None) -> tuple[torch.Tensor, ...]:
        kwargs: dict[str, Any] = {"seed": seed, "device": "cpu"}
        if sizes:
            kwargs["sizes"] = dict(sizes)
        out = self.module.make_inputs(**kwargs)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def output_specs(self, inputs: Sequence[torch.Tensor], sizes: dict[str, int] | None = None) -> list[TensorMeta]:
        """The outputs' dtype, shape and strides for these inputs (sidecar, else traced)."""
        if self.meta and self.meta.get("outputs"):
            env = {**self.symbols, **(sizes or {})}
            return [
                TensorMeta(
                    dtype_from_name(o["dtype"]),
                    tuple(int(evaluate(str(x), env)) for x in o["shape"]),
                    tuple(int(evaluate(str(x), env)) for x in o["stride"]),
                )
                for o in self.meta["outputs"]
            ]
        return trace_outputs(self.forward, inputs)


def trace_outputs(fn: Callable[..., Any], inputs: Sequence[torch.Tensor]) -> list[TensorMeta]:
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=False) as mode:
        fakes = [mode.from_tensor(t) for t in inputs]
        out = fn(*fakes)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    return [TensorMeta(o.dtype, tuple(int(s) for s in o.shape), tuple(int(s) for s in o.stride())) for o in outs]


def load_region(path: str | Path, check: bool = True) -> Region:
    """Import a region file in this process; raises UsageError naming what is wrong and how to fix it.

    ``check`` runs make_inputs and traces forward once (the worker skips it: the parent did it).
    """
    path = Path(path)
    source = read_source(path, "region file")
    try:
        compile(source, str(path), "exec")
    except SyntaxError as e:
        raise UsageError(f"region file {path} has a syntax error at line {e.lineno}: {e.msg}") from None
    name = f"llm_inductor_region_{hashlib.sha256(source.encode()).hexdigest()[:16]}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise UsageError(f"region file {path} fails to import: {type(e).__name__}: {e}") from None
    missing = [f for f in ("forward", "make_inputs") if not callable(getattr(module, f, None))]
    if missing:
        raise UsageError(
            f"region file {path} lacks {' and '.join(missing)}: a region defines forward(*inputs) and "
            "make_inputs(seed=0, device='cpu', sizes=None) (docs/contracts.md, 'Region file')"
        )
    meta = _sidecar(path)
    symbols = dict(getattr(module, "SYMBOLS", None) or (meta or {}).get("symbols") or {})
    region = Region(path, source, module, meta, {k: int(v) for k, v in symbols.items()})
    if check:
        _smoke_test(region)
    return region


def read_source(path: Path, what: str) -> str:
    """A Python source file's text; a missing or non-UTF-8 file is a UsageError naming it."""
    if not path.is_file():
        raise UsageError(f"{what} {path} does not exist")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{what} {path} is not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start}); "
                         "it must be a Python source file") from None


def _sidecar(path: Path) -> dict[str, Any] | None:
    side = path.with_suffix(".json")
    if not side.is_file():
        return None
    try:
        meta = json.loads(side.read_text())
    except json.JSONDecodeError as e:
        raise UsageError(f"sidecar {side} is not JSON ({e}); fix it or delete it to trace the region") from None
    if not isinstance(meta, dict):
        raise UsageError(f"sidecar {side} is not a JSON object; fix it or delete it to trace the region")
    return meta


def _smoke_test(region: Region) -> None:
    """make_inputs and forward must run, and agree with the sidecar, before any candidate is judged."""
    try:
        inputs = region.make_inputs(seed=0)
    except Exception as e:
        raise UsageError(f"{region.path}: make_inputs(seed=0) failed: {type(e).__name__}: {e}") from None
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise UsageError(f"{region.path}: make_inputs must return a tuple of tensors")
    try:
        traced = trace_outputs(region.forward, inputs)
    except Exception as e:
        tb = traceback.format_exc(limit=-1).strip().splitlines()[-1]
        raise UsageError(f"{region.path}: forward fails on make_inputs(): {type(e).__name__}: {e} ({tb})") from None
    if region.meta and region.meta.get("outputs"):
        expected = region.output_specs(inputs)
        if [(m.dtype, m.shape) for m in expected] != [(m.dtype, m.shape) for m in traced]:
            raise UsageError(
                f"{region.path}: the sidecar's outputs ({', '.join(m.line() for m in expected)}) disagree with "
                f"forward's ({', '.join(m.line() for m in traced)}); regenerate the sidecar or delete it"
            )
