"""The hot regions of FIELD.md's table, at its bf16 shapes, written as a model writes them.

Each function is dtype-generic: bf16 inputs give the benchmarked computation
(fp32 math where the region asks for it, through ``_acc``), float64 inputs give
the reference. Bytes are the least traffic (each input read once, each output
written once; fwd+bwd counts x and dy read again in backward, as FIELD.md does);
FLOPs count matmuls only (causal attention: half of S²), so the floor is
max(bytes / 4.25 TB/s, FLOPs / 679 TFLOP/s).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import Case, Step, Workload

BF16 = torch.bfloat16


def _acc(x: torch.Tensor) -> torch.Tensor:
    """fp32 for bf16/fp16 inputs, float64 for the reference."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def rmsnorm(x, w, eps=1e-6):
    h = _acc(x)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(x.dtype)  # Llama: the weight multiplies after the cast back


def layernorm(x, w, b, eps=1e-5):
    return F.layer_norm(x, (x.shape[-1],), w, b, eps)


def swiglu(gate, up):
    return F.silu(gate) * up


def softmax_fp32(x):
    return torch.softmax(_acc(x), dim=-1).to(x.dtype)


def cross_entropy(logits, labels):
    return F.cross_entropy(_acc(logits), labels)


def rope(x, cos, sin):  # x (B, H, S, D); cos, sin (S, D)
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def linear_bias_gelu(x, w, b):  # x (M, K), w (N, K)
    return F.gelu(F.linear(x, w, b))


def causal_attention(q, k, v):  # (B, H, S, D), written out by hand as in nanoGPT
    s = q.shape[-2]
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    mask = torch.ones(s, s, dtype=torch.bool, device=q.device).triu(1)
    scores = scores.masked_fill(mask, float("-inf"))
    return torch.softmax(_acc(scores), dim=-1).to(q.dtype) @ v


# ---------------------------------------------------------------------------- workloads


def fn_workload(
    fn: Callable[..., torch.Tensor],
    inputs: Sequence[torch.Tensor],
    grads: Sequence[int],
    kind: str,
    flops: float,
    nbytes: float,
) -> Workload:
    """A function of tensors; ``grads``: inputs whose gradients the fwd+bwd step returns."""
    inputs = [x.requires_grad_(True) if i in grads else x for i, x in enumerate(inputs)]
    gen = torch.Generator(device=inputs[0].device).manual_seed(1)
    with torch.no_grad():
        probe = fn(*inputs)
    dy = torch.randn(probe.shape, dtype=probe.dtype, device=probe.device, generator=gen) if grads else None
    del probe

    def call(f: Callable[..., torch.Tensor], xs: Sequence[torch.Tensor], g: torch.Tensor | None) -> list[torch.Tensor]:
        out = f(*xs)
        if not grads:
            return [out]
        return [out, *torch.autograd.grad(out, [xs[i] for i in grads], g)]

    def make_step(wrap: Callable[[Any], Any]) -> Step:
        f = wrap(fn)
        if grads:
            step = lambda: call(f, inputs, dy)  # noqa: E731
        else:
            step = lambda: _no_grad(call, f, inputs, None)  # noqa: E731  an inference graph, as in serving
        return Step(outputs=step, run=step)

    def reference(dtype: torch.dtype) -> list[torch.Tensor]:
        xs = [
            x.detach().to(dtype).requires_grad_(i in grads) if x.is_floating_point() else x
            for i, x in enumerate(inputs)
        ]
        outs = call(fn, xs, dy.to(dtype) if dy is not None else None)
        return [o.detach().float() for o in outs]

    return Workload(kind, make_step, reference, flops=flops, bytes=nbytes)


def _no_grad(call: Callable[..., Any], *args: Any) -> Any:
    with torch.no_grad():
        return call(*args)


def _randn(shape: Sequence[int], device: str, gen: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(*shape, device=device, generator=gen) * scale).to(BF16)


def _gen(device: str) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(0)


# Full shapes (FIELD.md) and tiny ones for the CPU smoke test (awkward sizes on purpose).
ROWS = {False: (8192, 4096), True: (37, 96)}
MLP = {False: (8192, 14336), True: (37, 112)}
VOCAB = {False: (4096, 32000), True: (19, 300)}
CE = {False: (4096, 128256), True: (19, 500)}
HEADS = {False: (8, 32, 2048, 128), True: (2, 3, 40, 16)}
GEMM = {False: (8192, 4096, 4096), True: (40, 48, 56)}  # M, N, K


