"""A region calling an op with no host kernel (cuDNN attention) gets a verdict on the region, never a harness error.

The float64 reference runs on the host. cuDNN's and flash attention's ops have CUDA kernels only (and take no
float64), so for a region holding one no candidate can be judged: on the H200 every candidate for GPT-2's
attention came back ``harness:verifier_error`` (NotImplementedError from the CPU backend), retried and fed
nothing. Now the verifier says ``no_host_reference`` before any candidate code is looked at, and the tuner
stops the region without asking the LLM for kernels it could never verify.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from llm_inductor.config import Config
from llm_inductor.search.search_state import load_state
from llm_inductor.search.tune import tune
from llm_inductor.verify.engine import verify
from llm_inductor.verify.reference import host_gaps
from llm_inductor.verify.result import REGION_REASONS
from support.search import GOOD, copy_region, shared_region, verifier

DATA = Path(__file__).resolve().parents[1] / "data"
CUDNN_REGION = DATA / "region_cudnn_attention.py"
CUDNN = "aten::_scaled_dot_product_cudnn_attention"


def test_the_ops_without_a_host_kernel_are_named():
    assert host_gaps(CUDNN_REGION.read_text()) == [CUDNN]
    plain = """
def forward(in0, in1):
    v0 = torch.ops.aten.bmm.default(in0, in1)
    v1 = torch.ops.aten.add.Tensor(v0, 1.0)
    v2 = torch.ops.prims.convert_element_type.default(v1, torch.bfloat16)
    v3 = torch.ops.aten.expand.default(v2, [2, 4, 4])
    return torch.ops.aten.amax.default(v3, [-1], True)
"""
    assert host_gaps(plain) == []  # CPU kernels and composites (expand, convert_element_type) run on the host
    assert host_gaps("torch.ops.aten.no_such_op.default(x)\ntorch.ops.aten._scaled_dot_product_flash_attention(x)") == [
        "aten::_scaled_dot_product_flash_attention"  # an unknown name is no gap; an overload packet is its default
    ]


@pytest.mark.parametrize(
    "candidate",
    [
        GOOD,  # whatever the candidate is, the region is the same
        "import os\nos.system('true')\ndef forward(in0, in1, in2):\n    return in0\n",
    ],
    ids=["plain", "policy-violating"],
)
def test_the_verdict_is_the_regions_before_any_candidate_code(candidate, monkeypatch):
    monkeypatch.setenv("LLM_INDUCTOR_INTERPRET", "1")
    r = verify(CUDNN_REGION, candidate, device="cpu")
    assert (r.accepted, r.reason, r.harness_failure) == (False, "no_host_reference", False)
    assert r.reason in REGION_REASONS
    assert CUDNN in r.message and "float64 reference cannot run" in r.message
    assert [c.name for c in r.checks] == ["references"]  # no policy, worker or draw ran


def test_the_tuner_stops_such_a_region_without_a_request(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_INDUCTOR_INTERPRET", "1")
    cfg, _ = Config.load({"candidates": 2, "rounds": 3})
    region = copy_region(shared_region(tmp_path), cfg.cache_path)
    # The shared region, with a cuDNN attention call (never reached) in its forward: the gap is in the source.
    source = region.read_text()
    head = re.search(r"def forward\((\w+)[^)]*\):\n", source)
    assert head is not None
    arg = head.group(1)
    op = "torch.ops.aten._scaled_dot_product_cudnn_attention.default"
    call = f"    if False:\n        {op}({arg}, {arg}, {arg}, None, False)\n"
    region.write_text(source[: head.end()] + call + source[head.end() :])

    requests = tmp_path / "requests.jsonl"
    report = tune([region], export_batch=requests, config=cfg, verifier=verifier(), progress=False)
    assert report.exported == 0 and not requests.exists()
    state = load_state(cfg, region.stem.removeprefix("region_"))
    assert state is not None and state.done.startswith("no_host_reference: ") and CUDNN in state.done
    assert state.outstanding == {} and state.attempts == []


# An op with a CPU kernel but no float64 case: the static check cannot see it, the float64 reference's call does.
@torch.library.custom_op("llm_inductor_test::no_double", mutates_args=(), device_types="cpu")
def _no_double(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.float64:
        raise RuntimeError("\"no_double_cpu\" not implemented for 'Double'")  # the dispatcher's words
    return x * 2


@_no_double.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


NO_DOUBLE_REGION = '''"""A region whose op has a CPU kernel with no float64 case."""
import torch

SYMBOLS = {}


def forward(in0):
    return torch.ops.llm_inductor_test.no_double.default(in0)


def make_inputs(seed=0, device="cpu", sizes=None):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(4, 8, generator=g).to(device),)
'''


DOUBLING = """import torch
import triton
import triton.language as tl


@triton.jit
def _double(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=offs < n) * 2, mask=offs < n)


def forward(in0):
    out = torch.empty_like(in0)
    _double[(triton.cdiv(in0.numel(), 64),)](in0, out, in0.numel(), BLOCK=64)
    return out
"""


def test_an_op_without_a_float64_case_is_the_regions_verdict_too(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_INDUCTOR_INTERPRET", "1")
    path = tmp_path / "region_no_double.py"
    path.write_text(NO_DOUBLE_REGION)
    assert host_gaps(NO_DOUBLE_REGION) == []  # it has a CPU kernel
    r = verify(path, DOUBLING, device="cpu")
    assert (r.accepted, r.reason, r.harness_failure) == (False, "no_host_reference", False), r.message
    assert "no_double_cpu takes no float64" in r.message
    assert r.check("references") is not None and not r.check("references").passed


def test_other_reference_errors_are_not_taken_for_a_missing_kernel():
    from llm_inductor.verify.reference import _NO_HOST

    assert (
        _NO_HOST.search(
            "Could not run 'aten::_scaled_dot_product_cudnn_attention' with arguments from the 'CPU'"
            " backend. This could be because"
        )["op"]
        == "aten::_scaled_dot_product_cudnn_attention"
    )
    assert _NO_HOST.search("mat1 and mat2 shapes cannot be multiplied (4x8 and 9x2)") is None
    assert _NO_HOST.search("Could not run 'aten::foo' with arguments from the 'CUDA' backend") is None


def test_verify_exits_1_naming_the_op(tmp_path, capsys, monkeypatch):
    from llm_inductor.cli import main

    monkeypatch.setenv("LLM_INDUCTOR_INTERPRET", "1")
    candidate = tmp_path / "candidate.py"
    candidate.write_text(GOOD)
    assert main(["verify", str(CUDNN_REGION), str(candidate), "--device", "cpu"]) == 1  # negative, not internal
    out, err = capsys.readouterr()
    assert "not judged (no_host_reference), whatever the candidate" in err and CUDNN in out
    assert "internal error" not in err and "Traceback" not in out + err
