"""``llm-inductor report``: the page shows what the cache and the attempt records hold, and survives partial records."""

from __future__ import annotations

import hashlib
import html
import importlib.util
import json
import re
from pathlib import Path

import pytest

import llm_inductor
from llm_inductor.cache.entry import Entry
from llm_inductor.cli import main
from llm_inductor.config import Config

KERNEL = """import torch, triton, triton.language as tl
@triton.jit
def _rms(x_ptr, w_ptr, y_ptr, N, BLOCK: tl.constexpr):  # read M*N + N, write M*N
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + row * N + cols, mask=cols < N, other=0.0).to(tl.float32)
    tl.store(y_ptr + row * N + cols, x * tl.rsqrt(tl.sum(x * x, 0) / N + 1e-6), mask=cols < N)
def forward(x, w):
    y = torch.empty_like(x)
    _rms[(x.shape[0],)](x, w, y, x.shape[1], BLOCK=triton.next_power_of_2(x.shape[1]))
    return y
"""
INDUCTOR = (
    "# kernel triton_red_fused_mean_pow_rsqrt_0\n@triton.jit\n"
    "def triton_red_fused_mean_pow_rsqrt_0(in_ptr0, out_ptr0, xnumel, r0_numel):\n    pass\n"
)


def _entry(name: str, speedup: float, status: str = "served") -> Entry:
    key = hashlib.sha256(name.encode()).hexdigest()
    return Entry(
        key=key,
        key_fields={"device": "cuda:sm90"},
        kernel_source=KERNEL,
        region_source=f"# region {name} <&>\n",
        region_meta={"key": key, "key16": key[:16], "ops": ["pow", "mean", "add", "rsqrt", "mul"]},
        speed={
            "NVIDIA H200": {
                "speedup": speedup,
                "candidate_us": 40.0,
                "inductor_us": 40.0 * speedup,
                "roofline_pct": 88.0,
            }
        },
        provenance={"provider": "openai", "model": "m-1", "calls": 3, "cost": 0.3},
        versions={"torch": "2.11", "triton": "3.6", "gpu": "NVIDIA H200"},
        status=status,
    )


def _attempt(key: str, run_id: str, rnd: int, outcome: str, cost: float, tokens: tuple[int, int], speedup=None, t=0.0):
    return {
        "schema": 1,
        "time": 1.8e9 + t,
        "run_id": run_id,
        "key": key,
        "key16": key[:16],
        "provider": "openai",
        "model": "m-1",
        "strategy": "refine",
        "round": rnd,
        "outcome": outcome,
        "accepted": outcome == "ok",
        "tokens_in": tokens[0],
        "tokens_out": tokens[1],
        "tokens_estimated": False,
        "cost": cost,
        "speedup": speedup,
    }


@pytest.fixture
def cache(tmp_path: Path) -> tuple[Path, Entry, Entry, list[dict]]:
    d = tmp_path / "cache"
    store = llm_inductor.open_cache(Config.load({"cache_dir": str(d)})[0])
    winner = store.put(_entry("rms", 1.31)) or _entry("rms", 1.31)
    gated = store.put(_entry("ce", 1.04, "slows_graph")) or _entry("ce", 1.04, "slows_graph")
    ref = d / "search" / "reference"
    ref.mkdir(parents=True)
    (ref / f"region_{winner.key[:16]}-NVIDIA_H200-2.11.0.json").write_text(
        json.dumps({"available": True, "device": "NVIDIA H200", "code": INDUCTOR, "inductor_ms": 0.0524})
    )
    lost = "f" * 64
    attempts = [
        _attempt(winner.key, "run-a", 1, "wrong_values", 0.011, (3000, 900), t=1),
        _attempt(winner.key, "run-a", 2, "ok", 0.013, (3500, 1000), speedup=1.31, t=2),
        _attempt(lost, "run-a", 1, "compile_error", 0.010, (2800, 700), t=3),
        _attempt(lost, "run-a", 1, "compile_error", 0.010, (2800, 700), t=4),
        _attempt(gated.key, "run-b", 1, "ok", 0.02, (4000, 1200), speedup=1.04, t=10),
    ]
    path = d / "search" / "attempts.jsonl"
    path.write_text(
        "\n".join(json.dumps(a) for a in attempts) + '\n{"run_id": "run-a", "key16": "torn'
    )  # a killed writer
    return d, winner, gated, attempts


