"""Comparing a candidate's outputs with the references: the tolerance rule and its reasons.

The rule, per output and per input draw, with r the float64 reference, c the
candidate's output and y the yardstick: the larger error of Inductor's output and
of eager PyTorch in the region's dtypes (errors measured in float64 over the
elements that are finite in the reference). Eager counts because Inductor may
skip roundings the graph asks for (a bf16 cast between two fp32 ops): a kernel
that rounds exactly where the graph says must not fail for matching eager.

    mean rel   mean_j e_j <= max(K * mean_j e_y,  floor_rel)      e_j = |c_j - r_j| / (|r_j| + S*floor_rel)
    max rel    max_j m_j  <= max(K_MAX * max_j m_y, 4 * floor_rel)  m_j = |c_j - r_j| / (|r_j| + S/100)
    max abs    max_j |c_j - r_j| <= max(K_MAX * max_j |y_j - r_j|, floor_abs * S)

with S = max_j |r_j|, the output's scale. The mean counts every element relative
to itself (S*floor_rel only keeps zeros finite); the max rel judges elements
down to 1% of the scale relative to themselves and smaller ones against 1% of
the scale, because below that the relative error of a sum is set by how much
its terms cancel, which differs between valid summation orders by any factor.

Why K = 4 on the mean: Inductor's error is what this dtype and region allow in
practice. A valid kernel may sum in another order or fuse multiply-adds
differently; the error bounds of such reorderings are of the same order (Higham,
"Accuracy and Stability", ch. 4: the bound scales with n*u for every order).
Measured on the kernels in tests/data/kernels (60 seeds x 5 distributions each), the
worst mean error was 0.76x the yardstick's. Rounding to a lower precision costs
far more than 4x: fp32 to tf32 or fp16 is 2^13 times the unit roundoff, bf16
2^16. The mean judges precision because it is robust: one rounding flip or one
cancelling element barely moves it.

Why K_MAX = 16 on the maxima: extremes fluctuate between valid summation
orders; the same measurement reached 1.95x (bias+GELU, max rel). Without the 1%
floor in m_j, a single cancelling element of bias+GELU reached 31x, which is why
that floor is there. A wrong element is off by O(1) relative, far beyond 16x
rounding error, so the maxima still catch partial bugs.

Why these floors: where Inductor happens to be exact (a copy, a max), K * 0 would
demand bit equality. floor_rel is a few units of roundoff of the output dtype,
widened for fp32 to 1e-5 (~170 u) because the float64 reference makes even a
correctly rounded fp32 accumulation over a few thousand terms err by ~sqrt(n)*u.
bf16 and fp16 floors are one unit roundoff of the output (2^-8, 2^-11 scaled to
2^-10 for fp16's double rounding through fp32); the per-element maximum allows
4x that, two ulps: a kernel may round the other way at a tie-near element.

A reference that is nearly constant across draws (its spread is within the
floor) gets no floor ("exact" mode): a constant kernel would otherwise pass.

A reference that is zero up to rounding is no reference: when its largest finite
magnitude is no larger than a yardstick's largest error (and that error is not 0),
every digit of it is rounding noise, as in (x - x.mean(-1, keepdim=True)).sum(-1).
No tolerance can tell a right kernel from a wrong one there (the relative errors are
noise over noise), so the verdict is ``degenerate_region``: the region's, not the
candidate's. It is decided from the references alone, before anything of the
candidate's is looked at, so no candidate can steer it, and it never accepts. The
alternative, judging such outputs by their absolute error only, would pass a kernel
that writes zeros without computing anything, and tuning noise gains nothing.
An exactly constant reference that the yardsticks match exactly (x - x) is not
degenerate: it is judged in exact mode. An all-zero reference has no scale of its
own: S is then the output dtype's smallest normal. S is never so small that
S*floor_rel falls below float64's smallest normal (only float64 outputs get
there), so that no relative error is 0/0.

NaN and Inf: the candidate's non-finite positions must match the reference's
(cast to the output dtype, so true overflow is Inf) exactly; where Inductor or
eager disagree with the reference, matching them is accepted too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from llm_inductor.verify.guard import NAN_LAYOUT

K = 4.0  # on the mean relative error
K_MAX = 16.0  # on the maximum relative and absolute errors
MAX_REL_FLOOR = 0.01  # elements under 1% of the output's scale are judged against that 1%
FLOORS = {  # dtype → (floor_rel, floor_abs as a fraction of the output's scale)
    torch.float64: (1e-12, 1e-12),
    torch.float32: (1e-5, 1e-5),
    torch.bfloat16: (2.0**-8, 2.0**-8),
    torch.float16: (2.0**-10, 2.0**-10),
}
_FP8_FLOOR = (2.0**-3, 2.0**-3)
_TINY64 = torch.finfo(torch.float64).tiny
# Rejected errors below this (mean rel) look like rounding to a lower precision, not a logic bug.
LOW_PRECISION_BELOW = {torch.float64: 2.0**-20, torch.float32: 2.0**-6, torch.bfloat16: 2.0**-3, torch.float16: 2.0**-5}


def floors(dtype: torch.dtype) -> tuple[float, float]:
    return FLOORS.get(dtype, _FP8_FLOOR)


def unit_roundoff(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps / 2


@dataclass
class Errors:
    max_abs: float = 0.0
    max_rel: float = 0.0
    mean_rel: float = 0.0
    abs_index: tuple[int, ...] = ()
    rel_index: tuple[int, ...] = ()
    value: float = 0.0  # the value at rel_index, and the reference there
    expected: float = 0.0
    bias: float = 0.0  # mean signed relative error (sign of the reference's): > 0 reads high, < 0 low
    systematic: float = 0.0  # share of the error's energy a scale or offset error explains (see _systematic)

    def text(self) -> str:
        return (
            f"max abs {self.max_abs:.3g} at {list(self.abs_index)}, max rel {self.max_rel:.3g} at "
            f"{list(self.rel_index)} (got {self.value:.6g}, want {self.expected:.6g}), mean rel {self.mean_rel:.3g}"
        )


@dataclass
class Verdict:
    ok: bool
    reason: str  # ok | nan_mismatch | wrong_values | low_precision | degenerate_region
    detail: str
    cand: Errors | None = None
    yard: dict[str, Errors] | None = None  # the yardsticks' errors: inductor, eager


def _index(flat: int, shape: torch.Size) -> tuple[int, ...]:
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), shape)) if len(shape) else ()


CHUNK = 1 << 20  # elements per step of the streaming statistics: about 100 MB of float64 temporaries at most


def _stream(device: str, *tensors: torch.Tensor) -> Iterator[tuple[int, list[torch.Tensor]]]:
    """(start, chunks): the flattened tensors, ``CHUNK`` elements at a time, on the compute device.

    References and outputs live on the host; a chunk at a time goes to the device and is judged there, so
    judging costs the device a chunk's memory, not the outputs', and the host none of the arithmetic.
    """
    flat = [t.reshape(-1) for t in tensors]
    for start in range(0, flat[0].numel(), CHUNK):
        yield start, [f[start : start + CHUNK].to(device) for f in flat]


def errors(x: torch.Tensor, r: torch.Tensor, dtype: torch.dtype, scale: float, floor_rel: float, device: str) -> Errors:
    """x's errors against the float64 reference r, where both r rounded to ``dtype`` and x are finite.

    Streamed (``_stream``): every statistic is a maximum (the first index on ties) or a sum, so chunks give
    what whole-tensor arithmetic gives.
    """
    n = 0
    max_abs = max_rel = -1.0
    a = ra = 0
    mean_rel = bias = 0.0
    dots = _Dots()
    for start, (xc, rc) in _stream(device, x, r):
        rc = rc.double()
        m = rc.to(dtype).isfinite() & xc.isfinite()
        n += int(m.sum())
        rr = torch.where(m, rc, 0.0)
        signed = torch.where(m, xc.double(), 0.0) - rr
        diff = signed.abs()
        mag = rr.abs()
        rel = diff / (mag + scale * MAX_REL_FLOOR)
        den = mag + scale * floor_rel
        i, ri = int(diff.argmax()), int(rel.argmax())
        if float(diff[i]) > max_abs:
            max_abs, a = float(diff[i]), start + i
        if float(rel[ri]) > max_rel:
            max_rel, ra = float(rel[ri]), start + ri
        mean_rel += float((diff / den).sum())
        bias += float((signed * rr.sign() / den).sum())  # signed relative to |r|: a scale error shows as a bias
        dots.add(signed / den, rr / den, m / den)
    if n == 0:
        return Errors()
    return Errors(
        max_abs,
        max_rel,
        mean_rel / n,
        _index(a, r.shape),
        _index(ra, r.shape),
        float(x.reshape(-1)[ra]),
        float(r.reshape(-1)[ra]),
        bias / n,
        dots.systematic(),
    )


class _Dots:
    """The dot products ``_systematic`` needs, summed over chunks: eᵀe, XᵀX and Xᵀe for X = [scale, offset]."""

    def __init__(self) -> None:
        self.energy = 0.0
        self.gram = [[0.0, 0.0], [0.0, 0.0]]
        self.proj = [0.0, 0.0]

    def add(self, e: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor) -> None:
        e, cols = e.reshape(-1), [scale.reshape(-1), offset.reshape(-1)]
        self.energy += float(e @ e)
        for i, c in enumerate(cols):
            self.proj[i] += float(c @ e)
            for j, d in enumerate(cols):
                self.gram[i][j] += float(c @ d)

    def systematic(self) -> float:
        """R² of the relative error e fitted by a wrong factor (e ∝ r/den) plus a wrong offset (e ∝ 1/den).

        Rounding to fewer bits errs independently of the value, so almost none of its
        error fits (measured: at most 0.01 over 3000 draws of TF32 bias+GELU, whose
        errors are strongly correlated along rows); a wrong constant, normalizer or
        offset fits almost entirely (≥ 0.99). A mean signed error is no test of this:
        on correlated errors it reached 0.84 of the mean error by chance.
        """
        energy = self.energy
        if energy == 0.0 or not math.isfinite(energy):
            return 0.0  # nothing to explain, or errors past float64's range: no rounding does that
        # From dot products only (outputs reach 10^8 elements): R² = bᵀ G⁺ b / eᵀe with G = XᵀX, b = Xᵀe,
        # both columns scaled to unit norm first so that G is well conditioned; pinv when r is constant.
        # A column whose norm is zero or not a normal float64 (r/den of an all-zero reference) explains nothing
        # and is dropped; entries divide by one norm at a time, because the product of two small norms underflows.
        kept = [(i, self.gram[i][i] ** 0.5) for i in range(2) if math.isfinite(self.gram[i][i])]
        kept = [(i, norm) for i, norm in kept if self.gram[i][i] >= _TINY64]
        if not kept:
            return 0.0
        gram = torch.tensor([[self.gram[i][j] / ni / nj for j, nj in kept] for i, ni in kept], dtype=torch.float64)
        proj = torch.tensor([self.proj[i] / ni for i, ni in kept], dtype=torch.float64)
        return min(1.0, max(0.0, float(proj @ torch.linalg.pinv(gram) @ proj) / energy))


def _systematic(e: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor) -> float:
    """``_Dots.systematic`` of whole tensors (one chunk)."""
    dots = _Dots()
    dots.add(e, scale, offset)
    return dots.systematic()


def _classes(x: torch.Tensor) -> torch.Tensor:
    """0 finite, 1 NaN, 2 +Inf, 3 -Inf."""
    c = torch.zeros(x.shape, dtype=torch.int8, device=x.device)
    c[x.isnan()] = 1
    c[x == float("inf")] = 2
    c[x == float("-inf")] = 3
    return c


def judge(
    cand: torch.Tensor,
    ref64: torch.Tensor,
    yardsticks: dict[str, torch.Tensor],
    *,
    exact: bool = False,
    memo: dict[Any, Any] | None = None,
    device: str | None = None,
    zero_scale: float | None = None,
) -> Verdict:
    """Compare one output. cand and the yardsticks have the output dtype; ref64 is float64.

    ``zero_scale``: the scale to judge an all-zero reference by, where it has one from elsewhere: at an
    extra size (a cross-entropy over one class is 0 whatever its inputs), the output's scale at the
    region's own sizes, so that a kernel's rounding there (1e-17 where Inductor happens to round to 0)
    is judged as rounding. Without it an all-zero reference is judged at the dtype's smallest normal.

    The tensors may live anywhere; the arithmetic streams through ``device`` (cand's by default) a chunk at
    a time. ``memo``, a dict kept with the references, holds what does not depend on the candidate (the
    reference's peak and rounding noise, the yardsticks' errors), so many calls on one draw compute it once.
    """
    dtype = cand.dtype
    dev = device or str(cand.device)
    if not dtype.is_floating_point:
        want = ref64.to(dtype)
        bad = cand != want
        for y in yardsticks.values():
            bad &= cand != y.to(dtype)
        if bool(bad.any()):
            j = int(bad.reshape(-1).nonzero()[0])
            return Verdict(
                False,
                "wrong_values",
                f"{int(bad.sum())} of {bad.numel()} elements differ; first at "
                f"{list(_index(j, cand.shape))}: got {cand.reshape(-1)[j].item()}, want {want.reshape(-1)[j].item()}",
            )
        return Verdict(True, "ok", "exact")
    memo = {} if memo is None else memo
    side = memo.get(dtype)
    if side is None:
        side = memo[dtype] = _reference_side(ref64, yardsticks, dtype, dev)
    peak = side["peak"]
    # Before anything of the candidate's is looked at: the verdict on a degenerate region is the region's.
    noise, by = side["noise"]
    if noise > 0.0 and peak <= noise:
        return Verdict(
            False,
            "degenerate_region",
            f"the float64 reference is zero up to rounding: its largest "
            f"magnitude {peak:.3g} is no larger than the error {by} makes in the region's own dtypes "
            f"({noise:.3g}), so its values are rounding noise that no kernel can be judged against; "
            "the region is not worth tuning (Inductor keeps it)",
        )
    count, first = 0, -1
    for start, (cc, rc, *ys) in _stream(dev, cand, ref64, *yardsticks.values()):
        cls_c = _classes(cc)
        bad = cls_c != _classes(rc.to(dtype))  # what a correctly rounded kernel stores: overflow shows as Inf
        for y in ys:
            bad &= cls_c != _classes(y)
        k = int(bad.sum())
        if k and first < 0:
            first = start + int(bad.nonzero()[0])
        count += k
    if count:
        return Verdict(
            False,
            "nan_mismatch",
            f"{count} of {cand.numel()} elements differ in NaN/Inf; first at "
            f"{list(_index(first, cand.shape))}: got {cand.reshape(-1)[first].double().item()}, "
            f"want {ref64.reshape(-1)[first].to(dtype).item()}",
        )
    scale = peak if peak > 0 else (zero_scale or torch.finfo(dtype).tiny)
    floor_rel, floor_abs = floors(dtype)
    if exact:
        floor_rel, floor_abs = unit_roundoff(dtype), 0.0
    if scale * floor_rel < _TINY64:  # fp64's smallest normal times its roundoff underflows: 0/0 where r is 0
        scale = _TINY64 / floor_rel
    ce = errors(cand, ref64, dtype, scale, floor_rel, dev)
    ye = side.get(("errors", scale, floor_rel))
    if ye is None:
        ye = side[("errors", scale, floor_rel)] = {
            name: errors(y, ref64, dtype, scale, floor_rel, dev) for name, y in yardsticks.items()
        }
    yard = [max((getattr(e, m) for e in ye.values()), default=0.0) for m in ("max_abs", "max_rel", "mean_rel")]
    bounds = (max(K_MAX * yard[0], floor_abs * scale), max(K_MAX * yard[1], 4 * floor_rel), max(K * yard[2], floor_rel))
    got = (ce.max_abs, ce.max_rel, ce.mean_rel)
    if all(g <= b for g, b in zip(got, bounds)):
        return Verdict(True, "ok", ce.text(), ce, ye)
    which = [n for n, g, b in zip(("max abs", "max rel", "mean rel"), got, bounds) if g > b]
    # In exact mode relative errors are small against a large constant; they say nothing about precision.
    # Rounding to fewer bits errs independently of the value; a wrong constant or offset fits a line.
    low = (
        not exact
        and ce.systematic < 0.5
        and ce.mean_rel <= LOW_PRECISION_BELOW.get(dtype, 0.0)
        and ce.max_rel < 2.0**-4
    )
    reason = "low_precision" if low else "wrong_values"
    detail = (
        f"{', '.join(which)} over the bound (abs {bounds[0]:.3g}, rel {bounds[1]:.3g}, mean {bounds[2]:.3g}"
        f"{', exact mode: the reference is nearly constant' if exact else ''}): candidate {ce.text()}; "
        + "; ".join(f"{name} {e.text()}" for name, e in ye.items())
    )
    return Verdict(False, reason, detail, ce, ye)


def _reference_side(
    ref64: torch.Tensor, yardsticks: dict[str, torch.Tensor], dtype: torch.dtype, device: str
) -> dict[Any, Any]:
    """What judging needs of the reference and the yardsticks alone: the reference's largest finite magnitude
    (where it rounds to a finite ``dtype`` value), and each yardstick's largest error against it where both
    are finite: the rounding noise of the region's computation in its own dtypes."""
    peak = 0.0
    noise = dict.fromkeys(yardsticks, 0.0)
    for _, (rc, *ys) in _stream(device, ref64, *yardsticks.values()):
        rc = rc.double()
        finite = rc.to(dtype).isfinite()
        if bool(finite.any()):
            peak = max(peak, float(rc[finite].abs().max()))
        for name, y in zip(yardsticks, ys):
            m = finite & y.isfinite()
            if bool(m.any()):
                noise[name] = max(noise[name], float((y.double()[m] - rc[m]).abs().max()))
    worst = max(((v, n) for n, v in noise.items()), default=(0.0, ""))
    return {"peak": peak, "noise": worst}


def spread(refs: list[torch.Tensor], device: str | None = None) -> float:
    """How much an output's reference moves across draws, relative to its scale (inf if it cannot tell).

    Streamed through ``device`` (the first reference's by default), like ``judge``.
    """
    if len(refs) < 2 or any(r.shape != refs[0].shape for r in refs[1:]):
        return float("inf")
    scale, worst, any_ok = 0.0, 0.0, False
    for _, (base, *others) in _stream(device or str(refs[0].device), *refs):
        base = base.double()
        ok = base.isfinite()
        if not bool(ok.any()):
            continue
        any_ok = True
        scale = max(scale, float(base[ok].abs().max()))
        for r in others:
            r = r.double()
            m = ok & r.isfinite()
            if bool(m.any()):
                worst = max(worst, float((r[m] - base[m]).abs().max()))
    if not any_ok:
        return float("inf")
    return worst / (scale or 1.0)


def unwritten(outs: list[torch.Tensor], fills: list[int | bool | None]) -> tuple[int, tuple[int, ...]] | None:
    """(count, first index) of elements still holding their call's poison, for one output across calls.

    ``fills[k]``: the value call k's marked poison put in fresh memory of this dtype (floats: the NaN's bits, as
    their signed integer view reads them), None where the call marked nothing. A float element is unwritten
    where it holds its call's NaN in any call; an integer or bool one where it holds every call's value, which
    takes two different values, since a written constant can equal one.
    """
    first = outs[0]
    marked = [(o, f) for o, f in zip(outs, fills) if f is not None]
    if first.numel() == 0 or not marked or first.dtype.is_complex:
        return None
    if first.dtype in NAN_LAYOUT:
        int_dtype = NAN_LAYOUT[first.dtype][0]
        hit = torch.zeros(first.shape, dtype=torch.bool, device=first.device)
        for o, f in marked:
            hit |= o.view(int_dtype) == f
    elif first.dtype.is_floating_point:
        return None  # fp8: a NaN is a NaN; the NaN check reports it
    else:
        if len({f for _, f in marked}) < 2:
            return None
        hit = torch.ones(first.shape, dtype=torch.bool, device=first.device)
        for o, f in marked:
            hit &= o == f
    if not bool(hit.any()):
        return None
    return int(hit.sum()), _index(int(hit.reshape(-1).nonzero()[0]), first.shape)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.is_floating_point:
        view = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.int8}[a.element_size()]
        return torch.equal(a.contiguous().view(view), b.contiguous().view(view))
    return torch.equal(a, b)


def strides_match(shape: tuple[int, ...], got: tuple[int, ...], want: tuple[int, ...]) -> bool:
    """Strides of dims of size 1 carry no meaning; every other stride must match."""
    if any(s == 0 for s in shape):
        return True
    return all(g == w for s, g, w in zip(shape, got, want) if s != 1)
