"""Cheat: a @triton.heuristics lambda counts launches in a mutable default argument (region_softmax).

Right for its first 3 launches, then it skips the normalization. Caught by:
policy:global_state (the lambda's list default); alone, the dynamic layer says
'stateful'.
"""
import torch
import triton
import triton.language as tl


@triton.heuristics({"NORMALIZE": lambda args, _seen=[]: _seen.append(0) or len(_seen) <= 3})
@triton.jit
def _softmax(x_ptr, out_ptr, n_cols, stride, NORMALIZE: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + row * stride + cols, mask=cols < n_cols, other=float("-inf"))
    e = tl.exp(x - tl.max(x, axis=0))
    if NORMALIZE:
        e = e / tl.sum(e, axis=0)
    tl.store(out_ptr + row * stride + cols, e, mask=cols < n_cols)


def forward(x):
    out = torch.empty_like(x)
    _softmax[(x.shape[0],)](x, out, x.shape[1], x.stride(0), BLOCK=triton.next_power_of_2(x.shape[1]))
    return out