def _section(page: str, title: str) -> str:
    start = page.index(title)
    end = page.find("<h2>", start + 1)
    return page[start : end if end > 0 else None]


def test_report_shows_runs_outcomes_costs_and_kernels_side_by_side(cache, tmp_path):
    d, winner, gated, attempts = cache
    out = tmp_path / "report.html"
    assert main(["report", "--cache-dir", str(d), "--out", str(out)]) == 0
    page = out.read_text()
    run_a = _section(page, "Tuning run <code>run-a</code>")
    run_a_attempts = [a for a in attempts if a["run_id"] == "run-a"]
    assert f"{len(run_a_attempts)} calls" in run_a
    assert f"{sum(a['tokens_in'] + a['tokens_out'] for a in run_a_attempts):,} tokens" in run_a
    assert f"${sum(a['cost'] for a in run_a_attempts):.3f}" in run_a
    row = re.search(rf"<tr><td><a href=\"#k-{winner.key[:16]}\">.*?</tr>", run_a).group(0)
    assert "winner" in row and "1.31x" in row and "88%" in row
    assert "no winner: compile_error x2" in run_a  # the region that never produced a correct kernel
    assert "stored as slows_graph" in _section(page, "Tuning run <code>run-b</code>")
    assert "1 unreadable line(s)" in page
    kernels = _section(page, "Kernels: winner beside Inductor")
    assert html.escape(KERNEL) in kernels and html.escape(INDUCTOR) in kernels
    assert html.escape("# region rms <&>") in kernels  # region source, escaped
    assert "0.0524 ms" in kernels  # Inductor's time from the reference record
    assert page.count("data:image/png;base64,") >= (4 if _has_matplotlib() else 0)


def test_report_run_filter_and_bench_section(cache, tmp_path):
    d, *_ = cache
    bench = tmp_path / "bench.json"
    rows = [
        {"suite": "regions", "case": "rope", "mode": m, "status": "ok", "median_ms": ms, "run_id": "r"}
        for m, ms in (("inductor", 0.078), ("max-autotune", 0.079), ("llm", 0.065))
    ]
    rows[2]["speedup_over"] = {"inductor": 0.078 / 0.065, "max-autotune": 0.079 / 0.065}
    bench.write_text(json.dumps({"schema": 1, "runs": {"r": {"device_name": "NVIDIA H200"}}, "rows": rows}))
    out = tmp_path / "r.html"
    assert main(["report", "--cache-dir", str(d), "--run", "run-b", "--bench", str(bench), "--out", str(out)]) == 0
    page = out.read_text()
    assert "run-b" in page and "Tuning run <code>run-a</code>" not in page
    bench_part = _section(page, "Benchmarks: bench.json")
    assert f"{0.078 / 0.065:.2f}x" in bench_part and f"{0.079 / 0.065:.2f}x" in bench_part


def test_missing_inputs_exit_2_and_an_empty_cache_exits_1(tmp_path, capsys):
    out = str(tmp_path / "r.html")
    assert main(["report", "--attempts", str(tmp_path / "nope.jsonl"), "--out", out]) == 2
    assert main(["report", "--bench", str(tmp_path / "nope.json"), "--out", out]) == 2
    assert "benchmarks/run.py" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", "--cache-dir", str(empty), "--out", out]) == 1
    assert "run `llm-inductor tune`" in Path(out).read_text()


def _has_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None
