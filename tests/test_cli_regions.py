"""`llm-inductor regions`: the region map of a script, exit codes per DESIGN.md, and the entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys, torch
    n = int(sys.argv[1])
    model = torch.nn.Sequential(torch.nn.Linear(16, 24), torch.nn.LayerNorm(24), torch.nn.GELU())
    compiled = torch.compile(model, backend="inductor", mode="max-autotune-no-cudagraphs")
    with torch.no_grad():
        compiled(torch.randn(n, 16))
    """
)


def cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, LLM_INDUCTOR_MIN_REGION_US="0")
    return subprocess.run(
        [sys.executable, "-m", "llm_inductor.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_regions_maps_and_exports_every_compiled_graph(tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    out = cli("regions", "--json", "--export", "exported", "train.py", "6", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    (graph,) = report["graphs"]
    assert graph["kind"] == "inference" and len(graph["regions"]) == 2
    norm = next(r for r in graph["regions"] if "var_mean" in r["ops"])
    assert norm["shapes"] == ["float32[6,24]", "float32[24]", "float32[24]"] and norm["status"] == "miss"
    assert abs(sum(r["share"] for r in graph["regions"]) - 1) < 1e-6
    exported = sorted(p.name for p in (tmp_path / "exported").iterdir())
    assert len(exported) == 4 and all(p.startswith("region_") for p in exported)

    text = cli("regions", "train.py", "6", cwd=tmp_path)
    assert text.returncode == 0
    assert "graph 0 (inference): 2 region(s)" in text.stdout and norm["key16"] in text.stdout


@pytest.mark.parametrize(
    "script, args, message",
    [
        (None, ["missing.py"], "script not found"),
        ("raise ValueError('bad input')\n", ["bad.py"], "ValueError: bad input"),
        ("import sys; sys.exit(4)\n", ["bad.py"], "exited with status 4"),
    ],
)
def test_bad_scripts_exit_2_with_a_clear_message(tmp_path, script, args, message):
    if script:
        (tmp_path / "bad.py").write_text(script)
    out = cli("regions", *args, cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_timeout_stops_a_long_script_and_reports_what_compiled(tmp_path):
    (tmp_path / "slow.py").write_text(SCRIPT + "\nimport time\ntime.sleep(600)\n")
    out = cli("regions", "--timeout", "45", "--json", "slow.py", "3", cwd=tmp_path, timeout=200)
    assert out.returncode == 0, out.stderr
    assert "ran past --timeout" in out.stderr
    assert json.loads(out.stdout)["finished"] is False and len(json.loads(out.stdout)["graphs"]) == 1


def test_bad_setting_is_a_usage_error(tmp_path):
    (tmp_path / "ok.py").write_text("print('hi')\n")
    env = dict(os.environ, LLM_INDUCTOR_MODE="fastest")
    out = subprocess.run([sys.executable, "-m", "llm_inductor.cli", "regions", "ok.py"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 2 and "Valid modes" in out.stderr


def test_backend_llm_is_registered_by_the_entry_point(tmp_path):
    """A script that never imports llm_inductor gets the backend by name."""
    code = textwrap.dedent(
        """
        import sys, torch
        assert "llm_inductor" not in sys.modules
        f = torch.compile(lambda x: torch.softmax(x * 2, -1), backend="llm")
        x = torch.randn(3, 5)
        torch.testing.assert_close(f(x), torch.softmax(x * 2, -1))
        import llm_inductor
        print(llm_inductor.stats()["graphs"], "llm" in torch._dynamo.list_backends())
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1", "True"]
