"""RMSNorm over the last dim, times a weight: region_rmsnorm (fp32) and region_rmsnorm_bf16.

Each program normalizes ROWS rows at once (a 2-D block; the whole row fits in
BLOCK_N = next power of two of the row), accumulating in fp32: many short rows
per program under the CPU interpreter, one 4096-wide row per program (8 warps)
on a GPU. The bf16 region rounds x*rsqrt(mean(x^2)+eps) to bf16 before the
weight multiply, as its graph does.
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _rmsnorm_kernel(x_ptr, w_ptr, out_ptr, n_rows, n_cols, stride_x, stride_out, eps,
                    ROWS: tl.constexpr, BLOCK_N: tl.constexpr, ROUND_TO_OUT: tl.constexpr):
    # read n_rows*n_cols + n_cols, write n_rows*n_cols
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)[:, None]
    cols = tl.arange(0, BLOCK_N)[None, :]
    mask = (rows < n_rows) & (cols < n_cols)
    x = tl.load(x_ptr + rows * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
    mean_sq = tl.sum(x * x, axis=1) / n_cols
    y = x * (1.0 / tl.sqrt(mean_sq + eps))[:, None]
    if ROUND_TO_OUT:
        y = y.to(out_ptr.dtype.element_ty).to(tl.float32)
    tl.store(out_ptr + rows * stride_out + cols, (y * w).to(out_ptr.dtype.element_ty), mask=mask)


def forward(x, weight):
    n_cols = x.shape[-1]
    n_rows = x.numel() // n_cols
    x2 = x.reshape(n_rows, n_cols)
    out = torch.empty_like(x2)
    block = triton.next_power_of_2(n_cols)
    rows = max(1, min(32, 4096 // block))
    _rmsnorm_kernel[(triton.cdiv(n_rows, rows),)](
        x2, weight, out, n_rows, n_cols, x2.stride(0), out.stride(0), 1e-6,
        ROWS=rows, BLOCK_N=block, ROUND_TO_OUT=x.dtype != torch.float32, num_warps=8 if block >= 2048 else 4,
    )
    return out.view(x.shape)
