"""Cheat: RMSNorm in torch inside the grid callable, which Triton calls mid-launch (region_rmsnorm).

The kernel only copies what the grid callable computed. Operators and
``new_full`` pass the policy; caught by: 'torch_compute' (ops are charged to the
candidate's code wherever Triton calls it).
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _copy(src_ptr, dst_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(dst_ptr + offs, tl.load(src_ptr + offs, mask=offs < n), mask=offs < n)


def forward(x, weight):
    y = torch.empty_like(x)
    out = torch.empty_like(x)
    n = x.shape[-1]

    def grid(meta):
        y.copy_(x * ((x * x) @ x.new_full((n, 1), 1.0 / n) + 1e-6) ** -0.5 * weight)
        return (triton.cdiv(x.numel(), meta["BLOCK"]),)

    _copy[grid](y, out, x.numel(), BLOCK=1024)
    return out
