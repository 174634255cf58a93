"""Crash (or silent corruption): stores far outside any allocation (region_softmax).

On a GPU this is an illegal memory access; under the CPU interpreter it may
segfault or scribble. Either way the candidate must be rejected. Policy admits it.
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _wild(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(out_ptr + offs + (1 << 40), tl.load(x_ptr + offs, mask=offs < n), mask=offs < n)


def forward(x):
    out = torch.empty_like(x)
    _wild[(1,)](x, out, x.numel(), BLOCK=1024)
    return out
