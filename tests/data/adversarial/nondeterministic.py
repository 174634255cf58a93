"""Cheat: alternates a one-ulp perturbation between calls: within tolerance, never the same bits (region_softmax).

Stands for kernels whose results depend on scheduling (unordered atomics).
Caught by: policy:global_state; alone, the dynamic layer says 'nondeterministic'.
"""
import torch
import triton
import triton.language as tl

_calls = [0]


@triton.jit
def _softmax(x_ptr, out_ptr, n_rows, n_cols, stride, scale, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)[:, None]
    cols = tl.arange(0, BLOCK)[None, :]
    mask = (rows < n_rows) & (cols < n_cols)
    x = tl.load(x_ptr + rows * stride + cols, mask=mask, other=float("-inf"))
    e = tl.where(mask, tl.exp(x - tl.max(x, axis=1)[:, None]), 0.0)
    tl.store(out_ptr + rows * stride + cols, e / tl.sum(e, axis=1)[:, None] * scale, mask=mask)


def forward(x):
    _calls[0] += 1
    out = torch.empty_like(x)
    scale = 1.0 if _calls[0] % 2 else 1.0 + 2.0**-22
    _softmax[(triton.cdiv(x.shape[0], 8),)](x, out, x.shape[0], x.shape[1], x.stride(0), scale, ROWS=8,
                                           BLOCK=triton.next_power_of_2(x.shape[1]))
    return out
