"""Correctness against eager, judged from a float64 reference (Inductor's own accuracy rule).

A compiled bf16 result and eager's bf16 result both differ from the exact answer;
neither is the truth. So, as ``torch._dynamo.utils.same`` does for Inductor's
model benchmarks, both are compared with a float64 run of the same computation,
and a mode passes when its RMS error is at most ``MULTIPLIER`` times eager's plus
a floor. The multiplier is Inductor's bf16 value (3: fusion reassociates bf16
reductions, and eager rounds after every op where a fused kernel rounds once).
The floor is a quarter of one unit of rounding of the working precision (bf16
here, whatever the output dtype) at the output's RMS size: an fp32 loss computed
from bf16 logits can land within 1e-7 of the exact value in eager by luck of
cancellation, and a fused kernel that sums in another order is no less right.
An RMS rule alone would miss one corrupted row of a big tensor, so the max error
must also stay within ``MAX_MULTIPLIER`` times eager's plus one unit of rounding
at the output's largest value. NaN/Inf must appear exactly where the reference has them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

MULTIPLIER = 3.0
MAX_MULTIPLIER = 10.0
# One unit of rounding (2^-p for a p-bit significand, implicit bit included).
UNIT = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11, torch.float32: 2.0**-24, torch.float64: 2.0**-53}


@dataclass
class Errors:
    rmse: float
    max_abs: float
    ref_rms: float
    ref_max: float
    nonfinite_mismatch: int


def errors(out: torch.Tensor, ref: torch.Tensor) -> Errors:
    """Errors of one output against its reference (the reference in float32 or float64)."""
    if out.shape != ref.shape:
        raise ValueError(f"shape {tuple(out.shape)} != reference {tuple(ref.shape)}")
    if not out.is_floating_point():
        bad = int((out != ref.to(out.dtype)).sum())
        return Errors(float(bad), float(bad), 1.0, 1.0, 0)
    o, r = out.detach().to(ref.dtype), ref
    fo, fr = torch.isfinite(o), torch.isfinite(r)
    mismatch = int((fo != fr).sum()) + int(((~fr) & (o != r)).sum())  # inf of the wrong sign counts
    both = fo & fr
    zero = torch.zeros((), dtype=r.dtype, device=r.device)
    d = torch.where(both, o - r, zero)
    rv = torch.where(fr, r, zero)
    n = max(int(both.sum()), 1)
    # Norms accumulate in float64 without a float64 copy of a (possibly 1e9-element) tensor.
    norm = lambda t: float(torch.linalg.vector_norm(t, 2, dtype=torch.float64))  # noqa: E731
    return Errors(
        rmse=norm(d) / n**0.5,
        max_abs=float(d.abs().max()) if d.numel() else 0.0,
        ref_rms=norm(rv) / n**0.5,
        ref_max=float(rv.abs().max()) if rv.numel() else 0.0,
        nonfinite_mismatch=mismatch,
    )


def judge(
    outs: Sequence[torch.Tensor],
    refs: Sequence[torch.Tensor],
    eager: Sequence[Errors],
    working: torch.dtype = torch.bfloat16,
) -> dict[str, Any]:
    """{ok, outputs, worst: {...}, message}: every output must pass both rules."""
    unit = UNIT[working]
    if len(outs) != len(refs):
        return {"ok": False, "outputs": len(outs), "message": f"{len(outs)} outputs, reference has {len(refs)}"}
    worst: dict[str, Any] | None = None
    for i, (o, r, e) in enumerate(zip(outs, refs, eager)):
        try:
            m = errors(o, r)
        except ValueError as err:
            return {"ok": False, "outputs": len(outs), "message": f"output {i}: {err}"}
        rms_limit = MULTIPLIER * e.rmse + 0.25 * unit * m.ref_rms
        max_limit = MAX_MULTIPLIER * e.max_abs + unit * m.ref_max
        ratio = max(
            m.rmse / rms_limit if rms_limit else float(m.rmse > 0),
            m.max_abs / max_limit if max_limit else float(m.max_abs > 0),
        )
        item = {
            "output": i,
            "rmse": m.rmse,
            "eager_rmse": e.rmse,
            "rmse_limit": rms_limit,
            "max_abs": m.max_abs,
            "eager_max_abs": e.max_abs,
            "max_limit": max_limit,
            "nonfinite_mismatch": m.nonfinite_mismatch,
            "ratio": ratio,
        }
        if m.nonfinite_mismatch:
            return {
                "ok": False,
                "outputs": len(outs),
                "worst": item,
                "message": f"output {i}: {m.nonfinite_mismatch} NaN/Inf where the reference is finite (or the reverse)",
            }
        if worst is None or ratio > worst["ratio"]:
            worst = item
    ok = worst is None or worst["ratio"] <= 1.0
    msg = (
        "ok"
        if ok
        else (
            f"output {worst['output']}: RMS error {worst['rmse']:.3g} (eager {worst['eager_rmse']:.3g}, limit "
            f"{worst['rmse_limit']:.3g}), max error {worst['max_abs']:.3g} (eager {worst['eager_max_abs']:.3g}, "
            f"limit {worst['max_limit']:.3g}) against the float64 reference"
        )
    )
    return {"ok": ok, "outputs": len(outs), "worst": worst, "message": msg}
