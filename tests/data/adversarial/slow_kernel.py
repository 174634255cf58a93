"""Slow: a kernel that finishes, eventually: far past any per-step limit (region_softmax).

The policy admits it; caught by: 'timeout'.
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _slow(x_ptr, out_ptr, n, ITERS: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    acc = tl.load(x_ptr + offs, mask=offs < n, other=0.0)
    for _ in range(ITERS):
        acc = acc * 1.0000001
    tl.store(out_ptr + offs, acc, mask=offs < n)


def forward(x):
    out = torch.empty_like(x)
    _slow[(triton.cdiv(x.numel(), 1024),)](x, out, x.numel(), ITERS=1 << 30, BLOCK=1024)
    return out
