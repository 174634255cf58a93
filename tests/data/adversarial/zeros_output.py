"""Cheat: writes zeros everywhere; with a loose absolute tolerance, small outputs "match" (region_softmax).

Softmax over 781 columns is ~1e-3 per element: atol=1e-2 would accept this. Policy
admits it; caught by: 'wrong_values' (tolerances scale with the output).
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _zeros(out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.zeros((BLOCK,), dtype=tl.float32), mask=offs < n)


def forward(x):
    out = torch.empty_like(x)
    _zeros[(triton.cdiv(x.numel(), 4096),)](out, x.numel(), BLOCK=4096)
    return out
