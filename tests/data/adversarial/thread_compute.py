"""Cheat: returns at once and finishes the work on another thread, after the timer stopped (region_softmax).

On a GPU the same trick uses a side stream. Caught by: policy:thread; alone, the
dynamic layer says 'thread' (a thread of the candidate is alive after the call).
"""
import threading
import time

import torch
import triton
import triton.language as tl


@triton.jit
def _softmax(x_ptr, out_ptr, n_cols, stride, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + row * stride + cols, mask=cols < n_cols, other=float("-inf"))
    e = tl.exp(x - tl.max(x, axis=0))
    tl.store(out_ptr + row * stride + cols, e / tl.sum(e, axis=0), mask=cols < n_cols)


def _later(x, out):
    time.sleep(0.5)
    _softmax[(x.shape[0],)](x, out, x.shape[1], x.stride(0), BLOCK=triton.next_power_of_2(x.shape[1]))


def forward(x):
    out = torch.empty_like(x)
    threading.Thread(target=_later, args=(x, out), daemon=True).start()
    return out
