"""Cheat: RMSNorm in torch inside a @triton.heuristics callable; the kernel is empty (region_rmsnorm).

Heuristics run during the launch, where the guard used to be lifted. Only
operators, ``new_full`` and ``copy_`` appear, so the policy admits it; caught by:
'torch_compute' (the guard stays on while candidate callables run).
"""
import torch
import triton
import triton.language as tl


@triton.heuristics({"DONE": lambda a: a["out"].copy_(
    a["x"] * ((a["x"] * a["x"]) @ a["x"].new_full((a["x"].shape[-1], 1), 1.0 / a["x"].shape[-1]) + 1e-6) ** -0.5
    * a["w"]) is not None})
@triton.jit
def _noop(x, w, out, DONE: tl.constexpr):
    pass


def forward(x, weight):
    out = torch.empty_like(x)
    _noop[(1,)](x, weight, out)
    return out
