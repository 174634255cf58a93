"""The target device as the prompt describes it, and a region's roofline floor on it.

The ceilings are ``passes.cost.device_spec``'s: measured on the H200 (FIELD.md), scaled
by SM count for other GPUs. The floor re-prices the sidecar's bytes and FLOPs on the
target device, because a region file may have been exported on another machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from llm_inductor.passes.cost import DeviceSpec, device_spec
from llm_inductor.passes.regionfile import Sidecar

_LOW = ("torch.float16", "torch.bfloat16")


@dataclass(frozen=True)
class GpuFacts:
    name: str
    sm_count: int
    capability: str
    bandwidth_tbs: float  # measured copy bandwidth, read + write
    peak_tflops: float  # dense bf16 matmul
    peak_tflops_fp32: float  # fp32 pointwise/reduction work
    is_gpu: bool

    def lines(self) -> list[str]:
        if not self.is_gpu:
            return [
                "target: CPU under the Triton interpreter (TRITON_INTERPRET=1); only correctness is judged here,",
                "  write the kernel for an NVIDIA H200 (132 SMs, sm90, ~4.25 TB/s, ~679 TFLOP/s bf16).",
            ]
        return [
            f"target: {self.name} ({self.sm_count} SMs, compute capability {self.capability})",
            f"  measured copy bandwidth {self.bandwidth_tbs:.2f} TB/s (bytes read + written),",
            f"  bf16 matmul peak {self.peak_tflops:.0f} TFLOP/s, fp32 non-matmul ~{self.peak_tflops_fp32:.0f} TFLOP/s",
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _spec(device: str | torch.device) -> tuple[DeviceSpec, bool]:
    device = torch.device(device)
    is_gpu = device.type == "cuda" and torch.cuda.is_available()
    return device_spec(device), is_gpu


def gpu_facts(device: str | torch.device = "cuda") -> GpuFacts:
    spec, is_gpu = _spec(device)
    if is_gpu and not spec.capability:  # the H200 constant carries it; others are read from the device
        major, minor = torch.cuda.get_device_capability(torch.device(device))
        spec = DeviceSpec(spec.name, spec.bandwidth, spec.flops, spec.flops_fp32, spec.sm_count, f"sm{major}{minor}")
    return GpuFacts(
        spec.name,
        spec.sm_count,
        spec.capability,
        spec.bandwidth / 1e12,
        spec.flops / 1e12,
        spec.flops_fp32 / 1e12,
        is_gpu,
    )


def floor_ms(side: Sidecar, device: str | torch.device = "cuda") -> float | None:
    """max(bytes / bandwidth, flops / peak) for the region in this sidecar, in ms; None without a GPU."""
    spec, is_gpu = _spec(device)
    if not is_gpu:
        return None
    moved, flops = float(side.cost.get("bytes", 0.0)), float(side.cost.get("flops", 0.0))
    low = any(i.dtype in _LOW for i in side.inputs)
    rate = spec.flops if (side.anchor and low) else spec.flops_fp32
    return 1e3 * max(moved / spec.bandwidth, flops / rate)


def roofline_pct(candidate_ms: float | None, floor: float | None) -> float | None:
    """% of the roofline reached: 100 means at the floor."""
    if not candidate_ms or not floor:
        return None
    return 100.0 * floor / candidate_ms
