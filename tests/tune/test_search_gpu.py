"""The search's GPU-only parts on a real GPU: Inductor's kernel and time for the prompt, the in-graph gate.

Skipped without CUDA (conftest). On the GPU box: ``python -m pytest -q tests/tune/test_search_gpu.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import llm_inductor
from llm_inductor.cache.entry import Entry
from llm_inductor.compile import state as _state
from llm_inductor.config import Config
from llm_inductor.search.baseline import inductor_baseline
from llm_inductor.search.gate import in_graph_gate, status_for
from llm_inductor.search.graphs import graph_for, record_graph
from llm_inductor.search.winners import versions
from support.search import GOOD

pytestmark = pytest.mark.gpu


def _cuda_region(tmp_path: Path) -> tuple[Path, Config]:
    """An fp32 RMSNorm (4096 x 4096) followed by a matmul, compiled on the GPU; its region and graph files."""
    cfg, _ = Config.load({"min_region_us": 0})
    hook = lambda gm, kind, infos: record_graph(gm, infos, cfg)  # noqa: E731
    w = torch.randn(4096, device="cuda")
    proj = torch.randn(4096, 256, device="cuda")
    with torch.no_grad(), _state.overridden(graph_hook=hook, export_dir=str(tmp_path / "regions")):
        torch.compile(
            lambda x: (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w) @ proj,
            backend=llm_inductor.backend(mode="discover", min_region_us=0),
        )(torch.randn(4096, 4096, device="cuda"))
    rows = [row for r in _state.reports for row in r.regions if row.region_path and "rsqrt" in row.ops]
    assert len(rows) == 1, [row.ops for r in _state.reports for row in r.regions]
    return Path(rows[0].region_path), cfg


def test_inductor_baseline_and_in_graph_gate_on_the_gpu(tmp_path):
    region, cfg = _cuda_region(tmp_path)
    ref = inductor_baseline(region, cfg.cache_path)
    assert ref["available"] and ref["kernels"] >= 1 and "@triton.jit" in ref["code"] and ref["inductor_ms"] > 0

    meta = json.loads(region.with_suffix(".json").read_text())
    key16 = meta["key16"]
    assert graph_for(key16, cfg) is not None
    entry = Entry(meta["key"], meta["key_fields"], GOOD, region.read_text(), meta, versions=versions("cuda"))
    gate = in_graph_gate(key16, entry, cfg, "cuda")
    assert gate["measured"], gate
    assert gate["substituted"] == 1 and gate["max_abs_diff"] < 1e-3
    assert gate["with_ms"] > 0 and gate["without_ms"] > 0
    assert status_for(gate) in ("served", "slows_graph")
    print("gate:", gate["note"])
