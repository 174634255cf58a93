"""The verifier on a GPU: timing against Inductor, and crashes that only a GPU has. Skipped without CUDA."""

from __future__ import annotations

import pytest

from llm_inductor.verify.engine import verify
from support.paths import ADVERSARIAL, KERNELS, REGIONS

pytestmark = pytest.mark.gpu


def test_a_correct_kernel_is_timed_against_inductor():
    result = verify(
        REGIONS / "region_softmax_bf16_wide.py",
        (KERNELS / "softmax.py").read_text(),
        device="cuda",
        extra_inductor_modes=("max-autotune-no-cudagraphs",),
    )
    # Tiny shapes are launch-bound: either verdict is right, as long as it is a speed verdict.
    assert result.reason in ("ok", "slower"), result.message
    assert result.check("post_timing").passed
    t = result.timings
    assert t["candidate_ms"] > 0 and t["inductor_ms"] > 0 and len(t["measurements"]) == 2
    assert 0 < t["pct_of_roofline"] and t["bandwidth"] > 1e12
    assert "max-autotune-no-cudagraphs" in t["extra_modes"]
    assert result.versions["gpu"] and result.versions["interpreter"] is False


def test_illegal_memory_access_is_a_crash_and_the_parent_goes_on():
    wild = (ADVERSARIAL / "wild_store.py").read_text()
    result = verify(REGIONS / "region_softmax.py", wild, device="cuda", speed=False)
    assert result.reason == "crash", result.message
    good = verify(REGIONS / "region_softmax.py", (KERNELS / "softmax.py").read_text(), device="cuda", speed=False)
    assert good.accepted, good.feedback()


def test_unwritten_output_on_gpu():
    result = verify(
        REGIONS / "region_rmsnorm.py", (ADVERSARIAL / "unwritten_empty.py").read_text(), device="cuda", speed=False
    )
    assert result.reason == "unwritten_output"
