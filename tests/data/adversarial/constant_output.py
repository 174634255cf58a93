"""Cheat: returns the constant 1e6, for a region whose output is 1e6 + tanh(x) (region_offset_tanh).

The output moves by at most 2 in 1e6 across all draws, inside a 1e-5 relative
floor, so a floor-based tolerance passes a constant. The verifier flags the
nearly constant reference and drops the floor. Policy admits it; caught by:
'wrong_values' (exact mode).
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _fill(out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.full((BLOCK,), 1e6, dtype=tl.float32), mask=offs < n)


def forward(x):
    out = torch.empty_like(x)
    _fill[(triton.cdiv(x.numel(), 1024),)](out, x.numel(), BLOCK=1024)
    return out