def _norm(fn: Callable[..., torch.Tensor], with_bias: bool, bwd: bool) -> Callable[[str, bool], Workload]:
    def build(device: str, tiny: bool) -> Workload:
        m, n = ROWS[tiny]
        g = _gen(device)
        xs = [_randn((m, n), device, g), 1.0 + _randn((n,), device, g, 0.1)]
        if with_bias:
            xs.append(_randn((n,), device, g, 0.1))
        params = len(xs) - 1
        if bwd:  # fwd: read x, write y; bwd: read x, dy, write dx (+ weights read twice, their grads written)
            return fn_workload(fn, xs, range(len(xs)), "fwd+bwd", 0.0, 2 * (5 * m * n + 3 * params * n))
        return fn_workload(fn, xs, (), "fwd", 0.0, 2 * (2 * m * n + params * n))

    return build


def _swiglu(bwd: bool) -> Callable[[str, bool], Workload]:
    def build(device: str, tiny: bool) -> Workload:
        m, n = MLP[tiny]
        g = _gen(device)
        xs = [_randn((m, n), device, g), _randn((m, n), device, g)]
        if bwd:  # fwd 3 tensors; bwd reads gate, up, dy and writes dgate, dup
            return fn_workload(swiglu, xs, (0, 1), "fwd+bwd", 0.0, 2 * 8 * m * n)
        return fn_workload(swiglu, xs, (), "fwd", 0.0, 2 * 3 * m * n)

    return build


def _softmax(device: str, tiny: bool) -> Workload:
    m, n = VOCAB[tiny]
    return fn_workload(softmax_fp32, [_randn((m, n), device, _gen(device), 3.0)], (), "fwd", 0.0, 2 * 2 * m * n)


def _cross_entropy(device: str, tiny: bool) -> Workload:
    m, v = CE[tiny]
    g = _gen(device)
    labels = torch.randint(0, v, (m,), device=device, generator=g)
    return fn_workload(cross_entropy, [_randn((m, v), device, g, 2.0), labels], (), "fwd", 0.0, 2 * m * v + 8 * m + 4)


def _rope(device: str, tiny: bool) -> Workload:
    b, h, s, d = HEADS[tiny]
    g = _gen(device)
    pos = torch.arange(s, device=device, dtype=torch.float32)[:, None]
    inv = 10000.0 ** (-torch.arange(0, d, 2, device=device, dtype=torch.float32) / d)
    ang = torch.cat((pos * inv, pos * inv), dim=-1)
    xs = [_randn((b, h, s, d), device, g), ang.cos().to(BF16), ang.sin().to(BF16)]
    return fn_workload(rope, xs, (), "fwd", 0.0, 2 * (2 * b * h * s * d + 2 * s * d))


def _gemm(device: str, tiny: bool) -> Workload:
    m, n, k = GEMM[tiny]
    g = _gen(device)
    xs = [_randn((m, k), device, g), _randn((n, k), device, g, k**-0.5), _randn((n,), device, g, 0.1)]
    return fn_workload(linear_bias_gelu, xs, (), "fwd", 2.0 * m * n * k, 2 * (m * k + n * k + n + m * n))


def _attention(device: str, tiny: bool) -> Workload:
    b, h, s, d = HEADS[tiny]
    g = _gen(device)
    xs = [_randn((b, h, s, d), device, g) for _ in range(3)]
    return fn_workload(causal_attention, xs, (), "fwd", 4.0 * b * h * s * s * d / 2, 2 * 4 * b * h * s * d)


def _shape(table: dict[bool, tuple[int, ...]]) -> Callable[[bool], str]:
    return lambda tiny: "x".join(str(v) for v in table[tiny])


def _case(
    name: str,
    kind: str,
    table: dict[bool, tuple[int, ...]],
    build: Callable[[str, bool], Workload],
    matmul: bool = False,
) -> Case:
    # Seconds per mode on the H200: compile cold (~1 s, FIELD.md) + warm + check + do_bench, with margin;
    # max-autotune tunes a matmul for 30-40 s.
    est = {"eager": 3.0, "inductor": 6.0, "llm": 6.0, "max-autotune": 60.0 if matmul else 15.0}
    est["llm-max-autotune"] = est["max-autotune"]
    return Case(name, "regions", kind, _shape(table), build, est, matmul)


CASES = [
    _case("rmsnorm_fwd", "fwd", ROWS, _norm(rmsnorm, False, False)),
    _case("rmsnorm_fwd_bwd", "fwd+bwd", ROWS, _norm(rmsnorm, False, True)),
    _case("layernorm_fwd", "fwd", ROWS, _norm(layernorm, True, False)),
    _case("layernorm_fwd_bwd", "fwd+bwd", ROWS, _norm(layernorm, True, True)),
    _case("swiglu_fwd", "fwd", MLP, _swiglu(False)),
    _case("swiglu_fwd_bwd", "fwd+bwd", MLP, _swiglu(True)),
    _case("softmax_fp32", "fwd", VOCAB, _softmax),
    _case("cross_entropy", "fwd", CE, _cross_entropy),
    _case("rope", "fwd", HEADS, _rope),
    _case("linear_bias_gelu", "fwd", GEMM, _gemm, matmul=True),
    _case("causal_attention", "fwd", HEADS, _attention, matmul=True),
]
