"""Inductor's FX graph cache never serves a graph compiled with another kernel set.

Three fresh processes share one Inductor cache directory:
1. compile with an empty store (a miss, the region stays with Inductor);
2. add a kernel to the store, compile again: the graph differs, so the FX cache misses,
   and the kernel is used;
3. compile again: the FX cache hits, and the kernel is still used and counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from llm_inductor.compile import state as _state
from support.paths import SUPPORT, TESTS
from support.util import RMSNorm, entry_for, regions_of


def phase(tmp_path: Path, entry: str, name: str) -> dict:
    out = tmp_path / f"{name}.json"
    env = dict(os.environ, PYTHONPATH=str(TESTS), TRITON_INTERPRET="1")
    proc = subprocess.run(
        [sys.executable, str(SUPPORT / "fx_cache_child.py"), entry, str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_fx_graph_cache_follows_the_kernel_set(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    first = phase(tmp_path, "-", "first")
    assert first["stats"]["misses"] == 1 and first["stats"]["kernel_calls"] == 0
    assert first["fx_miss"] >= 1 and first["fx_bypass"] == 0

    torch.manual_seed(0)
    with _state.overridden(export_dir=str(tmp_path / "regions")):
        (row,) = regions_of(RMSNorm(33), torch.randn(5, 33))
    entry_file = tmp_path / "entry.json"
    entry_file.write_text(entry_for(row.region_path, "rmsnorm.py").to_json())

    second = phase(tmp_path, str(entry_file), "second")
    assert second["stats"]["hits"] == 1 and second["stats"]["substituted"] == 1
    assert second["stats"]["kernel_calls"] == 1
    assert second["fx_hit"] == 0 and second["fx_miss"] >= 1, "a graph compiled without the kernel was served"
    assert second["err"] < 1e-5

    third = phase(tmp_path, str(entry_file), "third")
    assert third["fx_hit"] >= 1 and third["fx_miss"] == 0
    assert third["stats"]["hits"] == 1 and third["stats"]["substituted"] == 1
    assert third["stats"]["kernel_calls"] == 1
    assert third["err"] < 1e-5
