"""Rotary embedding, rotate-half form (region_rope: q*cos + cat(-q[..., h:], q[..., :h])*sin).

Inputs in the region's canonical order: cos (S, D), q (B, H, S, D), sin (S, D).
Each program handles ROWS rows of q (one row = one (b, h, s) position); column c
pairs with c +- D/2, with the sign of the rotated half.
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _rope_kernel(cos_ptr, q_ptr, sin_ptr, out_ptr, n_rows, seq_len, stride_q, stride_cs, stride_out,
                 HEAD_DIM: tl.constexpr, ROWS: tl.constexpr):
    # read 2*n_rows*HEAD_DIM (q twice, the halves swapped) + 2*seq_len*HEAD_DIM, write n_rows*HEAD_DIM
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)[:, None]
    cols = tl.arange(0, HEAD_DIM)[None, :]
    half: tl.constexpr = HEAD_DIM // 2
    mask = (rows < n_rows) & (cols < HEAD_DIM)
    pos = rows % seq_len
    q = tl.load(q_ptr + rows * stride_q + cols, mask=mask, other=0.0).to(tl.float32)
    partner = tl.where(cols < half, cols + half, cols - half)
    q_rot = tl.load(q_ptr + rows * stride_q + partner, mask=mask, other=0.0).to(tl.float32)
    q_rot = tl.where(cols < half, -q_rot, q_rot)
    cos = tl.load(cos_ptr + pos * stride_cs + cols, mask=mask, other=0.0).to(tl.float32)
    sin = tl.load(sin_ptr + pos * stride_cs + cols, mask=mask, other=0.0).to(tl.float32)
    out = q * cos + q_rot * sin  # fp32 math, one rounding to the output dtype
    tl.store(out_ptr + rows * stride_out + cols, out.to(out_ptr.dtype.element_ty), mask=mask)


def forward(cos, q, sin):
    head_dim = q.shape[-1]
    seq_len = q.shape[-2]
    q2 = q.reshape(-1, head_dim)
    out = torch.empty_like(q2)
    rows = 64
    _rope_kernel[(triton.cdiv(q2.shape[0], rows),)](
        cos, q2, sin, out, q2.shape[0], seq_len, q2.stride(0), cos.stride(0), out.stride(0),
        HEAD_DIM=head_dim, ROWS=rows,
    )
    return out.view(q.shape)
