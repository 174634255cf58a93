"""Cheat: softmax with its inputs and exponentials rounded to bf16, as if TF32/fp16 were fine (region_softmax, fp32).

Legal Triton, so the policy admits it. Caught by: 'low_precision', its error is
hundreds of times Inductor's, and looks like rounding to 8 bits of mantissa.
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _softmax_bf16(x_ptr, out_ptr, n_rows, n_cols, stride, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)[:, None]
    cols = tl.arange(0, BLOCK)[None, :]
    mask = (rows < n_rows) & (cols < n_cols)
    x = tl.load(x_ptr + rows * stride + cols, mask=mask, other=float("-inf")).to(tl.bfloat16).to(tl.float32)
    e = tl.exp(x - tl.max(x, axis=1)[:, None]).to(tl.bfloat16).to(tl.float32)
    e = tl.where(mask, e, 0.0)
    tl.store(out_ptr + rows * stride + cols, e / tl.sum(e, axis=1)[:, None], mask=mask)


def forward(x):
    out = torch.empty_like(x)
    _softmax_bf16[(triton.cdiv(x.shape[0], 8),)](x, out, x.shape[0], x.shape[1], x.stride(0), ROWS=8,
                                                 BLOCK=triton.next_power_of_2(x.shape[1]))
    return out
