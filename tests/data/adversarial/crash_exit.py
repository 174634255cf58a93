"""Crash: the wrapper ends the process (region_softmax). Caught by: policy:process; alone: 'crash'."""
import os

import torch
import triton
import triton.language as tl


@triton.jit
def _noop(x_ptr):
    pass


def forward(x):
    os._exit(3)
