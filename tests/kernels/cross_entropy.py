"""Per-row cross-entropy, reduction='none' (region_cross_entropy: log_softmax, gather, neg, ignore_index).

loss[r] = log(sum(exp(x - max))) - (x[target] - max), and 0 where target == -100,
in the region's order of operations. ROWS rows per program, whole row per block.
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _cross_entropy_kernel(target_ptr, x_ptr, loss_ptr, n_rows, n_cols, stride_x,
                          ROWS: tl.constexpr, BLOCK_N: tl.constexpr):
    # read n_rows*n_cols + n_rows, write n_rows
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_ok = rows < n_rows
    cols = tl.arange(0, BLOCK_N)[None, :]
    mask = row_ok[:, None] & (cols < n_cols)
    x = tl.load(x_ptr + rows[:, None] * stride_x + cols, mask=mask, other=float("-inf"))
    m = tl.max(x, axis=1)
    log_sum = tl.log(tl.sum(tl.where(mask, tl.exp(x - m[:, None]), 0.0), axis=1))
    target = tl.load(target_ptr + rows, mask=row_ok, other=0)
    valid = target != -100
    picked = tl.load(x_ptr + rows * stride_x + tl.where(valid, target, 0), mask=row_ok, other=0.0)
    loss = tl.where(valid, -((picked - m) - log_sum), 0.0)
    tl.store(loss_ptr + rows, loss, mask=row_ok)


def forward(target, logits):
    n_rows, n_cols = logits.shape
    loss = torch.empty((n_rows,), dtype=logits.dtype, device=logits.device)
    rows = 8
    _cross_entropy_kernel[(triton.cdiv(n_rows, rows),)](
        target, logits, loss, n_rows, n_cols, logits.stride(0), ROWS=rows, BLOCK_N=triton.next_power_of_2(n_cols)
    )
    return loss
