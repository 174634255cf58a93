"""A region whose reference is zero up to rounding gets a clean, named verdict: the region's, never an exception.

The region is ``(x - x.mean(-1, keepdim=True)).sum(-1)`` on 6x32 fp32 rows, from a real compile: its float64
reference is exactly 0 (32 is a power of two, so the mean and the differences are exact in float64), while
eager's and Inductor's fp32 sums are rounding noise around 1e-6. Before, the scale-or-offset fit divided by
the product of two clamped norms, which underflowed to 0.0: ZeroDivisionError, exit 3.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from llm_inductor.cli import main
from llm_inductor.compile.state import overridden
from llm_inductor.verify.compare import _systematic, judge
from llm_inductor.verify.engine import verify
from llm_inductor.verify.result import REASONS, REGION_REASONS
from support.paths import KERNELS
from support.util import regions_of

# One kernel-cache path for the session: each verification takes the spare worker the last one started
# (tests/verify/conftest.py says why).
pytestmark = pytest.mark.usefixtures("one_kernel_cache_path")

_BUILT: list[Path] = []


@pytest.fixture
def region(tmp_path: Path) -> Path:
    """The centered-sum region file a discover-mode compile writes, built once per session."""
    if not _BUILT or not _BUILT[0].is_file():
        with overridden(export_dir=str(tmp_path / "regions")):
            (row,) = regions_of(lambda x: (x - x.mean(-1, keepdim=True)).sum(-1), torch.randn(6, 32))
        assert row.ops == ["mean", "sub", "sum"] and row.region_path
        _BUILT[:] = [Path(row.region_path)]
    return _BUILT[0]


CORRECT = (KERNELS / "centered_sum.py").read_text()
STORE = "tl.store(out_ptr + row, tl.sum(centered, axis=0).to(out_ptr.dtype.element_ty))"
ROW_SUM = CORRECT.replace(STORE, "tl.store(out_ptr + row, tl.sum(x, axis=0).to(out_ptr.dtype.element_ty))")
ONES = CORRECT.replace(STORE, "tl.store(out_ptr + row, (tl.sum(centered, axis=0) * 0.0 + 1.0).to(tl.float32))")


def _noise(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """An exactly zero float64 reference and an fp32 yardstick that is rounding noise around it."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 32, generator=g)
    return torch.zeros(n, dtype=torch.float64), (x - x.mean(-1, keepdim=True)).sum(-1)


# ----------------------------------------------------------------------------- the comparison, on tensors


def test_an_all_zero_reference_no_longer_divides_by_zero():
    zero = torch.zeros(6, dtype=torch.float64)
    exact = torch.zeros(6)  # a yardstick that is exactly right: x - x, not rounding noise
    v = judge(torch.ones(6), zero, {"inductor": exact})
    assert not v.ok and v.reason == "wrong_values" and math.isfinite(v.cand.systematic)
    assert v.cand.systematic > 0.99  # a constant where zero is due: an offset, fully explained
    assert judge(torch.zeros(6), zero, {"inductor": exact}).ok
    for exact_mode in (False, True):  # float64 outputs: the floor S*floor_rel must not underflow to 0/0
        z64 = torch.zeros(6, dtype=torch.float64)
        ok = judge(z64.clone(), zero, {"inductor": z64}, exact=exact_mode)
        assert ok.ok and ok.cand.mean_rel == 0.0, ok.detail
        bad = judge(z64 + 1e-300, zero, {"inductor": z64}, exact=exact_mode)
        assert not bad.ok and bad.reason == "wrong_values" and not math.isnan(bad.cand.mean_rel), bad.detail


def test_the_fit_drops_a_column_that_explains_nothing():
    e = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    zero, ones = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    # r/den of an all-zero reference is a zero column (its clamped norm squared was 0.0, the ZeroDivisionError).
    assert _systematic(e, zero, e * 1e-150) == pytest.approx(1.0)  # a small column still explains what it fits
    assert _systematic(e, zero, e * 1e-170) == 0.0  # one whose norm squared is no normal float64 is dropped
    assert _systematic(e, zero, zero) == 0.0
    assert 0.0 < _systematic(e, zero, ones) < 1.0


@pytest.mark.parametrize("name", ["correct", "garbage", "nan"])
def test_a_reference_of_rounding_noise_is_the_regions_verdict_whatever_the_candidate(name):
    ref, yard = _noise()
    cand = {"correct": yard.flip(0), "garbage": torch.full((6,), 3.0), "nan": torch.full((6,), float("nan"))}[name]
    v = judge(cand, ref, {"inductor": yard, "eager": yard.flip(0)})
    assert not v.ok and v.reason == "degenerate_region" and v.reason in REASONS and v.reason in REGION_REASONS
    assert "zero up to rounding" in v.detail and "not worth tuning" in v.detail


def test_degenerate_means_no_value_rises_above_the_yardsticks_error():
    yard = torch.tensor([2.0, 1.0, -1.0])  # errs by 1 where the reference is 0
    above = torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64)  # peak 2 > error 1: judged as before
    assert judge(torch.full((3,), 100.0), above, {"inductor": yard}).reason == "wrong_values"
    at = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)  # peak 1 = error 1: rounding noise
    assert judge(torch.full((3,), 3.0), at, {"inductor": yard + torch.tensor([-1.0, 0.0, 0.0])}).reason == (
        "degenerate_region"
    )


# ----------------------------------------------------------------------------- the engine, on a real region


@pytest.mark.parametrize("name", ["correct", "row_sum"])
def test_a_degenerate_region_gets_a_clean_named_verdict(region, name):
    result = verify(region, {"correct": CORRECT, "row_sum": ROW_SUM}[name], device="cpu")
    assert not result.accepted and not result.harness_failure
    assert result.reason == "degenerate_region", result.message
    assert "zero up to rounding" in result.message and "not worth tuning" in result.message
    failed = [c for c in result.checks if not c.passed]
    assert [c.name for c in failed] == ["values"]  # one named check, before any of the candidate's values counted
    assert result.summary().startswith("not judged (degenerate_region)")


def test_verify_cli_reports_a_degenerate_region_as_a_negative_not_an_internal_error(region, tmp_path, capsys):
    candidate = tmp_path / "ones.py"
    candidate.write_text(ONES)
    assert main(["verify", str(region), str(candidate), "--device", "cpu"]) == 1
    out, err = capsys.readouterr()
    assert "not judged (degenerate_region)" in out and "not worth tuning" in err
    assert "internal error" not in err and "ZeroDivisionError" not in out + err
