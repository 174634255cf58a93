"""Hang: an infinite loop in the wrapper (region_softmax). The policy admits loops; caught by: 'timeout'."""
import torch
import triton
import triton.language as tl


@triton.jit
def _noop(x_ptr):
    pass


def forward(x):
    n = 0
    while True:
        n += 1
