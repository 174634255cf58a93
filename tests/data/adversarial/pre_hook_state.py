"""Cheat: an autotune config's pre_hook counts launches in a mutable default and flags the kernel (region_softmax).

Right for its first 3 launches: the hook fills a flag the kernel reads, then
stops normalizing. Caught by: policy:global_state (the hook's list default);
alone, the dynamic layer says 'stateful'.
"""
import torch
import triton
import triton.language as tl


@triton.autotune(configs=[triton.Config({}, pre_hook=lambda nargs, _seen=[]: nargs["flag_ptr"].fill_(
    _seen.append(0) or len(_seen) <= 3))], key=["n_cols"])
@triton.jit
def _softmax(x_ptr, out_ptr, flag_ptr, n_cols, stride, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + row * stride + cols, mask=cols < n_cols, other=float("-inf"))
    e = tl.exp(x - tl.max(x, axis=0))
    normalize = tl.load(flag_ptr) != 0
    e = tl.where(normalize, e / tl.sum(e, axis=0), e)
    tl.store(out_ptr + row * stride + cols, e, mask=cols < n_cols)


def forward(x):
    out = torch.empty_like(x)
    flag = torch.empty(1, dtype=torch.int32, device=x.device)
    _softmax[(x.shape[0],)](x, out, flag, x.shape[1], x.stride(0), BLOCK=triton.next_power_of_2(x.shape[1]))
    return out
