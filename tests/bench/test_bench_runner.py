"""The benchmark runner on the CPU: failures become rows, resume and merge keep results, the budget stops cleanly.

The smoke test runs benchmarks/run.py itself with tiny shapes (correctness only):
a region with a backward pass and a transformers training step, through eager and
backend="llm", then resumes the finished file (nothing left to run). The other
compiled modes differ from llm only in torch.compile's arguments (modes.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest
import torch

from benchmarks import common  # noqa: E402
from benchmarks import run as runner
from benchmarks.common import Case, Step, Workload  # noqa: E402
from benchmarks.execute import CaseRun, OutOfBudget  # noqa: E402
from benchmarks.suites import cases as suite_cases  # noqa: E402
from support.paths import ROOT


def _double(t: torch.Tensor) -> torch.Tensor:
    return (t.to(torch.promote_types(t.dtype, torch.float32)) * 2).to(t.dtype)


def fake_case(name: str, compiled_behaviour: str, fp64_fails: bool = False) -> Case:
    """A case whose compiled modes misbehave on purpose, without compiling anything (fast)."""

    def build(device: str, tiny: bool) -> Workload:
        x = torch.randn(8, 33, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)

        def make_step(wrap):
            f = wrap(_double)
            if f is _double:  # eager
                return Step(outputs=lambda: [_double(x)], run=lambda: _double(x))
            if compiled_behaviour == "raise":

                def boom():
                    raise RuntimeError("boom: this op has no lowering")

                return Step(outputs=boom, run=boom)
            return Step(outputs=lambda: [_double(x) + 1], run=lambda: _double(x))  # "wrong"

        def reference(dtype):
            if fp64_fails and dtype == torch.float64:
                raise RuntimeError("Expected mat_a to be Float32, BFloat16 or Float16 matrix, got Double")
            return [_double(x.to(dtype)).float()]

        return Workload("fwd", make_step, reference, flops=0.0, bytes=4 * x.numel())

    return Case(name, "regions", "fwd", lambda tiny: "8x33", build)


def _run_case(case: Case, modes: list[str], budget=lambda c, m: None) -> list[dict]:
    saved = []
    env = {"device": "cpu", "tiny": True, "run_id": "test-run", "inductor_config": {}, "profile": False}
    CaseRun(case, env, lambda row: saved.append(dict(row)), budget).run(modes)
    return saved


def test_a_failing_mode_is_a_row_with_its_stage_and_error_and_is_not_timed():
    saved = _run_case(fake_case("boom", "raise"), ["eager", "inductor"])
    assert [r["status"] for r in saved] == ["running", "ok", "running", "failed"]  # written before and after each mode
    eager, failed = saved[1], saved[3]
    assert eager["median_ms"] > 0 and eager["check"]["ok"]
    assert failed["stage"] == "compile" and "boom: this op has no lowering" in failed["error"]
    assert "RuntimeError" in failed["traceback"] and "median_ms" not in failed


def test_an_incorrect_mode_is_reported_and_not_timed():
    saved = _run_case(fake_case("wrong", "wrong"), ["eager", "llm"])
    row = saved[-1]
    assert row["status"] == "incorrect" and row["stage"] == "check"
    assert not row["check"]["ok"] and row["check"]["worst"]["max_abs"] == pytest.approx(1.0, rel=0.02)
    assert "median_ms" not in row
    assert row["llm"]["stats"]["substituted"] == 0  # llm counters are recorded even when the output is wrong


def test_the_reference_falls_back_to_float32_and_says_why():
    saved = _run_case(fake_case("fp32ref", "wrong", fp64_fails=True), ["eager"])
    assert saved[-1]["status"] == "ok"
    assert saved[-1]["reference"].startswith("float32 (float64 failed: RuntimeError: Expected mat_a")


def test_the_budget_stops_before_a_mode_that_would_not_fit():
    def budget(case, mode):
        if mode == "inductor":
            raise OutOfBudget(f"{case.name}/{mode} needs about 10 s and 1 s are left")

    with pytest.raises(OutOfBudget):
        _run_case(fake_case("budget", "wrong"), ["eager", "inductor"], budget)


def test_resume_skips_done_rows_and_reruns_interrupted_ones():
    case = fake_case("c", "wrong")
    doc = common.empty_doc()
    for mode, status in (("eager", "ok"), ("inductor", "failed"), ("llm", "interrupted")):
        common.upsert(doc, {"suite": "regions", "case": "c", "mode": mode, "status": status})
    modes = ["eager", "inductor", "max-autotune", "llm"]
    assert runner.pending_modes(doc, case, modes, retry_failed=False) == ["max-autotune", "llm"]
    assert runner.pending_modes(doc, case, modes, retry_failed=True) == ["inductor", "max-autotune", "llm"]


def test_a_row_left_running_by_a_dead_process_becomes_failed():
    doc = common.empty_doc()
    common.upsert(doc, {"suite": "models", "case": "llama_train", "mode": "max-autotune", "status": "running"})
    runner._mark_dead(doc)
    row = doc["rows"][0]
    assert row["status"] == "failed" and "process ended inside this mode" in row["error"]


def test_merge_keeps_every_run_and_prefers_ok_rows_then_newer_ones():
    def row(mode, status, started, median):
        return {
            "suite": "regions",
            "case": "rope",
            "mode": mode,
            "status": status,
            "started": started,
            "median_ms": median,
            "run_id": f"r{started}",
        }

    a = {"schema": 1, "runs": {"r1": {}}, "rows": [row("inductor", "ok", 1, 0.08), row("llm", "failed", 1, None)]}
    b = {"schema": 1, "runs": {"r2": {}}, "rows": [row("inductor", "ok", 2, 0.07), row("llm", "ok", 2, 0.05)]}
    c = {"schema": 1, "runs": {"r3": {}}, "rows": [row("llm", "failed", 3, None)]}
    merged, notes = common.merge([a, b, c])
    assert set(merged["runs"]) == {"r1", "r2", "r3"}
    by_mode = {r["mode"]: r for r in merged["rows"]}
    assert by_mode["inductor"]["median_ms"] == 0.07  # both ok: the newer
    assert by_mode["llm"]["status"] == "ok"  # ok beats a newer failure
    assert by_mode["llm"]["speedup_over"]["inductor"] == pytest.approx(0.07 / 0.05)
    assert any("llm" in n for n in notes)


def test_usage_errors_exit_2_and_name_the_fix(tmp_path, capsys):
    assert (
        runner.main(["--suite", "regions", "--case", "nope", "--device", "cpu", "--out", str(tmp_path / "r.json")]) == 2
    )
    assert "rmsnorm_fwd" in capsys.readouterr().err  # lists the valid cases
    (tmp_path / "r.json").write_text(json.dumps(common.empty_doc()))
    assert runner.main(["--suite", "regions", "--device", "cpu", "--out", str(tmp_path / "r.json")]) == 2
    assert "--resume" in capsys.readouterr().err
    assert runner.main(["--mode", "turbo", "--device", "cpu", "--out", str(tmp_path / "s.json")]) == 2


def test_a_budget_too_small_for_anything_stops_cleanly(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = runner.main(["--suite", "regions", "--device", "cpu", "--tiny", "--out", str(out), "--time-budget", "5"])
    assert rc == 0
    assert "Rerun with --resume" in capsys.readouterr().err
    assert common.load(out)["rows"] == []


@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
def test_the_h200_shards_cover_every_case_once(gpus, tmp_path):
    env = {**os.environ, "BENCH_DRY": "1", "BENCH_GPUS": str(gpus)}
    p = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "h200.sh"), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    shards = [line.split(": ", 1)[1] for line in p.stdout.splitlines()]
    assert len(shards) == gpus
    names = [c.name for shard in shards for c in runner.select_cases(argparse.Namespace(suite="all", case=shard))]
    assert sorted(names) == sorted(c.name for c in suite_cases("all"))


def _bench(args: list[str]) -> subprocess.CompletedProcess:
    # Inductor's compile workers on both cores: the kernels of llama_train's cold compile are built two at a time
    # (about 25 s instead of 35 s on 2 cores); what the rows say is the same.
    env = {**os.environ, "TORCHINDUCTOR_COMPILE_THREADS": "2"}
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
    )


@pytest.mark.timeout(600)
def test_cpu_smoke_run_then_resume(tmp_path, capsys):
    out = tmp_path / "smoke.json"
    base = ["--suite", "all", "--device", "cpu", "--tiny", "--out", str(out)]
    p = _bench([*base, "--case", "rmsnorm_fwd_bwd,llama_train", "--mode", "eager,llm"])
    assert p.returncode == 0, p.stderr[-3000:]
    doc = common.load(out)
    rows = {(r["case"], r["mode"]): r for r in doc["rows"]}
    assert set(rows) == {(c, m) for c in ("rmsnorm_fwd_bwd", "llama_train") for m in ("eager", "llm")}
    for r in rows.values():
        assert r["status"] == "ok" and r["check"]["ok"], r
        assert r["median_ms"] > 0 and r["p20_ms"] <= r["median_ms"] <= r["p80_ms"]
    assert rows["rmsnorm_fwd_bwd", "llm"]["check"]["outputs"] == 3  # y, dx, dw
    train = rows["llama_train", "llm"]
    assert train["check"]["outputs"] == 1 + sum(1 for _ in _llama_params())  # the loss and every gradient
    assert train["flops"] > 0 and train["compile_cold_s"] > train["compile_warm_s"] > 0
    assert train["llm"]["stats"]["graphs"] >= 2  # forward and backward went through the region pass
    cold = train["llm_pass"]  # the cold compile's pass, and the family keys' part of it (issue 14's compile cost)
    assert cold["graphs"] >= 2 and 0 < cold["family_s"] <= cold["pass_s"] < train["compile_cold_s"]
    assert train["substituted"] == 0 and train["fallbacks"] == 0
    (run_info,) = doc["runs"].values()
    assert run_info["versions"]["torch"] == torch.__version__ and run_info["settings"]["tiny"] is True

    assert train["speedup_over"]["eager"] == pytest.approx(
        rows["llama_train", "eager"]["median_ms"] / train["median_ms"]
    )

    # The resume reads the file the run above left and returns before any compile: run.py's main() here, without
    # a second process's imports (the usage-error tests above call it the same way).
    capsys.readouterr()
    assert runner.main([*base, "--case", "rmsnorm_fwd_bwd,llama_train", "--mode", "llm,eager", "--resume"]) == 0
    err = capsys.readouterr().err
    assert "nothing to run" in err, err[-3000:]
    assert common.load(out) == doc  # resume ran nothing and rewrote nothing


def _llama_params():
    from benchmarks.suites.models import SPECS, build_model

    spec = next(s for s in SPECS if s.name == "llama")
    return (p for p in build_model(spec, "cpu", True).parameters() if p.requires_grad)


def test_the_plot_says_whose_failure_it_was():
    """A case that failed before any mode could run is the case's failure, not llm's."""
    from benchmarks.plot import series

    def row(case, mode, status, stage=None, **extra):
        return {"suite": "models", "case": case, "mode": mode, "status": status, "stage": stage, **extra}

    doc = {
        "rows": [
            row("a", "llm", "failed", "reference"),
            row("b", "llm", "incorrect", "check"),
            row("c", "inductor", "ok"),
            row("d", "llm", "ok", speedup_over={"inductor": 1.5}),
        ]
    }
    notes = {label: (speeds, note) for label, speeds, note in series(doc)}
    assert notes["models/a"] == ({}, "case failed at reference")
    assert notes["models/b"] == ({}, "llm incorrect at check")
    assert notes["models/c"] == ({}, "llm not run")
    assert notes["models/d"] == ({"inductor": 1.5}, "")
