"""Cheat: hands back torch.empty and never writes it, hoping for the reference's freed buffer (region_rmsnorm).

In a harness that runs the reference in the same process, the allocator often
returns the reference's just-freed output, so this "passes". Here the reference
never runs in the worker, and fresh allocations are poisoned. Policy admits it;
caught by: 'unwritten_output'.
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _touch(out_ptr):
    pass


def forward(x, weight):
    out = torch.empty_like(x)
    _touch[(1,)](out)
    return out
