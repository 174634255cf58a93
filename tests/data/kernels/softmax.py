"""Softmax over the last dim with fp32 math (region_softmax: amax, sub, exp, sum, div).

Rows up to MAX_BLOCK columns sit in one block, ROWS rows per program (short rows
on the CPU interpreter, RMSNorm-like rows on a GPU). Longer rows (32000-wide
vocabularies) take two passes over column chunks: an online max/sum, then the
normalized write; the second read of a row mostly hits L2. The math follows the
region op by op (x - max, exp, / sum), so NaN and Inf propagate as the graph's do.
"""
import torch
import triton
import triton.language as tl

MAX_BLOCK = 4096


@triton.jit
def _softmax_kernel(x_ptr, out_ptr, n_rows, n_cols, stride_x, stride_out,
                    ROWS: tl.constexpr, BLOCK_N: tl.constexpr, ONE_BLOCK: tl.constexpr):
    # read n_rows*n_cols (twice when not ONE_BLOCK), write n_rows*n_cols
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)[:, None]
    row_ok = rows < n_rows
    if ONE_BLOCK:
        cols = tl.arange(0, BLOCK_N)[None, :]
        mask = row_ok & (cols < n_cols)
        x = tl.load(x_ptr + rows * stride_x + cols, mask=mask, other=float("-inf")).to(tl.float32)
        num = tl.where(mask, tl.exp(x - tl.max(x, axis=1)[:, None]), 0.0)
        out = num / tl.sum(num, axis=1)[:, None]
        tl.store(out_ptr + rows * stride_out + cols, out.to(out_ptr.dtype.element_ty), mask=mask)
    else:
        m = tl.full((ROWS, 1), float("-inf"), dtype=tl.float32)
        s = tl.zeros((ROWS, 1), dtype=tl.float32)
        for c0 in range(0, n_cols, BLOCK_N):
            cols = c0 + tl.arange(0, BLOCK_N)[None, :]
            mask = row_ok & (cols < n_cols)
            x = tl.load(x_ptr + rows * stride_x + cols, mask=mask, other=float("-inf")).to(tl.float32)
            m_new = tl.maximum(m, tl.max(x, axis=1)[:, None])
            # rescale the running sum; a row that is all -inf so far keeps s = 0
            alpha = tl.where(m_new == float("-inf"), 0.0, tl.exp(m - m_new))
            s = s * alpha + tl.sum(tl.where(mask, tl.exp(x - m_new), 0.0), axis=1)[:, None]
            m = m_new
        for c0 in range(0, n_cols, BLOCK_N):
            cols = c0 + tl.arange(0, BLOCK_N)[None, :]
            mask = row_ok & (cols < n_cols)
            x = tl.load(x_ptr + rows * stride_x + cols, mask=mask, other=float("-inf")).to(tl.float32)
            out = tl.exp(x - m) / s
            tl.store(out_ptr + rows * stride_out + cols, out.to(out_ptr.dtype.element_ty), mask=mask)


def forward(x):
    n_rows, n_cols = x.shape
    out = torch.empty((n_rows, n_cols), dtype=x.dtype, device=x.device)
    block = min(triton.next_power_of_2(n_cols), MAX_BLOCK)
    rows = max(1, min(8, 1024 // block))
    _softmax_kernel[(triton.cdiv(n_rows, rows),)](
        x, out, n_rows, n_cols, x.stride(0), out.stride(0),
        ROWS=rows, BLOCK_N=block, ONE_BLOCK=block >= n_cols, num_warps=8 if block >= 2048 else 4,
    )
    return out
