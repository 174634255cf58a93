"""Harness failures are never verdicts: each is injected, retried alone in a fresh worker, and, if it persists,
reported as a harness failure that no caller can take for a rejection.

The candidate is a correct kernel (offset_tanh): whatever the injected failure, its own verdict is "ok".
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
import torch

from llm_inductor import cli
from llm_inductor.verify import draw_set, engine, pool
from llm_inductor.verify.engine import HARNESS_RETRIES, verify
from support.paths import KERNELS, REGIONS

REGION = REGIONS / "region_offset_tanh.py"
GOOD = (KERNELS / "offset_tanh.py").read_text()
TRIES = 1 + HARNESS_RETRIES


class CountingPool(pool.Pool):
    """The real pool, failing its first ``fail`` takes as a worker that never became ready.

    ``ahead``: a worker started before the test, as the real pool's spare is, for the first take to use.
    """

    def __init__(self, fail: int = 0, ahead: pool.Worker | None = None) -> None:
        super().__init__()
        self.fail, self.alone = fail, []
        if ahead is not None:
            self._spare[ahead.device] = ahead

    def take(self, device: str, alone: bool = False) -> pool.Worker:
        self.alone.append(alone)
        if len(self.alone) <= self.fail:
            raise pool.WorkerStartError("the verification worker did not start (injected)")
        return super().take(device, alone)


@pytest.fixture(scope="module")
def _ahead():
    """The worker started for the next test's first try (see ``workers``); the last one is closed here."""
    started: list[pool.Worker] = []
    yield started
    for w in started:
        w.close()


@pytest.fixture
def workers(monkeypatch, _ahead, one_kernel_cache_path):
    """Install a fresh CountingPool as the verifier's pool.

    A pool whose takes do not fail gets, as its spare, a worker started while an earlier test ran (what the
    real pool does between candidates), so its first try does not wait for ``import torch``; every retry is
    alone and starts a fresh worker, as before. One kernel-cache path for the session (tests/verify/conftest.py)
    keeps the protected paths of that worker equal to the test's, or the pool would replace it.
    """
    made: list[CountingPool] = []

    def install(fail: int = 0) -> CountingPool:
        ahead = _ahead.pop() if _ahead and not fail else None
        p = CountingPool(fail, ahead)
        if not _ahead:
            _ahead.append(pool.Worker("cpu"))  # for the next test: it starts while this one runs
        made.append(p)
        monkeypatch.setattr(engine, "POOL", p)
        return p

    yield install
    for p in made:
        p.shutdown()


def fail_request(monkeypatch, op: str, answer: Any, times: int = 1) -> list[str]:
    """Worker.request answers ``answer(worker)`` instead of running the first ``times`` requests of kind ``op``."""
    real, seen = pool.Worker.request, []

    def request(self: pool.Worker, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
        if msg.get("op") == op and len(seen) < times:
            seen.append(op)
            injected = answer(self)
            if injected is not None:
                return injected
        return real(self, msg, timeout)

    monkeypatch.setattr(pool.Worker, "request", request)
    return seen


def assert_retried_then_judged(result, first_reason: str, *extra: str) -> None:
    assert result.accepted and result.reason == "ok" and not result.harness_failure, result.message
    note = result.check("harness")
    assert note is not None and note.passed and f"try 1: {first_reason}" in note.detail, note
    for text in extra:
        assert text in note.detail
    assert all(c.passed for c in result.checks)


def test_a_worker_that_does_not_start_once_is_retried_alone(workers):
    p = workers(fail=1)
    result = verify(REGION, GOOD, device="cpu")
    assert_retried_then_judged(result, "harness:worker_start", "did not start (injected)")
    assert p.alone == [False, True]  # the retry asked for a fresh worker with no spare beside it
    assert p._spare == {}


def test_a_worker_that_never_starts_is_a_harness_failure_not_a_rejection(workers):
    p = workers(fail=99)
    result = verify(REGION, GOOD, device="cpu")
    assert result.harness_failure and not result.accepted and result.reason == "harness:worker_start"
    assert p.alone == [False] + [True] * HARNESS_RETRIES
    assert f"all {TRIES} tries" in result.message and result.message.count("did not start (injected)") == TRIES
    assert result.summary().startswith("not judged (harness:worker_start)")
    assert "not the candidate's doing" in result.feedback()


def test_verify_cli_exits_3_with_one_line_naming_the_log(workers, monkeypatch, tmp_path, capsys):
    workers(fail=99)
    monkeypatch.setattr(cli, "log_path", lambda: tmp_path / "cli.log")
    assert cli.main(["verify", str(REGION), str(KERNELS / "offset_tanh.py"), "--device", "cpu"]) == 3
    out, err = capsys.readouterr()
    assert out.startswith("not judged (harness:worker_start)") and "rejected" not in out
    line = err.strip().splitlines()[-1]
    assert "internal error: harness failure, not the candidate's" in line and str(tmp_path / "cli.log") in line
    assert (tmp_path / "cli.log").read_text().count("did not start (injected)") >= TRIES  # every try, in the log


def test_a_worker_killed_under_the_candidate_is_retried_alone(workers, monkeypatch):
    workers()

    def kill(worker: pool.Worker) -> None:  # the OOM killer, or anything else from outside, takes the worker
        os.killpg(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait()

    seen = fail_request(monkeypatch, "run", kill)
    result = verify(REGION, GOOD, device="cpu")
    assert seen == ["run"]
    assert_retried_then_judged(result, "oom", "SIGKILL")


def test_an_out_of_memory_that_does_not_come_back_alone_was_the_harness(workers, monkeypatch):
    workers()
    fail_request(monkeypatch, "run", lambda w: {"ok": False, "reason": "oom", "message": "MemoryError (injected)"})
    assert_retried_then_judged(verify(REGION, GOOD, device="cpu"), "oom", "MemoryError (injected)")


def test_an_internal_error_of_the_worker_is_retried(workers, monkeypatch):
    workers()
    fail_request(monkeypatch, "load", lambda w: {"ok": False, "reason": "internal", "message": "KeyError: 'x'"})
    assert_retried_then_judged(verify(REGION, GOOD, device="cpu"), "harness:internal", "KeyError: 'x'")


@pytest.mark.parametrize("error", [MemoryError, torch.OutOfMemoryError])
def test_the_parent_out_of_memory_computing_references_is_retried(workers, monkeypatch, error):
    workers()
    real, calls = draw_set.fp64_reference, []

    def fp64_reference(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise error("out of memory computing the reference (injected)")
        return real(*args)

    monkeypatch.setattr(draw_set, "fp64_reference", fp64_reference)
    assert_retried_then_judged(verify(REGION, GOOD, device="cpu"), "harness:parent_oom", "(injected)")


def test_the_parent_out_of_memory_every_time_is_a_harness_failure(workers, monkeypatch):
    p = workers()

    def fp64_reference(*args: Any) -> Any:
        raise MemoryError("out of memory computing the reference (injected)")

    monkeypatch.setattr(draw_set, "fp64_reference", fp64_reference)
    result = verify(REGION, GOOD, device="cpu")
    assert result.harness_failure and result.reason == "harness:parent_oom" and not result.accepted
    assert len(p.alone) == TRIES and [c.name for c in result.checks] == ["harness"]
