"""Crash: SIGABRT from inside the wrapper, as a failed C assertion would (region_softmax).

Caught by: policy:process; alone: 'crash' (the worker dies by a signal, the parent carries on).
"""
import os

import torch
import triton
import triton.language as tl


@triton.jit
def _noop(x_ptr):
    pass


def forward(x):
    os.abort()
