"""Input draws: which inputs each check uses, built in the parent and handed to the worker as a file.

A ``Draw`` is data (seed, distribution, sizes). The parent builds its inputs once
(``build_inputs``: the region's ``make_inputs`` on the CPU, then the draw's
transform) and writes them with ``save_inputs`` into the worker's own scratch
directory; the worker maps them (``load_inputs``) and never learns the seed, so
neither a candidate nor the feedback the LLM gets (``Draw.label`` names no seed)
can tie a draw's values to a seed. The worker ships its inputs back after the
last call and the parent compares them with its own copy, so a worker that
altered them is caught too.

Transforms act on each input's whole storage and keep its strides and storage
offset, because strides are part of the region's contract.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

# Base draws: different seeds and value distributions. "x100"/"x0.01" move values
# away from the unit scale where constants like eps hide bugs; "positive" feeds
# log/sqrt-like ops; "mixed" spans six decades per element (catches lower
# precision in accumulators); "nan_inf" injects NaN, +Inf and -Inf.
BASE_DISTS = ("normal", "x100", "x0.01", "positive", "mixed", "nan_inf")


@dataclass(frozen=True)
class Draw:
    name: str
    seed: int
    dist: str = "normal"
    sizes: tuple[tuple[str, int], ...] = ()
    positive: bool = False  # fold every float input to |x| (the region's domain needs it)

    @property
    def size_map(self) -> dict[str, int]:
        return dict(self.sizes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seed": self.seed,
            "dist": self.dist,
            "sizes": dict(self.sizes),
            "positive": self.positive,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Draw:
        return cls(d["name"], int(d["seed"]), d["dist"], tuple(sorted(d["sizes"].items())), bool(d["positive"]))

    def label(self) -> str:
        """How messages (and the LLM's feedback) name the draw: never by its seed, which stays secret."""
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes)
        return f"draw '{self.name}'" + (f" ({sizes})" if sizes else "")


def fresh_seed() -> int:
    """Unpredictable, never 0 (seed 0 is what a cheat would have seen)."""
    return 1 + secrets.randbelow(2**31 - 2)


@dataclass
class Plan:
    base: list[Draw] = field(default_factory=list)
    sizes: list[Draw] = field(default_factory=list)


def plan_draws(symbols: dict[str, int], positive: bool, has_float_inputs: bool) -> Plan:
    plan = Plan()
    for dist in BASE_DISTS:
        if dist == "nan_inf" and not has_float_inputs:
            continue
        plan.base.append(Draw(dist, fresh_seed(), dist, (), positive))
    for sym, hint in sorted(symbols.items()):
        for size in extra_sizes(hint):
            sizes = tuple(sorted({**symbols, sym: size}.items()))
            plan.sizes.append(Draw(f"{sym}={size}", fresh_seed(), "normal", sizes, positive))
    return plan


