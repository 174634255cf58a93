"""Out of memory: allocates 4 TiB for its output (region_softmax). The policy admits allocation; caught by: 'oom'."""
import torch
import triton
import triton.language as tl


@triton.jit
def _noop(x_ptr):
    pass


def forward(x):
    out = torch.empty((1 << 40,), dtype=x.dtype, device=x.device)
    _noop[(1,)](out)
    return out[: x.numel()].view(x.shape)
