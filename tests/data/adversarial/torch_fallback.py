"""Cheat: launches a kernel that fails, and falls back to torch.softmax in try/except (region_softmax).

Caught by: policy:try_except; alone, the dynamic layer says 'torch_compute'
(recorded by the dispatch guard, which a try/except cannot swallow).
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _broken(x_ptr, out_ptr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.load(x_ptr + offs) * undefined_name)  # noqa: F821


def forward(x):
    out = torch.empty_like(x)
    try:
        _broken[(1,)](x, out, BLOCK=128)
    except Exception:
        out = torch.softmax(x, -1)
    return out
