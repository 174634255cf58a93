"""Helpers shared by the backend tests: small models, region rows of a compile, entries that serve a kernel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import llm_inductor
from llm_inductor.cache.entry import Entry
from llm_inductor.compile import state as _state
from support.paths import BACKEND_KERNELS


def regions_of(fn: Any, *inputs: Any, training: bool = False, **options: Any) -> list[_state.RegionRow]:
    """Compile fn in discover mode, run it once, and return every region row of every graph."""
    _state.reset()
    torch._dynamo.reset()
    compiled = torch.compile(fn, backend=llm_inductor.backend(mode="discover", min_region_us=0, **options))
    if training:
        compiled(*inputs).sum().backward()
    else:
        with torch.no_grad():
            compiled(*inputs)
    return [row for r in _state.reports for row in r.regions]


def entry_for(region_py: str | Path, kernel: str) -> Entry:
    """An entry serving kernel (a file name under kernels_backend/) for the region file's key."""
    region_py = Path(region_py)
    meta = json.loads(region_py.with_suffix(".json").read_text())
    return Entry(
        key=meta["key"],
        key_fields=meta["key_fields"],
        kernel_source=(BACKEND_KERNELS / kernel).read_text(),
        region_source=region_py.read_text(),
        region_meta=meta,
        provenance={"provider": "test"},
    )


def rmsnorm_entry(tmp_path: Path, dim: int = 33, rows: int = 5) -> tuple[torch.nn.Module, torch.Tensor, Entry]:
    """A small RMSNorm, its input and an entry serving tests/data/kernels_backend/rmsnorm.py for its region."""
    torch.manual_seed(0)
    model, x = RMSNorm(dim), torch.randn(rows, dim)
    with _state.overridden(export_dir=str(tmp_path / "regions")):
        (row,) = regions_of(model, x)
    assert row.ops == ["pow", "mean", "add", "rsqrt", "mul", "mul"]
    return model, x, entry_for(row.region_path, "rmsnorm.py")


def serve(model: torch.nn.Module, x: torch.Tensor, **options: Any) -> torch.Tensor:
    """Compile model with backend="llm" (every region hot) and run it once without grad."""
    _state.reset()
    torch._dynamo.reset()
    with torch.no_grad():
        return torch.compile(model, backend=llm_inductor.backend(min_region_us=0, **options))(x)


class RMSNorm(torch.nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + self.eps))


class Block(torch.nn.Module):
    def __init__(self, d: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        self.qkv, self.proj = torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, d)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(d, 4 * d), torch.nn.GELU(), torch.nn.Linear(4 * d, d))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.norm2(x))


class UnrolledGRU(torch.nn.Module):
    """nn.GRU modules graph-break in Dynamo; a GRUCell unrolled over time compiles whole."""

    def __init__(self, d_in: int = 8, d_h: int = 16) -> None:
        super().__init__()
        self.cell = torch.nn.GRUCell(d_in, d_h)
        self.d_h = d_h

    def forward(self, xs):
        h = xs.new_zeros(xs.shape[1], self.d_h)
        for x in xs.unbind(0):
            h = self.cell(x, h)
        return h
