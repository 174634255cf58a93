"""A region file imported in this process: the verifier's ground truth (docs/contracts.md, "Region file").

The region file is ours (or the user's, handed to ``llm-inductor verify``), never
the candidate's: the parent imports it to compute references. Its sidecar
(``passes/regionfile.py`` reads it) gives the output specs the graph downstream
depends on; a region without a sidecar is traced under ``FakeTensorMode`` instead.
Every problem with the region itself is a ``UsageError`` (exit 2), never a
rejection of the candidate.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from llm_inductor._errors import UsageError
from llm_inductor.passes import regionfile
from llm_inductor.passes.regionfile import RegionFile, Sidecar
from llm_inductor.passes.symexpr import evaluate


@dataclass(frozen=True)
class TensorMeta:
    dtype: torch.dtype
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def line(self) -> str:
        return f"{str(self.dtype).replace('torch.', '')}{list(self.shape)} stride={self.stride}"

    @property
    def storage_numel(self) -> int:
        """Elements of the smallest storage that holds this layout (0 for an empty tensor)."""
        return 1 + sum((n - 1) * st for n, st in zip(self.shape, self.stride)) if all(self.shape) else 0


def dtype_from_name(name: str) -> torch.dtype:
    dt = getattr(torch, name.replace("torch.", ""), None)
    if not isinstance(dt, torch.dtype):
        raise UsageError(f"unknown dtype {name!r} in the region sidecar")
    return dt


@dataclass
class LoadedRegion:
    file: RegionFile
    module: ModuleType
    symbols: dict[str, int] = field(default_factory=dict)  # symbolic dim → size seen

    @property
    def path(self) -> Path:
        return self.file.path

    @property
    def source(self) -> str:
        return self.file.source

    @property
    def sidecar(self) -> Sidecar:
        return self.file.sidecar  # empty when the region came without one

    @property
    def digest(self) -> str:
        """Identifies the region's code for memoized references (source plus sidecar)."""
        side = self.sidecar.to_dict()
        return hashlib.sha256((self.source + (json.dumps(side, sort_keys=True) if side else "")).encode()).hexdigest()

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def forward(self) -> Callable[..., Any]:
        return self.module.forward

    @property
    def ops(self) -> list[str]:
        return self.file.ops

    def make_inputs(self, seed: int, sizes: dict[str, int] | None = None) -> tuple[torch.Tensor, ...]:
        kwargs: dict[str, Any] = {"seed": seed, "device": "cpu"}
        if sizes:
            kwargs["sizes"] = dict(sizes)
        out = self.module.make_inputs(**kwargs)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def output_specs(self, inputs: Sequence[torch.Tensor], sizes: dict[str, int] | None = None) -> list[TensorMeta]:
        """The outputs' dtype, shape and strides for these inputs (sidecar, else traced)."""
        if self.sidecar.outputs:
            return self.declared("outputs", sizes)
        return trace_outputs(self.forward, inputs)

    def declared(self, side: str, sizes: dict[str, int] | None = None) -> list[TensorMeta]:
        """The sidecar's ``inputs`` or ``outputs`` at these sizes (the region's own where not given)."""
        env = {**self.symbols, **(sizes or {})}
        return [
            TensorMeta(
                dtype_from_name(s.dtype),
                tuple(int(evaluate(x, env)) for x in s.shape),
                tuple(int(evaluate(x, env)) for x in s.stride),
            )
            for s in getattr(self.sidecar, side)
        ]


def trace_outputs(fn: Callable[..., Any], inputs: Sequence[torch.Tensor]) -> list[TensorMeta]:
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=False) as mode:
        fakes = [mode.from_tensor(t) for t in inputs]
        out = fn(*fakes)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    return [TensorMeta(o.dtype, tuple(int(s) for s in o.shape), tuple(int(s) for s in o.stride())) for o in outs]


def load_region(path: str | Path, check: bool = True) -> LoadedRegion:
    """Import a region file in this process; raises UsageError naming what is wrong and how to fix it.

    ``check`` runs make_inputs and traces forward once (the worker skips it: the parent did it).
    """
    path = Path(path)
    file = regionfile.load(path, sidecar_optional=True)
    source = file.source
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
    symbols = dict(getattr(module, "SYMBOLS", None) or file.sidecar.symbols)
    region = LoadedRegion(file, module, {k: int(v) for k, v in symbols.items()})
    if check:
        _smoke_test(region)
    return region


def _smoke_test(region: LoadedRegion) -> None:
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
    if region.sidecar.outputs:
        expected = region.output_specs(inputs)
        if [(m.dtype, m.shape) for m in expected] != [(m.dtype, m.shape) for m in traced]:
            raise UsageError(
                f"{region.path}: the sidecar's outputs ({', '.join(m.line() for m in expected)}) disagree with "
                f"forward's ({', '.join(m.line() for m in traced)}); regenerate the sidecar or delete it"
            )
