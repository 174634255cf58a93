"""Sum of squares over a symbolic last dim (region_sumsq_dyn: x (6, s0) -> (6,), s0 dynamic).

The row length is a runtime argument and the kernel loops over it in BLOCK_N
chunks, so it is right at every s0 (1, odd sizes, sizes over one block).
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _sumsq_kernel(x_ptr, out_ptr, n_rows, n_cols, stride_x, ROWS: tl.constexpr, BLOCK_N: tl.constexpr):
    # read n_rows*n_cols, write n_rows
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    acc = tl.zeros((ROWS, BLOCK_N), dtype=tl.float32)
    for c0 in range(0, n_cols, BLOCK_N):
        cols = c0 + tl.arange(0, BLOCK_N)
        mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
        x = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        acc += x * x
    tl.store(out_ptr + rows, tl.sum(acc, axis=1).to(out_ptr.dtype.element_ty), mask=rows < n_rows)


def forward(x):
    n_rows, n_cols = x.shape
    out = torch.empty((n_rows,), dtype=x.dtype, device=x.device)
    rows = 8
    _sumsq_kernel[(triton.cdiv(n_rows, rows),)](x, out, n_rows, n_cols, x.stride(0), ROWS=rows, BLOCK_N=256)
    return out
