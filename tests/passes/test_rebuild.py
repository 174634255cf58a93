"""Every region the pass keys can be rebuilt from its key alone (passes/README.md, invariant 8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import llm_inductor
from llm_inductor.cache.key import KernelKey
from llm_inductor.compile import state as _state
from llm_inductor.passes.rebuild import KeyGraphError, Program, rebuild
from support.util import Block


def _export(tmp_path: Path, fn, *inputs, dynamic: bool | None = None, training: bool = False) -> list[Path]:
    with _state.overridden(export_dir=str(tmp_path / "regions")):
        compiled = torch.compile(fn, backend=llm_inductor.backend(mode="discover", min_region_us=0), dynamic=dynamic)
        if training:
            compiled(*inputs).sum().backward()
        else:
            with torch.no_grad():
                compiled(*inputs)
    return sorted((tmp_path / "regions").glob("region_*.py"))


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_every_region_of_a_training_step_rebuilds_to_its_key_and_source(tmp_path, dynamic):
    torch.manual_seed(0)
    regions = _export(tmp_path, Block(), torch.randn(2, 6, 32), dynamic=dynamic, training=True)
    assert len(regions) >= 8
    for py in regions:
        meta = json.loads(py.with_suffix(".json").read_text())
        info = rebuild(KernelKey.from_dict(meta["key_fields"]), meta["symbols"])
        assert info.digest == meta["key"]
        assert info.source() == py.read_text()  # the region file this package writes, byte for byte


def test_the_program_computes_what_the_region_file_computes(tmp_path):
    """Program runs the key's ops on real tensors (the runtime fallback), at other sizes too."""

    def loss(logits, target):
        return F.cross_entropy(logits.float(), target)

    (py,) = _export(tmp_path, loss, torch.randn(6, 40, dtype=torch.bfloat16), torch.randint(0, 40, (6,)), dynamic=True)
    meta = json.loads(py.with_suffix(".json").read_text())
    program = Program(KernelKey.from_dict(meta["key_fields"]))
    namespace: dict = {}
    exec(compile(py.read_text(), str(py), "exec"), namespace)  # our own region file
    for sizes in (None, {s: v + 3 for s, v in meta["symbols"].items()}):
        inputs = namespace["make_inputs"](seed=1, sizes=sizes)
        want = namespace["forward"](*inputs)
        got = program(*inputs)
        assert len(got) == 1 and torch.equal(got[0], want)


def test_sizes_come_from_the_caller_and_must_be_real_sizes(tmp_path):
    (py,) = _export(tmp_path, lambda x: torch.softmax(x, -1), torch.randn(5, 7), dynamic=True)
    key = KernelKey.from_dict(json.loads(py.with_suffix(".json").read_text())["key_fields"])
    assert rebuild(key, {"s0": 9, "s1": 11}).symbols == {"s0": 9, "s1": 11}
    for sizes in ({}, {"s0": 9}, {"s0": 1, "s1": 11}, {"s0": "9", "s1": 11}):
        with pytest.raises(KeyGraphError) as e:
            rebuild(key, sizes)
        assert e.value.reason == "sizes"
