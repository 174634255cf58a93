"""Cheating candidates against real region files: each is rejected for the right reason.

Every cheat is verified twice when the static policy catches it: once as the
tuner runs (policy on) and once with the policy switched off, to show that the
dynamic layer stops it on its own. Cheats the policy admits (legal Triton that
computes the wrong thing) are verified once; that run is already the dynamic
layer alone. The docstring of each file in tests/data/adversarial/ says what it does.
"""

from __future__ import annotations

import pytest
import torch

from llm_inductor.verify.engine import verify
from llm_inductor.verify.loaded_region import load_region
from llm_inductor.verify.policy import check_source
from support.paths import ADVERSARIAL, REGIONS

# One kernel-cache path for the session: each verification takes the spare worker the last one started
# (tests/verify/conftest.py says why).
pytestmark = pytest.mark.usefixtures("one_kernel_cache_path")

# cheat → (region, reason with the static policy on, reason with it off)
CHEATS = {
    "n_calls_then_wrong": ("softmax", "policy:global_state", "stateful"),
    "seed0_replay": ("sumsq_dyn", "policy:torch_attr", "stale_output"),
    "patch_torch": ("softmax", "policy:monkeypatch", "tamper"),
    "low_precision": ("softmax", "low_precision", "low_precision"),
    "tf32_dot": ("bias_gelu", "low_precision", "low_precision"),  # needs the worker's TF32 emulation
    "unwritten_empty": ("rmsnorm", "unwritten_output", "unwritten_output"),
    "partial_write": ("rmsnorm", "unwritten_output", "unwritten_output"),
    "zeros_output": ("softmax", "wrong_values", "wrong_values"),
    "constant_output": ("offset_tanh", "wrong_values", "wrong_values"),
    "mutates_input": ("softmax", "input_mutated", "input_mutated"),
    "thread_compute": ("softmax", "policy:thread", "thread"),
    "torch_fallback": ("softmax", "policy:try_except", "torch_compute"),
    "cached_output": ("softmax", "policy:global_state", "cached_output"),
    "fits_one_shape": ("sumsq_dyn", "wrong_at_size", "wrong_at_size"),
    "no_launch": ("softmax", "no_launch", "no_launch"),
    "torch_compute": ("rmsnorm", "policy:torch_attr", "torch_compute"),
    "nondeterministic": ("softmax", "policy:global_state", "nondeterministic"),
    "wrong_strides": ("softmax", "stride_mismatch", "stride_mismatch"),
    "nan_to_zero": ("softmax", "nan_mismatch", "nan_mismatch"),
    "import_compute": ("softmax", "policy:global_state", "torch_compute"),
    "side_stream": ("softmax", "policy:stream", None),  # the dynamic check needs a GPU: test_side_stream_on_gpu
    # Callables Triton calls during a launch are candidate code: the guard stays on, state is refused.
    "heuristic_compute": ("rmsnorm", "torch_compute", "torch_compute"),
    "grid_compute": ("rmsnorm", "torch_compute", "torch_compute"),
    "heuristic_state": ("softmax", "policy:global_state", "stateful"),
    "pre_hook_state": ("softmax", "policy:global_state", "stateful"),
    # Kernels that tell the verifier's poison from real memory.
    "poison_bits": ("softmax", "wrong_values", "wrong_values"),
    "poison_sniff": ("softmax", "uninitialized_read", "uninitialized_read"),
}


def source(name: str, region: str) -> str:
    text = (ADVERSARIAL / f"{name}.py").read_text()
    if "__SEED0_OUTPUT__" in text:  # the memorized answer: forward on make_inputs(seed=0)
        r = load_region(REGIONS / f"region_{region}.py")
        with torch.no_grad():
            out = r.forward(*r.make_inputs(seed=0))
        text = text.replace("__SEED0_OUTPUT__", repr(tuple(float(v) for v in out)))
    return text


def test_the_suite_covers_the_field():
    assert len(CHEATS) >= 14
    assert {p.stem for p in ADVERSARIAL.glob("*.py")} >= set(CHEATS)


@pytest.mark.parametrize("name", sorted(CHEATS))
def test_cheat_is_rejected_for_the_right_reason(name):
    region, static_reason, dynamic_reason = CHEATS[name]
    src = source(name, region)
    violations = check_source(src)
    if static_reason.startswith("policy:"):
        assert violations and violations[0].code == static_reason, violations
    else:
        assert violations == [], f"the policy should admit {name}: the dynamic layer must catch it"
    result = verify(REGIONS / f"region_{region}.py", src, device="cpu")
    assert not result.accepted
    assert result.reason == static_reason, result.message
    failed = [c for c in result.checks if not c.passed]
    assert len(failed) == 1 and failed[0].detail  # one named check failed, and says why
    if dynamic_reason is None or not static_reason.startswith("policy:"):
        return
    alone = verify(REGIONS / f"region_{region}.py", src, device="cpu", static_policy=False)
    assert not alone.accepted
    assert alone.reason == dynamic_reason, alone.message
    assert alone.check("policy").detail.startswith("skipped")


def test_messages_say_where_and_by_how_much():
    result = verify(REGIONS / "region_softmax.py", source("low_precision", "softmax"), device="cpu")
    assert result.reason == "low_precision"
    assert "draw 'normal'" in result.message and "max abs" in result.message and "inductor" in result.message
    feedback = result.feedback()
    assert "low_precision" in feedback and "lower precision" in feedback


@pytest.mark.gpu
def test_side_stream_on_gpu():
    alone = verify(
        REGIONS / "region_softmax.py", source("side_stream", "softmax"), device="cuda", static_policy=False, speed=False
    )
    assert alone.reason == "stream", alone.message


_DYNAMIC_ON_GPU = sorted(n for n, (_, _, reason) in CHEATS.items() if reason is not None and n != "tf32_dot")


@pytest.mark.gpu
@pytest.mark.parametrize("name", _DYNAMIC_ON_GPU)
def test_cheat_is_rejected_by_the_dynamic_layer_on_the_gpu(name):
    """On a GPU the kernels run for real (no interpreter to refuse inline asm or hooks): the
    guard, the poison and the checks alone, policy off, still reject every cheat for its reason.
    (tf32_dot is left out: the CPU test needs the worker's TF32 emulation; on the GPU TF32 is real.)"""
    region, static_reason, dynamic_reason = CHEATS[name]
    result = verify(
        REGIONS / f"region_{region}.py", source(name, region), device="cuda", static_policy=False, speed=False
    )
    assert not result.accepted
    assert result.reason == dynamic_reason, result.message
