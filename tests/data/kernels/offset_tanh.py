"""1e6 + tanh(x) (region_offset_tanh, hand-written, no sidecar): the reference that is nearly constant."""
import torch
import triton
import triton.language as tl


@triton.jit
def _offset_tanh_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    # read n, write n
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n, other=0.0)
    # tanh(x) = 1 - 2 / (exp(2x) + 1): exact at +-inf, NaN stays NaN
    t = 1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0)
    tl.store(out_ptr + offs, t + 1000000.0, mask=offs < n)


def forward(x):
    out = torch.empty_like(x)
    _offset_tanh_kernel[(triton.cdiv(x.numel(), 1024),)](x, out, x.numel(), BLOCK=1024)
    return out
