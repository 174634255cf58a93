"""Row sums of x minus its row mean (mean, sub, sum; x (6, 32) -> (6,); tests/verify/test_verify_degenerate.py).

Correct, and useless: every row sum is zero up to rounding, which is why the verifier
calls the region degenerate rather than judging this kernel.
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _centered_sum(x_ptr, out_ptr, n_cols, stride_x, BLOCK: tl.constexpr):
    # one program per row: read n_cols, write 1
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=0) / n_cols
    centered = tl.where(mask, x - mean, 0.0)
    tl.store(out_ptr + row, tl.sum(centered, axis=0).to(out_ptr.dtype.element_ty))


def forward(x):
    n_rows, n_cols = x.shape
    out = torch.empty((n_rows,), dtype=x.dtype, device=x.device)
    _centered_sum[(n_rows,)](x, out, n_cols, x.stride(0), BLOCK=triton.next_power_of_2(n_cols))
    return out
