"""``llm-inductor verify``: exit codes 0 (accepted), 1 (rejected), 2 (bad input), and --json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llm_inductor.cli import main
from support.paths import ADVERSARIAL, KERNELS, REGIONS

# One kernel-cache path for the session: each verification takes the spare worker the last one started
# (tests/verify/conftest.py says why).
pytestmark = pytest.mark.usefixtures("one_kernel_cache_path")


def test_accepted_is_exit_0_and_a_region_without_sidecar_is_traced(capsys):
    region = REGIONS / "region_offset_tanh.py"
    assert not region.with_suffix(".json").exists()
    assert main(["verify", str(region), str(KERNELS / "offset_tanh.py"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("accepted on cpu") and "ok   values" in out


def test_rejected_is_exit_1_and_json_is_the_full_record(capsys):
    code = main(
        ["verify", str(REGIONS / "region_softmax.py"), str(ADVERSARIAL / "zeros_output.py"), "--json", "--no-speed"]
    )
    captured = capsys.readouterr()
    assert code == 1
    record = json.loads(captured.out)
    assert record["accepted"] is False and record["reason"] == "wrong_values"
    assert {"checks", "timings", "envelope", "versions", "device", "message"} <= set(record)
    assert "rejected (wrong_values)" in captured.err


def test_policy_rejection_is_exit_1_before_any_worker(capsys):
    code = main(["verify", str(REGIONS / "region_softmax.py"), str(ADVERSARIAL / "crash_exit.py")])
    assert code == 1
    assert "policy:process" in capsys.readouterr().out


@pytest.mark.parametrize(
    "make_region, message",
    [
        (lambda d: d / "missing.py", "does not exist"),
        (lambda d: _write(d / "r.py", "import torch\ndef forward(x:\n    return x\n"), "syntax error at line 2"),
        (lambda d: _write(d / "r.py", "import torch\ndef forward(x):\n    return x\n"), "lacks make_inputs"),
        (
            lambda d: _write(
                d / "r.py",
                "import torch\ndef make_inputs(seed=0, device='cpu', sizes=None):\n    return (torch.ones(3),)\n",
            ),
            "lacks forward",
        ),
        (
            lambda d: _write(
                d / "r.py",
                "import torch\ndef forward(x):\n    return x @ x\n"
                "def make_inputs(seed=0, device='cpu', sizes=None):\n"
                "    return (torch.ones(3, 4),)\n",
            ),
            "forward fails on make_inputs()",
        ),
    ],
    ids=["missing", "syntax", "no-make_inputs", "no-forward", "broken-forward"],
)
def test_bad_region_is_exit_2(tmp_path, capsys, make_region, message):
    region = make_region(tmp_path)
    assert main(["verify", str(region), str(KERNELS / "softmax.py")]) == 2
    assert message in capsys.readouterr().err


def test_missing_candidate_is_exit_2(capsys):
    assert main(["verify", str(REGIONS / "region_softmax.py"), "/no/such/candidate.py"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cuda_without_a_gpu_is_exit_2(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["verify", str(REGIONS / "region_softmax.py"), str(KERNELS / "softmax.py"), "--device", "cuda"]) == 2
    assert "--device cpu" in capsys.readouterr().err


def test_installed_entry_point_maps_exit_codes():
    proc = subprocess.run(
        [sys.executable, "-m", "llm_inductor.cli", "verify", "/no/region.py", "/no/cand.py"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
