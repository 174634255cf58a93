"""benchmarks/studies/rank_regions.py: the rank is count x (Inductor - floor) / step, from the recorded map."""

from __future__ import annotations

import json
import sys

import pytest

from support.paths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks" / "studies"))
import rank_regions  # noqa: E402


def _region(key16, est_us, count, share):
    return {
        "key16": key16,
        "key": key16 * 4,
        "ops": ["add", "mul"],
        "shapes": ["bfloat16[8,8]"],
        "est_us": est_us,
        "count": count,
        "share": share,
    }


@pytest.fixture
def state(tmp_path):
    st = rank_regions.State(tmp_path)
    st.data["cases"] = {
        "a_prefill": {
            "step_ms": 10.0,
            "device": "NVIDIA H200",
            "graphs": [{"kind": "inference", "regions": [_region("r1", 200.0, 2, 0.5), _region("r2", 50.0, 1, 0.005)]}],
        },
        "a_train": {"step_ms": 40.0, "graphs": [{"kind": "backward", "regions": [_region("r1", 400.0, 4, 0.3)]}]},
        "broken": {"error": ["RuntimeError: out of memory"], "seconds": 3.0},
    }
    st.data["regions"] = {"r1": {"inductor_ms": 0.5}, "r2": {"error": ["no GPU"]}}
    return st


def test_rank_is_the_step_fraction_a_kernel_at_the_floor_would_save(state):
    rows = rank_regions.rank_rows(state)
    assert [(r["case"], r["key16"]) for r in rows] == [("a_prefill", "r1"), ("a_train", "r1")]
    top = rows[0]
    # two occurrences of 0.5 ms in a 10 ms step, each at a 0.1 ms floor: 2 x 0.4 / 10 of the step
    assert top["floor_ms"] == pytest.approx(0.1)
    assert top["time_share"] == pytest.approx(0.1) and top["headroom"] == pytest.approx(0.8)
    assert top["rank"] == pytest.approx(0.08)
    assert rows[1]["rank"] == pytest.approx(4 * 0.4 / 40)


def test_timing_order_takes_each_region_once_at_its_largest_share(state):
    order = rank_regions.distinct_regions(state, min_share=0.01)
    assert [(r["key16"], r["case"]) for r in order] == [("r1", "a_prefill")]  # r2 is below the share


def test_table_names_failures_and_writes_both_files(state, tmp_path):
    text = rank_regions.phase_table(tmp_path, state, tmp_path / "ranked", top=5)
    assert "| 1 | a_prefill | inference | `r1` |" in text
    assert "RuntimeError: out of memory" in text and "`r2`: ['no GPU']" in text
    doc = json.loads((tmp_path / "ranked.json").read_text())
    assert [r["key16"] for r in doc["ranked"]] == ["r1", "r1"]
    assert (tmp_path / "ranked.md").read_text() == text
