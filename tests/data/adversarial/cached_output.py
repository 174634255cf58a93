"""Cheat: keeps one output buffer per shape and hands it out on every call (region_softmax).

The values are right each time, but a caller holding the previous result sees it
overwritten. Caught by: policy:global_state; alone, the dynamic layer says
'cached_output' (two calls returned the same storage).
"""
import torch
import triton
import triton.language as tl

_buffers = {}


@triton.jit
def _softmax(x_ptr, out_ptr, n_cols, stride, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + row * stride + cols, mask=cols < n_cols, other=float("-inf"))
    e = tl.exp(x - tl.max(x, axis=0))
    tl.store(out_ptr + row * stride + cols, e / tl.sum(e, axis=0), mask=cols < n_cols)


def forward(x):
    key = tuple(x.shape)
    if key not in _buffers:
        _buffers[key] = torch.empty_like(x)
    out = _buffers[key]
    _softmax[(x.shape[0],)](x, out, x.shape[1], x.stride(0), BLOCK=triton.next_power_of_2(x.shape[1]))
    return out
