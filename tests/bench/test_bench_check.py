"""Benchmarks' correctness rule: right answers in another rounding order pass, wrong ones fail for the right reason."""

from __future__ import annotations

import torch

from benchmarks.check import errors, judge


def _rmsnorm_op_by_op(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Eager bf16: every op rounds to bf16."""
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))


def _rmsnorm_fused(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """A fused kernel: fp32 inside, one rounding at the end."""
    h = x.float()
    return (w.float() * h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype)


def _case(shape=(6, 42, 123)):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g).to(torch.bfloat16)
    w = (1 + 0.1 * torch.randn(shape[-1], generator=g)).to(torch.bfloat16)
    ref = _rmsnorm_fused(x.double(), w.double()).float()
    eager = _rmsnorm_op_by_op(x, w)
    return x, w, ref, [errors(eager, ref)]


def test_a_fused_kernel_that_rounds_once_passes():
    x, w, ref, eager = _case()
    verdict = judge([_rmsnorm_fused(x, w)], [ref], eager)
    assert verdict["ok"], verdict["message"]
    assert verdict["worst"]["rmse"] <= verdict["worst"]["eager_rmse"]  # rounding once is at least as accurate


def test_one_corrupted_row_of_a_large_tensor_fails_on_the_max_rule():
    x, w, ref, eager = _case((64, 4096))
    out = _rmsnorm_fused(x, w)
    out[17, 100] += 0.5  # a single wrong element: the RMS error barely moves
    verdict = judge([out], [ref], eager)
    assert not verdict["ok"]
    assert verdict["worst"]["rmse"] <= verdict["worst"]["rmse_limit"], "the RMS rule alone would have passed it"
    assert verdict["worst"]["max_abs"] > verdict["worst"]["max_limit"]


def test_zeros_and_nans_fail():
    x, w, ref, eager = _case()
    assert not judge([torch.zeros_like(x)], [ref], eager)["ok"]
    out = _rmsnorm_fused(x, w)
    out[0, 0, 0] = float("nan")
    verdict = judge([out], [ref], eager)
    assert not verdict["ok"] and "NaN" in verdict["message"]


def test_a_wrong_shape_or_count_fails():
    x, w, ref, eager = _case()
    assert "shape" in judge([_rmsnorm_fused(x, w)[:, :-1]], [ref], eager)["message"]
    assert not judge([], [ref], eager)["ok"]


def test_an_fp32_loss_from_bf16_logits_is_judged_at_bf16_precision():
    # Eager can land within 1e-7 of the exact loss by cancellation; a kernel that sums in
    # another order is no less right. The floor is set by the bf16 inputs, not the fp32 output.
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(19, 500, generator=g).to(torch.bfloat16)
    labels = torch.randint(0, 500, (19,), generator=g)
    ref = torch.nn.functional.cross_entropy(logits.double(), labels).float()
    eager = torch.nn.functional.cross_entropy(logits.float(), labels)
    reordered = torch.nn.functional.cross_entropy(logits.float().flip(-1), (499 - labels)) + 3e-6
    assert judge([reordered], [ref], [errors(eager, ref)])["ok"]
    assert not judge([eager * 1.01], [ref], [errors(eager, ref)])["ok"]  # a 1% wrong loss is still caught
