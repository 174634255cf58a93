"""Markdown table and plot from a results file: speedups come from the rows, failures are listed, not dropped."""

from __future__ import annotations

import pytest

from benchmarks import common, plot, table


def _row(case, mode, median=None, status="ok", run_id="r1", **extra):
    row = {
        "suite": "regions",
        "case": case,
        "mode": mode,
        "status": status,
        "run_id": run_id,
        "shape": "8192x4096",
        "floor_ms": 0.032,
        "started": 1.0,
        **extra,
    }
    if median is not None:
        row.update(median_ms=median, p20_ms=median * 0.98, p80_ms=median * 1.03, roofline_pct=100 * 0.032 / median)
    return row


@pytest.fixture
def doc():
    d = common.empty_doc()
    d["runs"]["r1"] = {
        "device_name": "NVIDIA H200",
        "versions": {"torch": "2.11.0", "triton": "3.6.0"},
        "git": {"commit": "abc"},
    }
    d["rows"] = [
        _row("rmsnorm_fwd", "eager", 0.441),
        _row("rmsnorm_fwd", "inductor", 0.041),
        _row("rmsnorm_fwd", "max-autotune", 0.036),
        _row("rmsnorm_fwd", "llm", 0.0328, substituted=1, fallbacks=0),
        _row("cross_entropy", "eager", 3.498),
        _row("cross_entropy", "inductor", 0.695),
        _row(
            "cross_entropy",
            "llm",
            status="incorrect",
            stage="check",
            error="output 0: RMS error 0.3 (eager 0.001, limit 0.004)",
        ),
        _row("cross_entropy", "max-autotune", 0.637, run_id="r2"),
    ]
    common.annotate(d["rows"])
    return d


def test_markdown_shows_speedups_from_the_medians_and_lists_failures(doc):
    md = table.markdown(doc)
    line = next(ln for ln in md.splitlines() if ln.startswith("| rmsnorm_fwd |"))
    assert f"{0.041 / 0.0328:.2f}x" in line and f"{0.036 / 0.0328:.2f}x" in line and f"{0.441 / 0.0328:.2f}x" in line
    assert "1 / 0" in line  # substituted / fallbacks
    ce = next(ln for ln in md.splitlines() if ln.startswith("| cross_entropy |"))
    assert "incorrect [1]" in ce
    assert "1. regions/cross_entropy/llm: incorrect at check: output 0: RMS error 0.3" in md
    # headroom ranks cases by what a perfect kernel would save: cross-entropy first
    head = md[md.index("## Headroom") :].splitlines()
    assert head[4].startswith("| cross_entropy | max-autotune | 0.637")


def test_speedups_across_runs_are_marked(doc):
    common.upsert(doc, _row("cross_entropy", "llm", 0.5, run_id="r1"))
    common.annotate(doc["rows"])
    ce = next(ln for ln in table.markdown(doc).splitlines() if ln.startswith("| cross_entropy |"))
    assert f"{0.637 / 0.5:.2f}x†" in ce and f"{0.695 / 0.5:.2f}x |" in ce


def test_plot_writes_a_png_with_a_slot_for_the_failed_case(doc, tmp_path):
    pytest.importorskip("matplotlib")
    series = plot.series(doc)
    assert ("regions/cross_entropy", {}, "llm incorrect at check") in series
    out = plot.plot(doc, tmp_path / "speedup.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cases_not_run_yet_are_shown_and_same_code_ratios_are_marked(doc):
    common.upsert(doc, _row("swiglu_fwd", "inductor", 0.166))
    common.upsert(doc, _row("swiglu_fwd", "llm", 0.150, substituted=0, fallbacks=0))
    common.annotate(doc["rows"])
    md = table.markdown(doc)
    sw = next(ln for ln in md.splitlines() if ln.startswith("| swiglu_fwd |"))
    assert f"{0.166 / 0.150:.2f}x‡" in sw  # no kernel substituted: Inductor's own code, so noise
    rms = next(ln for ln in md.splitlines() if ln.startswith("| rmsnorm_fwd |"))
    assert "‡" not in rms  # one kernel substituted: a real comparison
    rope = next(ln for ln in md.splitlines() if ln.startswith("| rope |"))
    assert rope.count("not run") == 4 and "8x32x2048x128" in rope  # a suite case with no row yet
