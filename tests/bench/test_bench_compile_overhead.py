"""benchmarks/studies/compile_overhead.py on CPU: it runs, writes its files, and its "hit" really rewrites the graph.

Times measured here mean nothing (no GPU); the test checks what the numbers are of:
a miss compiles with every region pending and nothing substituted, a hit with the
exported regions served from the store, and both recompile warm after a reset.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support.paths import ROOT


@pytest.mark.timeout(600)
def test_mlp_miss_and_hit_on_the_cpu(tmp_path):
    out = tmp_path / "overhead.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "studies" / "compile_overhead.py"),
        "--device",
        "cpu",
        "--models",
        "mlp",
        "--reps",
        "1",
        "--out",
        str(out),
        "--git-commit",
        "0" * 40,
    ]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=580)
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["device"] == "cpu" and doc["git_commit"] == "0" * 40 and doc["reps"] == 1
    (row,) = doc["rows"]
    miss, hit = row["llm_miss_stats"], row["llm_hit_stats"]
    assert miss["substituted"] == 0 and miss["pending"] > 0
    assert hit["substituted"] == hit["regions"] == miss["regions"] > 0 and hit["pending"] == 0 and hit["fallbacks"] == 0
    for label in ("inductor", "llm_miss", "llm_hit"):
        assert row[label] > row[f"{label}_warm"] > 0, row
    assert 0 < row["llm_miss_family_s"] <= row["llm_miss_pass_s"]  # the family keys, inside the pass's time
    assert row["llm_miss_pass_s"] > 0 and row["overhead_hit"] == pytest.approx(row["llm_hit"] / row["inductor"] - 1)
    table = out.with_suffix(".md").read_text()
    assert f"| {hit['substituted']} of {hit['regions']} |" in table and "| mlp |" in table and "Warm recompile" in table
    assert "family keys" in table
