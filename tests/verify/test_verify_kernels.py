"""Correct hand-written kernels are accepted on the CPU, under the Triton interpreter, against real region files."""

from __future__ import annotations

import json

import pytest

from llm_inductor.verify.engine import verify
from support.paths import KERNELS, REGIONS

# One kernel-cache path for the session: each verification takes the spare worker the last one started
# (tests/verify/conftest.py says why).
pytestmark = pytest.mark.usefixtures("one_kernel_cache_path")

# (candidate, region): the region files came from compiling small models with backend="llm"
# (benchmarks/studies/make_regions.py), except offset_tanh, hand-written and without a sidecar.
CASES = [
    ("rmsnorm", "rmsnorm"),  # 6x42x123 fp32
    ("rmsnorm", "rmsnorm_bf16"),  # the same kernel, bf16 in and out, fp32 inside
    ("softmax", "softmax"),  # 33x781
    ("softmax", "softmax_bf16_wide"),  # 5x9001 bf16 in and out, fp32 math: the two-pass path
    ("bias_gelu", "bias_gelu"),  # addmm 33x48 @ 48x40 + bias, erf GELU epilogue
    ("cross_entropy", "cross_entropy"),  # 33x781 logits, int64 targets
    ("cross_entropy", "cross_entropy_bf16_wide"),  # 6x9001 bf16 logits, several chunks per row
    ("rope", "rope"),  # 2x3x17x32
    ("sumsq_dyn", "sumsq_dyn"),  # 6 x s0, s0 symbolic (781 seen)
    ("offset_tanh", "offset_tanh"),  # nearly constant reference, traced specs
]


@pytest.mark.parametrize("kernel, region", CASES, ids=[f"{k}-{r}" for k, r in CASES])
def test_correct_kernel_is_accepted(kernel, region):
    result = verify(REGIONS / f"region_{region}.py", (KERNELS / f"{kernel}.py").read_text(), device="cpu")
    assert result.accepted, result.feedback()
    assert result.reason == "ok"
    passed = {c.name for c in result.checks if c.passed}
    assert {
        "policy",
        "import",
        "launch",
        "guard",
        "outputs",
        "written",
        "inputs_unchanged",
        "values",
        "nan_inf",
        "deterministic",
        "recheck",
    } <= passed
    assert all(c.passed for c in result.checks)
    assert result.timings == {}  # speed is never judged under the interpreter
    assert result.versions["interpreter"] is True and result.device == "cpu"
    draws = result.envelope["draws"]
    assert len({d["name"] for d in draws}) == len(draws) >= 6
    assert not any("seed" in d for d in draws)  # the envelope travels with the entry: seeds stay in the parent
    assert {d["dist"] for d in draws} >= {"normal", "x100", "x0.01", "positive", "mixed", "nan_inf"}
    json.dumps(result.to_dict())  # the record goes into cache entries as JSON
    if region == "sumsq_dyn":  # each symbolic dim at 1 and odd non-powers of two around the size seen
        assert result.envelope["sizes"] == {"s0": [1, 391, 781, 1171]}
        assert not result.envelope["static_shapes"] and "s0=1171" in result.check("sizes").detail
    else:
        assert result.envelope["static_shapes"] and result.check("sizes") is None
    spread = result.check("reference_spread").detail
    assert ("nearly constant" in spread) == (region == "offset_tanh")
