"""Cheat: correct for its first 3 calls, then skips the normalization (region_softmax).

Caught by: policy:global_state (the call counter); alone, the dynamic layer
says 'stateful': every call is checked and the first draw is re-run later.
"""
import torch
import triton
import triton.language as tl

_calls = [0]


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
    _calls[0] += 1
    out = torch.empty_like(x)
    _softmax[(x.shape[0],)](x, out, x.shape[1], x.stride(0), NORMALIZE=_calls[0] <= 3,
                            BLOCK=triton.next_power_of_2(x.shape[1]))
    return out
