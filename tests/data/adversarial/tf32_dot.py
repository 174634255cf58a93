"""Cheat (or the most common bug): an fp32 matmul left at tl.dot's default precision, TF32 (region_bias_gelu, fp32).

On a GPU that multiplies 10-bit mantissas; the region is fp32 and allows no
TF32. The worker makes the interpreter round to TF32 as a GPU would, so the CPU
verdict matches the GPU's. Policy admits it; caught by: 'low_precision'.
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _linear_gelu(x_ptr, w_ptr, b_ptr, out_ptr, M, N, K, BLOCK: tl.constexpr):
    offs_m = tl.arange(0, BLOCK)
    offs_n = tl.arange(0, BLOCK)
    offs_k = tl.arange(0, BLOCK)
    a = tl.load(x_ptr + offs_m[:, None] * K + offs_k[None, :], mask=(offs_m[:, None] < M) & (offs_k[None, :] < K), other=0.0)
    b = tl.load(w_ptr + offs_n[None, :] * K + offs_k[:, None], mask=(offs_k[:, None] < K) & (offs_n[None, :] < N), other=0.0)
    v = tl.dot(a, b) + tl.load(b_ptr + offs_n, mask=offs_n < N, other=0.0)[None, :]
    out = (tl.erf(v * 0.7071067811865476) + 1.0) * (v * 0.5)
    tl.store(out_ptr + offs_m[:, None] * N + offs_n[None, :], out, mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


def forward(weight, bias, x):
    M, K = x.shape
    N = weight.shape[0]
    out = torch.empty((M, N), dtype=x.dtype, device=x.device)
    _linear_gelu[(1,)](x, weight, bias, out, M, N, K, BLOCK=64)
    return out
