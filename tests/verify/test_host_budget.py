"""Host memory for the parent's draws (verify/host_budget.py): admitted, so a large region is a named
harness failure, never a tuner killed by the kernel's OOM killer."""

from __future__ import annotations

import threading
import time

import pytest

from llm_inductor.verify import draw_set, host_budget
from llm_inductor.verify.engine import verify
from llm_inductor.verify.host_budget import HostBudget, HostMemoryError
from support.paths import KERNELS, REGIONS

pytestmark = pytest.mark.usefixtures("one_kernel_cache_path")


def test_a_build_waits_for_other_builds_and_fails_only_when_it_cannot_fit_alone():
    budget = HostBudget(capacity=100)
    order, b_done = [], threading.Event()

    def build_b():
        with budget.build(60, "draw b"):
            order.append(("b", budget.used))
        b_done.set()

    with budget.build(60, "draw a"):
        t = threading.Thread(target=build_b)
        t.start()
        time.sleep(0.3)
        assert order == []  # b waits while a is being built
        order.append(("a done", budget.used))
    assert b_done.wait(timeout=10)
    t.join()
    assert order == [("a done", 60), ("b", 60)] and budget.used == 0
    with pytest.raises(HostMemoryError, match="needs about .* GiB of host memory"):
        with budget.build(101, "draw c"):  # larger than the whole budget: never waits, names the draw
            pass


def test_held_draws_count_and_a_build_they_leave_no_room_for_fails_instead_of_waiting():
    budget = HostBudget(capacity=100)
    budget.hold(80)  # the inputs and references of draws already built
    with pytest.raises(HostMemoryError, match="draw d"):
        with budget.build(30, "draw d"):
            pass
    budget.release(80)
    with budget.build(30, "draw d"):
        assert budget.used == 30
    assert budget.used == 0


def test_the_error_says_whether_a_retry_can_make_room():
    """Held by other rounds: they may release it, so a retry may fit. Held by the draw's own round (kept
    across the retries of one verification) or larger than the budget: no retry can."""
    budget = HostBudget(capacity=100)
    budget.hold(80)
    with pytest.raises(HostMemoryError) as others:
        with budget.build(30, "draw e"):
            pass
    assert others.value.retry_helps
    with pytest.raises(HostMemoryError, match="80.* held by its round's other draws") as own:
        with budget.build(30, "draw e", own_held=80):
            pass
    assert not own.value.retry_helps
    budget.release(80)
    with pytest.raises(HostMemoryError) as alone:
        with budget.build(101, "draw f"):
            pass
    assert not alone.value.retry_helps and budget.used == 0


def test_a_region_too_large_for_the_host_is_a_harness_failure_not_a_verdict(monkeypatch):
    monkeypatch.setattr(host_budget.HOST, "_capacity", 4096)  # bytes: smaller than any draw of this region
    monkeypatch.setattr(host_budget.HOST, "used", 0)
    built = []
    real = draw_set.DrawSet._build_now
    monkeypatch.setattr(draw_set.DrawSet, "_build_now", lambda self, d: built.append(d) or real(self, d))
    result = verify(REGIONS / "region_softmax.py", (KERNELS / "softmax.py").read_text(), device="cpu")
    assert result.harness_failure and not result.accepted, result.message
    assert "host memory" in result.message
    # No retry can make room for a draw larger than the whole budget: one try, not three, and nothing built.
    assert result.reason == "harness:host_memory" and "not retried" in result.message and built == []
    assert len([c for c in result.checks if c.name == "harness"]) == 1
