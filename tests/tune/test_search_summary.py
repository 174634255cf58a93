"""The tune summary's verification throughput and memory: candidates verified per device-minute, peak GPU memory.

A region's device time is the union of its verification intervals, not the sum of their lengths: verifications
of one round run at once. Each attempt carries its interval and its worker's GPU peak (``verify_candidate``);
older records carry neither, and the summary still reads them.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from llm_inductor.cli import main
from llm_inductor.config import Config
from llm_inductor.search.context import RegionContext, load_context
from llm_inductor.search.llm.providers import Completion
from llm_inductor.search.loop import Searcher
from llm_inductor.search.progress import (
    SummaryRow,
    device_time,
    merge_intervals,
    run_total,
    summary_row,
    summary_table,
    union_seconds,
)
from llm_inductor.search.search_state import SearchState
from llm_inductor.search.tune import TuneReport, parent_gpu_peak_mib
from llm_inductor.search.verdict import verify_candidate
from support.loopback import LoopbackLLM, Reply, sequence
from support.search import GOOD, WRONG, answer, copy_region, shared_region

MIB = 2**20
WRONG_VALUES = {"accepted": False, "reason": "wrong_values", "message": "output 0 differs on seed 1"}


@pytest.fixture
def region(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLM_INDUCTOR_INTERPRET", "1")
    return copy_region(shared_region(tmp_path), Path(Config.load()[0].cache_dir))


def contexts(region: Path) -> tuple[RegionContext, RegionContext]:
    """The region's context on this machine's CPU (the interpreter), and the same as a GPU target would show it."""
    cfg, _ = Config.load()
    cpu = load_context(region, cfg, None, "cpu")
    assert not cpu.facts.is_gpu
    return cpu, dataclasses.replace(cpu, facts=dataclasses.replace(cpu.facts, is_gpu=True))


def attempt(outcome: str, start: float | None, end: float | None, peak: float | None = None, **extra: Any) -> dict:
    a = {"round": 1, "slot": 0, "outcome": outcome, "accepted": outcome in ("ok", "slower"), "code": GOOD}
    if start is not None:
        a.update(verify_started=start, verify_ended=end, verify_seconds=end - start, gpu_peak_mib=peak)
    return {**a, **extra}


def with_memory(result: dict[str, Any], worker_peak: int, flush: int = 256 * MIB) -> dict[str, Any]:
    return {**result, "memory": {"working_set": 64 * MIB, "cap": 8 << 30, "worker_peak": worker_peak, "flush": flush}}


# ----------------------------------------------------------------------------- interval arithmetic


def test_overlapping_verifications_count_once_in_the_device_time():
    # Two verifications of 60 s each, overlapping by 30 s: 90 s of device time, not 120.
    assert union_seconds([(0.0, 60.0), (30.0, 90.0)]) == 90.0
    assert merge_intervals([(30.0, 90.0), (0.0, 60.0)]) == [[0.0, 90.0]]
    # Apart, they add up; one inside another adds nothing; touching ones join; empty and reversed ones are nothing.
    assert union_seconds([(0.0, 10.0), (20.0, 25.0)]) == 15.0
    assert union_seconds([(0.0, 100.0), (10.0, 20.0), (50.0, 60.0)]) == 100.0
    assert merge_intervals([(0.0, 1.0), (1.0, 2.0), (5.0, 5.0), (9.0, 8.0)]) == [[0.0, 2.0]]
    assert union_seconds([]) == 0.0
    # Attempts: intervals where recorded; older ones (verify_seconds only) ran one at a time and add up.
    intervals, untimed = device_time(
        [
            attempt("ok", 100.0, 160.0),
            attempt("wrong_values", 130.0, 190.0),
            {"outcome": "compile_error", "verify_seconds": 4.0},
            {"outcome": "no_code"},  # never verified
        ]
    )
    assert intervals == [[100.0, 190.0]] and untimed == 4.0


def test_verify_candidate_records_its_interval_and_the_workers_gpu_peak(tmp_path):
    cfg, _ = Config.load()
    barrier = threading.Barrier(2, timeout=30)

    def verifier(region_path: str, source: str, c: Config) -> dict[str, Any]:
        barrier.wait()  # both verifications are running now
        time.sleep(0.2)
        return with_memory({"accepted": True, "reason": "ok", "message": ""}, (3 << 30) if source == "a" else 1 << 30)

    out: dict[str, dict[str, Any]] = {}
    threads = [
        threading.Thread(target=lambda s=s: out.setdefault(s, verify_candidate(verifier, "r.py", s, cfg, None)))
        for s in ("a", "b")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a, b = out["a"], out["b"]
    assert a["outcome"] == b["outcome"] == "ok"
    # The worker's own peak, in MiB (the L2-flush buffer is the worker's too: it is not taken off).
    assert a["gpu_peak_mib"] == 3072.0 and b["gpu_peak_mib"] == 1024.0
    for v in (a, b):
        assert v["verify_started"] <= v["verify_ended"]
        assert v["verify_ended"] - v["verify_started"] == pytest.approx(v["verify_seconds"], abs=0.05)
    # They overlapped: their union is less than the sum of their times.
    union = union_seconds([(v["verify_started"], v["verify_ended"]) for v in (a, b)])
    assert union < a["verify_seconds"] + b["verify_seconds"] - 0.1

    # No memory in the result (an older engine, an injected verifier), an empty one, a verifier that raised: None.
    plain = verify_candidate(lambda *_: dict(WRONG_VALUES), "r.py", "c", cfg, None)
    empty = verify_candidate(lambda *_: {**WRONG_VALUES, "memory": {}}, "r.py", "c", cfg, None)
    raised = verify_candidate(lambda *_: 1 / 0, "r.py", "c", cfg, None)
    for v in (plain, empty, raised):
        assert v["gpu_peak_mib"] is None and v["verify_started"] <= v["verify_ended"]
    assert raised["outcome"] == "harness:verifier_error"
    # On the CPU the worker's peak is 0: recorded as such (the summary says "no GPU").
    cpu = verify_candidate(lambda *_: with_memory(dict(WRONG_VALUES), 0, 0), "r.py", "c", cfg, None)
    assert cpu["gpu_peak_mib"] == 0.0


# ----------------------------------------------------------------------------- the search records them


def test_a_rounds_parallel_verifications_count_once_in_the_regions_row(region):
    cfg, _ = Config.load({"candidates": 2, "rounds": 2, "strategy": "refine", "verify_parallel": 2})
    cpu, gpu = contexts(region)
    barrier = threading.Barrier(2, timeout=30)

    def verifier(region_path: str, source: str, c: Config) -> dict[str, Any]:
        barrier.wait()  # the round's two answers are verified at once
        time.sleep(0.2)
        if source == GOOD:
            return with_memory({"accepted": True, "reason": "ok", "message": "all checks passed"}, 700 * MIB)
        return with_memory(dict(WRONG_VALUES), 900 * MIB)

    s = Searcher(cfg, SimpleNamespace(name="stub", model="stub-model"), "cpu", verifier, None)
    state = SearchState(cpu.key, str(region), cfg.strategy)
    requests = s.plan(state, cpu, s.region_meter(state))
    assert len(requests) == 2
    s.consume_batch(
        state, cpu, {requests[0].custom_id: Completion(answer(GOOD)), requests[1].custom_id: Completion(answer(WRONG))}
    )
    assert sorted(a["outcome"] for a in state.attempts) == ["ok", "wrong_values"]
    # The fields outlive the verification record, which only the winner keeps.
    for a in state.attempts:
        assert {"verify_started", "verify_ended", "verify_seconds", "gpu_peak_mib"} <= a.keys()
    assert [a.get("verification") is not None for a in state.attempts if a["outcome"] != "ok"] == [False]

    summed = sum(a["verify_seconds"] for a in state.attempts)
    row = summary_row(state, gpu)
    assert row.verified == 2 and len(row.verify_intervals) == 1
    assert row.device_seconds < summed - 0.1  # less device time than the sum: they ran at once
    assert row.per_device_minute == pytest.approx(2 / (row.device_seconds / 60))
    assert row.gpu_peak_mib == 900.0 and not row.interpreter
    # The same region verified on this CPU: the interpreter's rate, and no GPU memory to speak of.
    on_cpu = summary_row(state, cpu)
    assert on_cpu.interpreter and on_cpu.gpu_peak_mib is None
    assert on_cpu.per_device_minute == row.per_device_minute
    # The row round-trips through JSON, as `tune --json` writes it.
    assert json.loads(json.dumps(row.to_dict()))["verify_intervals"] == row.verify_intervals


# ----------------------------------------------------------------------------- the summary text


def _gpu_states(region: Path) -> tuple[SearchState, SearchState]:
    key = contexts(region)[0].key
    first = SearchState(key, str(region), "refine")
    first.attempts = [
        attempt("ok", 1000.0, 1060.0, 100.0, speedup=1.3),
        attempt("wrong_values", 1030.0, 1090.0, 300.0),  # overlaps the first: 90 s of device time for both
        attempt("no_code", None, None),  # never verified: not counted
    ]
    # Left unjudged by a harness failure after it ran: verified, and counted.
    first.unjudged = [attempt("harness:worker_start", 1200.0, 1230.0, None)]
    second = SearchState(key, str(region), "refine")
    second.attempts = [attempt("slower", 1220.0, 1250.0, 2048.0)]  # overlaps the first region's last one
    return first, second


def test_the_summary_shows_candidates_per_device_minute_and_peak_gpu_memory(region):
    _, gpu = contexts(region)
    first, second = _gpu_states(region)
    rows = [summary_row(first, gpu), summary_row(second, gpu)]
    a, b = rows
    assert (a.verified, a.device_seconds, a.per_device_minute, a.gpu_peak_mib) == (3, 120.0, 1.5, 300.0)
    assert (b.verified, b.device_seconds, b.per_device_minute, b.gpu_peak_mib) == (1, 30.0, 2.0, 2048.0)

    report = TuneReport(rows=rows, device="cuda", parent_gpu_peak_mib=512.0)
    total = report.total
    # 4 verified over [1000, 1090] ∪ [1200, 1250]: 140 s, not the 210 s their times add up to.
    assert (total.verified, total.device_seconds) == (4, 140.0)
    assert total.per_device_minute == pytest.approx(4 / (140 / 60))
    assert (total.parent_gpu_peak_mib, total.worker_gpu_peak_mib, total.interpreter) == (512.0, 2048.0, False)

    text = summary_table(rows, total)
    print(text)
    head, _, line_a, line_b = text.splitlines()[:4]
    assert "verified" in head and "cand/dev-min" in head and "peak MiB" in head
    assert line_a.split()[-3:] == ["3", "1.5", "300"]  # verified, per device-minute, peak MiB (no stop reason)
    assert line_b.split()[-3:] == ["1", "2.0", "2048"]
    assert "run: 4 candidate(s) verified in 2.3 min of device time = 1.7 per device-minute" in text
    assert "peak GPU memory: parent 512 MiB + largest worker 2048 MiB" in text
    assert "interpreter" not in text and "no GPU" not in text
    # Without the report's total, the rows give the rest; the parent's peak was not measured.
    assert "parent not measured + largest worker 2048 MiB" in summary_table(rows)


def test_on_the_cpu_the_summary_says_interpreter_and_no_gpu(region):
    cpu, _ = contexts(region)
    first, _ = _gpu_states(region)
    row = summary_row(first, cpu)
    assert row.interpreter and row.per_device_minute == 1.5 and row.gpu_peak_mib is None
    total = TuneReport(rows=[row], device="cpu", parent_gpu_peak_mib=None).total
    assert total.interpreter and total.worker_gpu_peak_mib is None and total.parent_gpu_peak_mib is None
    text = summary_table([row], total)
    print(text)
    head, _, line = text.splitlines()[:3]
    assert "GPU" not in head  # the heading claims no GPU
    assert " 1.5* " in line and " no GPU " in line
    assert "measured under the Triton interpreter on the CPU" in text
    assert "run: 3 candidate(s) verified in 2.0 min under the Triton interpreter (CPU; not a GPU's rate)" in text
    assert "= 1.5 per minute; peak GPU memory: no GPU" in text
    assert " 0 MiB" not in text
    assert parent_gpu_peak_mib() is None  # this machine has no GPU: nothing to measure, not 0


def test_older_records_without_the_new_fields_do_not_break_the_summary(region):
    cpu, gpu = contexts(region)
    # A state saved before the fields existed: verify_seconds only, the winner with a verification that predates
    # `memory`, an unjudged answer kept unverified after a harness failure.
    old = SearchState.from_dict(
        {
            "key": cpu.key,
            "region_path": str(region),
            "strategy": "refine",
            "round": 1,
            "schema": 1,
            "attempts": [
                {"round": 1, "slot": 0, "outcome": "ok", "accepted": True, "verify_seconds": 30.0, "verification": {}},
                {"round": 1, "slot": 1, "outcome": "compile_error", "accepted": False, "verify_seconds": 15.0},
                {"round": 1, "slot": 2, "outcome": "rate_limited", "accepted": False},
            ],
            "unjudged": [{"round": 1, "slot": 3, "outcome": "harness:worker_start", "accepted": False}],
        }
    )
    row = summary_row(old, gpu)
    assert (row.verified, row.verify_intervals, row.device_seconds) == (2, [], 45.0)
    assert row.per_device_minute == pytest.approx(2 / 0.75) and row.gpu_peak_mib is None
    # A winner whose verification kept `memory` gives the peak even without gpu_peak_mib.
    old.attempts[0]["verification"] = {"memory": {"worker_peak": 5 * 2**30}}
    assert summary_row(old, gpu).gpu_peak_mib == 5120.0

    # Nothing verified at all (an exported round, a state of provider failures): no rate, no peak.
    empty = SearchState(cpu.key, str(region), "refine")
    empty.attempts = [{"round": 1, "slot": 0, "outcome": "timeout", "accepted": False}]
    none = summary_row(empty, gpu)
    assert (none.verified, none.device_seconds, none.per_device_minute, none.gpu_peak_mib) == (0, 0.0, None, None)

    # A row made the old way (positionally, without the new fields) and one from an old `--json`.
    legacy = SummaryRow("r (mul) <- f32[8,33]", "0" * 16, "winner", "", 1, 1.2, None, 1, 1200, False, 0.01)
    assert legacy.to_dict()["verified"] == 0 and legacy.to_dict()["per_device_minute"] is None
    assert legacy.to_dict()["entry_id"] is None  # the old fields keep their places and defaults
    rows = [legacy, none, row]
    total = run_total(rows, 0.0, "cuda")
    assert (total.verified, total.device_seconds) == (2, 45.0)
    text = summary_table(rows, total)
    print(text)
    assert "parent 0.0 MiB + largest worker not recorded" in text
    assert text.splitlines()[2].split()[-3:] == ["0", "-", "-"]  # nothing verified: no rate, no peak
    assert text.splitlines()[4].split()[-3:] == ["2", "2.7", "-"]  # no memory recorded: no peak


# ----------------------------------------------------------------------------- `llm-inductor tune --json`


def test_tune_prints_and_writes_the_rate_and_the_memory(region, tmp_path, monkeypatch, capsys):
    import llm_inductor.search.tune as tune_module

    calls = []

    def verifier(region_path: str, source: str, cfg: Config) -> dict[str, Any]:
        calls.append(source)
        return with_memory(dict(WRONG_VALUES), 0, 0)  # the CPU: a worker peak of 0

    monkeypatch.setattr(tune_module, "default_verifier", verifier)
    monkeypatch.setenv("LLM_INDUCTOR_MODEL", "loopback-model")
    monkeypatch.setenv("LLM_INDUCTOR_CANDIDATES", "2")
    monkeypatch.setenv("LLM_INDUCTOR_ROUNDS", "1")
    summary = tmp_path / "summary.json"
    with LoopbackLLM(sequence(Reply.text(answer(WRONG)))) as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        code = main(["tune", "--json", str(summary), str(region)])
    out = capsys.readouterr()
    print(out.out)
    assert code == 1 and len(calls) == 2, out.err  # no winner, two candidates verified
    assert "run: 2 candidate(s) verified in " in out.out and "peak GPU memory: no GPU" in out.out
    assert "measured under the Triton interpreter" in out.out
    written = json.loads(summary.read_text())
    (row,) = written["rows"]
    assert row["verified"] == 2 and row["per_device_minute"] > 0 and row["interpreter"] is True
    assert row["gpu_peak_mib"] is None and len(row["verify_intervals"]) >= 1
    assert row["device_seconds"] == pytest.approx(sum(e - s for s, e in row["verify_intervals"]))
    total = written["total"]
    assert total["verified"] == 2 and total["interpreter"] is True and total["parent_gpu_peak_mib"] is None
    assert total["per_device_minute"] == pytest.approx(2 / (total["device_seconds"] / 60))