def extra_sizes(hint: int) -> list[int]:
    """1, an odd size below the hint and one above (never powers of two): kernels that
    fit one shape, assume a full block, or index past a row's end show up here."""
    out = [1]
    for cand in (max(3, hint // 2) | 1, (hint + hint // 2) | 1):
        while cand & (cand - 1) == 0 or cand == hint or cand in out:
            cand += 2
        out.append(cand)
    return out


def build_inputs(make_inputs: Callable[..., Sequence[torch.Tensor]], draw: Draw, device: str) -> list[torch.Tensor]:
    """make_inputs(seed, sizes) on the CPU, moved to device, then the draw's transform there, keeping strides.

    The transform runs on the device with a generator seeded from the draw (a 4096x128256 logits
    draw is GPU work); the result is the same bits every time on the same device.
    """
    kwargs: dict[str, Any] = {"seed": draw.seed, "device": "cpu"}
    if draw.sizes:
        kwargs["sizes"] = draw.size_map
    raw = make_inputs(**kwargs)
    raw = list(raw) if isinstance(raw, (tuple, list)) else [raw]
    g = torch.Generator(device=device).manual_seed(draw.seed ^ 0x5EED)
    out = []
    for t in raw:
        whole = _storage_view(t)
        base = _transformed(whole.to(device), draw, g) if t.dtype.is_floating_point else whole.to(device, copy=True)
        out.append(base.as_strided(t.shape, t.stride(), t.storage_offset()))
    return out


def _storage_view(t: torch.Tensor) -> torch.Tensor:
    """A 1-D view of t's whole storage (so the view's strides and offset stay meaningful)."""
    n = t.untyped_storage().nbytes() // t.element_size()
    return torch.empty(0, dtype=t.dtype, device=t.device).set_(t.untyped_storage(), 0, (n,), (1,))


CHUNK = 1 << 24  # elements transformed at once: the float32 work of a 2 G-element logits draw stays 64 MB


def _transformed(x: torch.Tensor, draw: Draw, g: torch.Generator) -> torch.Tensor:
    """The draw's transform of a 1-D storage, into a new tensor of x's dtype, a chunk at a time."""
    out = torch.empty_like(x)
    for lo in range(0, x.numel(), CHUNK):
        out[lo : lo + CHUNK] = _transform(x[lo : lo + CHUNK], draw, g)
    if draw.dist == "nan_inf" and out.numel():
        k = max(1, min(16, out.numel() // 128))
        pos = torch.randint(0, out.numel(), (k,), generator=g, device=out.device)
        specials = torch.tensor([float("nan"), float("inf"), float("-inf")], dtype=out.dtype, device=out.device)
        out[pos] = specials[torch.arange(k, device=out.device) % 3]
    return out


def _transform(x: torch.Tensor, draw: Draw, g: torch.Generator) -> torch.Tensor:
    work = x.to(torch.promote_types(x.dtype, torch.float32))  # one rounding back to x's dtype at the end
    if draw.dist == "x100":
        work = work * 100
    elif draw.dist == "x0.01":
        work = work * 0.01
    elif draw.dist == "positive":
        work = work.abs() + 1e-3
    elif draw.dist == "mixed":
        decades = torch.rand(work.shape, generator=g, dtype=work.dtype, device=work.device) * 6 - 3
        work = work * torch.pow(10.0, decades)
    if draw.positive:
        work = work.abs() + 1e-3
    if x.dtype != work.dtype:
        finfo = torch.finfo(x.dtype)
        work = torch.where(work.isfinite(), work.clamp(finfo.min, finfo.max), work)
    return work.to(x.dtype)


def save_inputs(inputs: Sequence[torch.Tensor], path: Path) -> None:
    """One draw's inputs (host tensors, strides and offsets kept) for a worker: written once, mapped there."""
    torch.save([t.detach() for t in inputs], path)


def load_inputs(path: str | Path) -> list[torch.Tensor]:
    """The parent's inputs file, memory-mapped: plain tensors only (weights_only), on the host."""
    loaded = torch.load(path, weights_only=True, mmap=True, map_location="cpu")
    if not isinstance(loaded, list) or not all(isinstance(t, torch.Tensor) for t in loaded):
        raise ValueError(f"{path} does not hold a list of tensors")
    return loaded


def to_device(inputs: Sequence[torch.Tensor], device: str) -> list[torch.Tensor]:
    """A copy of each input on device with its whole storage, so strides and offsets keep their meaning."""
    out = []
    for t in inputs:
        base = _storage_view(t).to(device, copy=True)
        out.append(base.as_strided(t.shape, t.stride(), t.storage_offset()))
    return out


def clone_inputs(inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Fresh storage for every input, same strides and offsets (each call gets its own copy)."""
    out = []
    for t in inputs:
        storage = t.untyped_storage().clone()
        out.append(
            torch.empty(0, dtype=t.dtype, device=t.device).set_(storage, t.storage_offset(), t.shape, t.stride())
        )
    return out
