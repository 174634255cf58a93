"""Softmax over the last dim in fp32 (region_softmax: amax, sub, exp, sum, div).

ROWS rows per program, the whole row in one block; the math follows the region
op by op (x - max, exp, / sum), so NaN and Inf propagate the way the graph's do.
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _softmax_kernel(x_ptr, out_ptr, n_rows, n_cols, stride_x, stride_out, ROWS: tl.constexpr, BLOCK_N: tl.constexpr):
    # read n_rows*n_cols, write n_rows*n_cols
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)[:, None]
    cols = tl.arange(0, BLOCK_N)[None, :]
    mask = (rows < n_rows) & (cols < n_cols)
    x = tl.load(x_ptr + rows * stride_x + cols, mask=mask, other=float("-inf"))
    shifted = x - tl.max(x, axis=1)[:, None]
    num = tl.where(mask, tl.exp(shifted), 0.0)
    out = num / tl.sum(num, axis=1)[:, None]
    tl.store(out_ptr + rows * stride_out + cols, out, mask=mask)


def forward(x):
    n_rows, n_cols = x.shape
    out = torch.empty((n_rows, n_cols), dtype=x.dtype, device=x.device)
    rows = 8
    _softmax_kernel[(triton.cdiv(n_rows, rows),)](
        x, out, n_rows, n_cols, x.stride(0), out.stride(0), ROWS=rows, BLOCK_N=triton.next_power_of_2(n_cols)
    )
    return out
