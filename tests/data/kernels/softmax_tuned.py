"""Softmax over the last dim (region_softmax), written the autotuned way: heuristics, a config pre_hook, a grid lambda.

The callables are pure functions of their arguments, as Triton's tutorials write
them; the verifier runs them under its guard like the wrapper. The pre_hook
zeroes the output before each launch (the idiom for kernels that accumulate
with atomics; here it only shows the hook is allowed to allocate-and-fill).
"""
import torch
import triton
import triton.language as tl


@triton.autotune(configs=[triton.Config({"ROWS": 4}, num_warps=4, pre_hook=lambda nargs: nargs["out_ptr"].zero_())],
                 key=["n_cols"])
@triton.heuristics({"BLOCK": lambda args: triton.next_power_of_2(args["n_cols"])})
@triton.jit
def _softmax(x_ptr, out_ptr, n_rows, n_cols, stride_x, stride_out, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    # read n_rows*n_cols, write n_rows*n_cols
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)[:, None]
    cols = tl.arange(0, BLOCK)[None, :]
    mask = (rows < n_rows) & (cols < n_cols)
    x = tl.load(x_ptr + rows * stride_x + cols, mask=mask, other=float("-inf")).to(tl.float32)
    num = tl.where(mask, tl.exp(x - tl.max(x, axis=1)[:, None]), 0.0)
    out = num / tl.sum(num, axis=1)[:, None]
    tl.store(out_ptr + rows * stride_out + cols, out.to(out_ptr.dtype.element_ty), mask=mask)


def forward(x):
    n_rows, n_cols = x.shape
    out = torch.empty((n_rows, n_cols), dtype=x.dtype, device=x.device)
    grid = lambda meta: (triton.cdiv(n_rows, meta["ROWS"]),)  # noqa: E731
    _softmax[grid](x, out, n_rows, n_cols, x.stride(0), out.stride(0))
    return out
