"""Per-row cross-entropy, reduction='none' (region_cross_entropy: log_softmax, gather, neg, ignore_index).

loss[r] = log(sum(exp(x - max))) - (x[target] - max), and 0 where target == -100,
in the region's order of operations, in fp32 whatever the logits' dtype. Short
rows: ROWS rows per program, one block each. Long rows (128k vocabularies): one
row per program, an online max/sum over column chunks, so logits are read once.
"""
import torch
import triton
import triton.language as tl

MAX_BLOCK = 4096


@triton.jit
def _cross_entropy_kernel(target_ptr, x_ptr, loss_ptr, n_rows, n_cols, stride_x,
                          ROWS: tl.constexpr, BLOCK_N: tl.constexpr):
    # read n_rows*n_cols + n_rows, write n_rows
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_ok = rows < n_rows
    m = tl.full((ROWS,), float("-inf"), dtype=tl.float32)
    s = tl.zeros((ROWS,), dtype=tl.float32)
    for c0 in range(0, n_cols, BLOCK_N):
        cols = c0 + tl.arange(0, BLOCK_N)[None, :]
        mask = row_ok[:, None] & (cols < n_cols)
        x = tl.load(x_ptr + rows[:, None] * stride_x + cols, mask=mask, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, axis=1))
        alpha = tl.where(m_new == float("-inf"), 0.0, tl.exp(m - m_new))  # all -inf so far: nothing to rescale
        s = s * alpha + tl.sum(tl.where(mask, tl.exp(x - m_new[:, None]), 0.0), axis=1)
        m = m_new
    log_sum = tl.log(s)
    target = tl.load(target_ptr + rows, mask=row_ok, other=0)
    valid = target != -100
    picked = tl.load(x_ptr + rows * stride_x + tl.where(valid, target, 0), mask=row_ok, other=0.0).to(tl.float32)
    loss = tl.where(valid, -((picked - m) - log_sum), 0.0)
    tl.store(loss_ptr + rows, loss.to(loss_ptr.dtype.element_ty), mask=row_ok)


def forward(target, logits):
    n_rows, n_cols = logits.shape
    loss = torch.empty((n_rows,), dtype=torch.float32, device=logits.device)
    block = min(triton.next_power_of_2(n_cols), MAX_BLOCK)
    rows = max(1, min(8, 1024 // block))
    _cross_entropy_kernel[(triton.cdiv(n_rows, rows),)](
        target, logits, loss, n_rows, n_cols, logits.stride(0), ROWS=rows, BLOCK_N=block,
        num_warps=8 if block >= 2048 else 4,
    )
    return loss
