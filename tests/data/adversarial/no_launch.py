"""Cheat: defines a kernel but never launches it; returns a uniform distribution (region_softmax).

torch.full is an allowed allocation, so the policy admits it. Caught by: 'no_launch'.
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _unused(x_ptr):
    pass


def forward(x):
    return torch.full(x.shape, 1.0 / x.shape[1], dtype=x.dtype, device=x.device)
