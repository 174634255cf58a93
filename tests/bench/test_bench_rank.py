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


def test_time_phase_runs_jobs_side_by_side_and_keeps_what_is_done(state, tmp_path, monkeypatch):
    import threading

    for i in range(5):  # five more regions above the share, besides r1 (timed already) and r2 (below it)
        state.data["cases"]["a_prefill"]["graphs"][0]["regions"].append(_region(f"s{i}", 10.0, 1, 0.2 - i / 100))
    running, peak, seen, guard = [0], [0], [], threading.Lock()
    gate = threading.Barrier(2, timeout=10)

    def fake_time(work, r, timeout):
        with guard:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            seen.append(r["key16"])
        if r["key16"] in ("s0", "s1"):
            gate.wait()  # the first two are in flight together, or this times out
        with guard:
            running[0] -= 1
        return {"inductor_ms": 1.0, "ops": r["ops"]}

    monkeypatch.setattr(rank_regions, "_device", lambda: "cuda")
    monkeypatch.setattr(rank_regions, "_time_region", fake_time)
    rank_regions.phase_time(tmp_path, state, min_share=0.01, budget=600, jobs=2)
    assert seen[:2] == ["s0", "s1"] and sorted(seen) == ["s0", "s1", "s2", "s3", "s4"]  # largest share first; r1 kept
    assert peak[0] == 2
    assert json.loads((tmp_path / "rank.json").read_text())["regions"]["s4"] == {
        "inductor_ms": 1.0,
        "ops": ["add", "mul"],
    }
    seen.clear()
    rank_regions.phase_time(tmp_path, state, min_share=0.01, budget=600, jobs=2)
    assert seen == []  # a rerun times only the rest: nothing


def test_time_phase_stops_at_its_budget(state, tmp_path, monkeypatch):
    monkeypatch.setattr(rank_regions, "_device", lambda: "cuda")
    monkeypatch.setattr(rank_regions, "_time_region", lambda *a: pytest.fail("timed past the budget"))
    state.data["regions"] = {}
    rank_regions.phase_time(tmp_path, state, min_share=0.01, budget=10, jobs=2)  # under the 30 s a region needs
    assert state.data["regions"] == {}


def test_time_phase_finds_a_pending_records_file_and_retries_regions_it_missed(state, tmp_path, monkeypatch):
    pending = tmp_path / "cache" / "regions"
    pending.mkdir(parents=True)
    (pending / "region_s0abc.py").write_text("# a hot miss's region file, written by the cache, not the export\n")
    state.data["cases"]["a_prefill"]["graphs"][0]["regions"].append(_region("s0", 10.0, 1, 0.2))
    state.data["regions"]["s0"] = {"ops": ["add"], "error": rank_regions.NO_FILE}  # an earlier run's miss
    assert rank_regions._region_file(tmp_path, "s0") == pending / "region_s0abc.py"
    assert rank_regions._region_file(tmp_path, "zz") is None
    seen = []
    monkeypatch.setattr(rank_regions, "_device", lambda: "cuda")
    monkeypatch.setattr(rank_regions, "_time_region", lambda w, r, t: seen.append(r["key16"]) or {"inductor_ms": 2.0})
    rank_regions.phase_time(tmp_path, state, min_share=0.01, budget=600, jobs=1)
    assert seen == ["s0"] and state.data["regions"]["s0"] == {"inductor_ms": 2.0}  # r1, timed, is not timed again
