"""FLOPs and bytes → roofline time → hot regions.

Bytes count each region input read once and each output written once (the floor a
fused kernel could reach); FLOPs count 2·M·N·K for matmuls, the output elements for
pointwise ops and the input elements for reductions. Symbolic sizes are priced at
their hints (the sizes seen).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.fx as fx

from llm_inductor.passes.partition import Region, classify, op_name


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    bandwidth: float  # bytes/s, measured copy bandwidth (read + write)
    flops: float  # FLOP/s for the dtype class that dominates (bf16 matmul)
    flops_fp32: float  # FLOP/s for fp32 pointwise work
    sm_count: int = 0
    capability: str = ""


# Ceilings measured on the H200 (../shared/FIELD.md, 2026-11-25: 1 GiB copy, 8192³ bf16 matmul with L2 flush).
H200 = DeviceSpec("NVIDIA H200", 4.25e12, 679e12, 60e12, 132, "sm90")
CPU = DeviceSpec("cpu", 50e9, 1e12, 0.5e12)


def device_spec(device: torch.device | str) -> DeviceSpec:
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return CPU
    props = torch.cuda.get_device_properties(device)
    cap = f"sm{props.major}{props.minor}"
    if "H200" in props.name:
        return H200
    # Unknown GPU: scale the H200's ceilings by SM count, a lead until measured.
    scale = props.multi_processor_count / H200.sm_count
    return DeviceSpec(
        props.name,
        H200.bandwidth * scale,
        H200.flops * scale,
        H200.flops_fp32 * scale,
        props.multi_processor_count,
        cap,
    )


def hint(x: object) -> int:
    if isinstance(x, torch.SymInt):
        node = x.node
        try:
            return int(node.hint) if node.hint is not None else int(node.shape_env.size_hint(node.expr))
        except Exception:
            return 64  # unbacked: price at a modest size rather than fail
    return int(x)  # type: ignore[arg-type]


def numel(t: torch.Tensor) -> int:
    return math.prod(hint(s) for s in t.shape)


def tensor_bytes(t: torch.Tensor) -> int:
    return numel(t) * t.element_size()


def node_flops(n: fx.Node) -> float:
    val = n.meta.get("val")
    name = op_name(n)
    kind = classify(n)
    if kind == "anchor":
        if name in ("mm", "addmm", "bmm", "baddbmm"):
            a = n.args[1] if name in ("addmm", "baddbmm") else n.args[0]
            k = hint(a.meta["val"].shape[-1])
            return 2.0 * numel(val) * k
        if name == "convolution":
            w = n.args[1].meta["val"]  # (C_out, C_in / groups, *kernel)
            return 2.0 * numel(val) * numel(w) / max(hint(w.shape[0]), 1)
        if name.startswith("_scaled_dot_product"):
            q, k = n.args[0].meta["val"], n.args[1].meta["val"]
            return 4.0 * numel(q) * hint(k.shape[-2])
    if kind == "reduction":
        src = n.args[0].meta.get("val") if isinstance(n.args[0], fx.Node) else None
        return float(numel(src)) if isinstance(src, torch.Tensor) else 0.0
    if kind in ("pointwise", "index") and isinstance(val, torch.Tensor):
        return float(numel(val))
    return 0.0


@dataclass(frozen=True)
class RegionCost:
    flops: float
    bytes: float
    seconds: float  # roofline floor on the device
    dtype_is_low: bool

    @property
    def us(self) -> float:
        return self.seconds * 1e6


def region_cost(region: Region, spec: DeviceSpec) -> RegionCost:
    flops = sum(node_flops(n) for n in region.nodes if n.target is not operator.getitem)
    moved = sum(tensor_bytes(n.meta["val"]) for n in (*region.inputs, *region.outputs))
    low = any(n.meta["val"].dtype in (torch.float16, torch.bfloat16) for n in region.inputs)
    rate = spec.flops if (region.anchor and low) else spec.flops_fp32
    seconds = max(moved / spec.bandwidth, flops / rate)
    return RegionCost(flops, float(moved), seconds, low)


def rank(regions: Iterable[Region], spec: DeviceSpec, hot_threshold: float, min_us: float):
    """[(region, cost, share, hot)], hottest first."""
    priced = [(r, region_cost(r, spec)) for r in regions]
    total = sum(c.seconds for _, c in priced) or 1.0
    rows = [(r, c, c.seconds / total, c.seconds / total >= hot_threshold and c.us >= min_us) for r, c in priced]
    rows.sort(key=lambda row: -row[1].seconds)
    return rows
