"""Cheat: computes softmax in place in its input and returns it (region_softmax).

A harness that computes the reference after the candidate, on the same tensor,
would now compare softmax(softmax(x)) with itself. Policy admits it; caught by:
'input_mutated'.
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _softmax_inplace(x_ptr, n_cols, stride, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + row * stride + cols, mask=cols < n_cols, other=float("-inf"))
    e = tl.exp(x - tl.max(x, axis=0))
    tl.store(x_ptr + row * stride + cols, e / tl.sum(e, axis=0), mask=cols < n_cols)


def forward(x):
    _softmax_inplace[(x.shape[0],)](x, x.shape[1], x.stride(0), BLOCK=triton.next_power_of_2(x.shape[1]))
    return x
