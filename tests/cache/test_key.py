"""KernelKey: equal for the same computation, different for anything a kernel depends on."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from llm_inductor.cache.key import KernelKey
from llm_inductor.compile import state as _state
from llm_inductor.passes.region import device_class
from support.paths import TESTS
from support.util import RMSNorm, regions_of


def key_of(fn, *inputs) -> str:
    rows = regions_of(fn, *inputs)
    assert len(rows) == 1, [r.ops for r in rows]
    return rows[0].key


def rms(x, w, eps=1e-6, power=2):
    return w * (x * torch.rsqrt(x.pow(power).mean(-1, keepdim=True) + eps))


def test_same_across_node_names_and_graph_position():
    x, w = torch.randn(4, 32), torch.randn(32)

    def renamed(inp, weight):  # other names, operands swapped, inside a bigger graph
        variance_of_input = inp.pow(2).mean(-1, keepdim=True)
        normalized = inp * torch.rsqrt(variance_of_input + 1e-6)
        return normalized * weight

    def surrounded(a, b, c):
        y = torch.mm(a, c)  # an anchor region first moves the norm down the graph
        return rms(y, b)

    base = key_of(rms, x, w)
    assert key_of(renamed, x, w) == base
    rows = regions_of(surrounded, torch.randn(4, 8), w, torch.randn(8, 32))
    assert base in [r.key for r in rows]


def test_same_across_processes(tmp_path):
    code = textwrap.dedent(
        """
        import sys, torch
        sys.path[:0] = sys.argv[1:3]
        from support.util import regions_of
        from test_key import rms
        print(regions_of(rms, torch.randn(4, 32), torch.randn(32))[0].key)
        """
    )
    # This process first: the child then finds the graph in Inductor's cache (this test's, which it shares) and
    # skips the C++ compile; the region pass, which makes the key, runs before that lookup either way. The child
    # has a kernel cache of its own, so AOTAutograd's cache (whose key names it) cannot replay this process's pass.
    here_key = key_of(rms, torch.randn(4, 32), torch.randn(32))
    env = dict(os.environ, LLM_INDUCTOR_CACHE_DIR=str(tmp_path / "child_cache"))
    here = os.path.dirname(__file__)
    out = subprocess.run(
        [sys.executable, "-c", code, str(TESTS), here], env=env, capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == here_key


def test_hf_llama_rmsnorm_matches_hand_written():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(hidden_size=48, intermediate_size=96, num_hidden_layers=1, num_attention_heads=4)
    model = transformers.LlamaForCausalLM(cfg)
    hf_norm = model.model.layers[0].input_layernorm  # the module as it sits in the model
    mine = RMSNorm(48, eps=cfg.rms_norm_eps)
    x = torch.randn(2, 7, 48)
    assert key_of(hf_norm, x) == key_of(mine, x)


@pytest.mark.parametrize(
    "change",
    ["op", "constant", "dtype", "static_shape", "stride_order"],
)
def test_differs_when_the_kernel_would(change):
    x, w = torch.randn(4, 32), torch.randn(32)
    base = key_of(rms, x, w)
    if change == "op":
        other = key_of(lambda x, w: rms(x, w, power=3), x, w)
    elif change == "constant":
        other = key_of(lambda x, w: rms(x, w, eps=1e-5), x, w)
    elif change == "dtype":
        other = key_of(rms, x.double(), w.double())
    elif change == "static_shape":
        other = key_of(rms, torch.randn(4, 33), torch.randn(33))
    else:
        other = key_of(rms, torch.randn(32, 4).t(), w)
    assert other != base


def sidecar_key(rows) -> dict:
    path = rows[0].region_path or pytest.fail("region was not exported")
    return json.loads(Path(path).with_suffix(".json").read_text())["key_fields"]


@pytest.fixture(autouse=True)
def _export_regions(tmp_path):
    with _state.overridden(export_dir=str(tmp_path / "regions")):
        yield


def test_differs_by_device_class_and_explains_why():
    rows = regions_of(rms, torch.randn(4, 32), torch.randn(32))
    assert device_class(torch.device("cpu")) == "cpu"
    key = KernelKey.from_dict(sidecar_key(rows))
    assert key.device == "cpu"
    gpu = dataclasses.replace(key, device="cuda:sm90")
    assert gpu.digest != key.digest
    diff = [line for line in gpu.debug_lines() if line not in key.debug_lines()]
    assert len(diff) == 1 and "device: cuda:sm90" in diff[0]


def test_key_round_trips_and_rejects_a_wrong_digest():
    rows = regions_of(rms, torch.randn(4, 32), torch.randn(32))
    fields = sidecar_key(rows)
    assert KernelKey.from_dict(fields).digest == rows[0].key
    fields["graph"][0] = fields["graph"][0].replace("2", "3")
    with pytest.raises(ValueError, match="do not hash to the recorded digest"):
        KernelKey.from_dict(fields)
