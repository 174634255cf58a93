"""Cheat: computes RMSNorm with torch ops in the wrapper and launches a copy kernel for show (region_rmsnorm).

Caught by: policy:torch_attr (torch.rsqrt); alone, the dynamic layer says
'torch_compute' (pow, mean, rsqrt, mul ran outside any launch).
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _copy(src_ptr, dst_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(dst_ptr + offs, tl.load(src_ptr + offs, mask=offs < n), mask=offs < n)


def forward(x, weight):
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * weight
    out = torch.empty_like(y)
    _copy[(triton.cdiv(y.numel(), 4096),)](y, out, y.numel(), BLOCK=4096)
    return out
