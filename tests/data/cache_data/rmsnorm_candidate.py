"""A hand-written candidate for the RMSNorm region of the tests' tiny model (fp32, rows of N).

forward(in0, in1): in0 (M, N) activations, in1 (N,) weight → x * rsqrt(mean(x²) + 1e-6) * w.
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _rmsnorm_fwd(X, W, Y, stride_xm, stride_xn, stride_ym, N, eps, BLOCK_N: tl.constexpr):
    # one program per row: read N + N (weight), write N
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride_xm + cols * stride_xn, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    mean_sq = tl.sum(x * x, axis=0) / N
    y = x * (1.0 / tl.sqrt(mean_sq + eps)) * w
    tl.store(Y + row * stride_ym + cols, y, mask=mask)  # cast to the output dtype by tl.store


def forward(in0, in1):
    M, N = in0.shape
    out = torch.empty((M, N), dtype=in0.dtype, device=in0.device)
    _rmsnorm_fwd[(M,)](in0, in1, out, in0.stride(0), in0.stride(1), out.stride(0), N, 1e-6,
                       BLOCK_N=triton.next_power_of_2(N))
    return out
