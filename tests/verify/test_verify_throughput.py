"""Throughput without loosening a check (issue 13): the draws a round shares, seeds that stay in the parent,
the GPU gate, admission by memory, the worker's bounded-memory helpers, and work counted on fake tensors."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import torch

from llm_inductor.verify import draw_set, engine, pool
from llm_inductor.verify.draws import Draw
from llm_inductor.verify.engine import memory_cap, verify_many
from llm_inductor.verify.gpu_share import GpuGate, MemoryAdmission
from llm_inductor.verify.timing import work
from llm_inductor.verify.worker import _same_storage, _window
from support.paths import KERNELS, REGIONS

REGION = REGIONS / "region_offset_tanh.py"
GOOD = (KERNELS / "offset_tanh.py").read_text()
WRONG = GOOD.replace("t + 1000000.0", "2.0 * t + 1000000.0")  # twice tanh: wrong by up to 1 in 1e6


@pytest.fixture
def recorded(monkeypatch):
    """Every draw the parent builds inputs for, and every request a worker gets."""
    built: list[Draw] = []
    sent: list[dict[str, Any]] = []
    real_build, real_request = draw_set.build_inputs, pool.Worker.request

    def build_inputs(make_inputs: Any, draw: Draw, device: str) -> list[torch.Tensor]:
        built.append(draw)
        return real_build(make_inputs, draw, device)

    def request(self: pool.Worker, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
        sent.append(msg)
        return real_request(self, msg, timeout)

    monkeypatch.setattr(draw_set, "build_inputs", build_inputs)
    monkeypatch.setattr(pool.Worker, "request", request)
    return built, sent


def test_a_round_shares_its_draws_and_the_next_round_gets_new_ones(recorded):
    built, sent = recorded
    first = verify_many(REGION, [GOOD, GOOD], device="cpu", parallel=2)
    assert all(r.accepted for r in first), [r.feedback() for r in first]
    first_round = list(built)
    assert len(first_round) == len(set(first_round)), "a draw of the round was built twice"
    shared = {d for d in first_round if d.name != "own"}
    assert len(shared) >= 6  # the base draws, built once for both candidates
    own = [d for d in first_round if d.name == "own"]
    assert len(own) == 2 and own[0].seed != own[1].seed  # each candidate gets a fresh draw of its own
    built.clear()
    (wrong,) = verify_many(REGION, [WRONG], device="cpu")  # the next round
    assert not wrong.accepted and wrong.reason == "wrong_values", wrong.feedback()
    assert not {d.seed for d in built} & {d.seed for d in first_round}, "a seed outlived its round"

    # The seeds stay in the parent: workers get files, messages name no seed, the envelope lists none.
    seeds = {str(d.seed) for d in (*first_round, *built) if d.seed}
    assert sent and not any({"draw", "seed"} & set(m) for m in sent)
    assert all(m["inputs"].startswith(str(m["out"]).rsplit("/", 1)[0]) for m in sent if m["op"] == "run")
    text = json.dumps(sent) + wrong.feedback() + json.dumps([r.to_dict() for r in (wrong, *first)])
    assert not [s for s in seeds if s in text]

    mem = first[0].memory  # the memory record: the working set and the cap it implies
    assert mem["working_set"] == 2 * 33 * 65 * 4  # one float32 input and one output of 33x65
    assert mem["cap"] == memory_cap(mem["working_set"]) and mem["worker_peak"] == 0  # no GPU: no device peak


def test_timing_waits_for_the_gpu_steps_in_flight_and_holds_new_ones_back():
    gate, order, inside = GpuGate(), [], threading.Event()
    release = threading.Event()

    def reader(name: str, hold: threading.Event | None = None) -> None:
        with gate.shared("cuda"):
            order.append(f"{name} in")
            inside.set()
            if hold is not None:
                hold.wait(5)
            order.append(f"{name} out")

    def writer() -> None:
        with gate.exclusive("cuda"):
            order.append("timing in")
            time.sleep(0.05)
            order.append("timing out")

    first = threading.Thread(target=reader, args=("run 1", release))
    first.start()
    inside.wait(5)
    timing = threading.Thread(target=writer)
    timing.start()
    time.sleep(0.05)  # the writer now waits for run 1
    late = threading.Thread(target=reader, args=("run 2",))
    late.start()
    time.sleep(0.05)
    assert order == ["run 1 in"]  # neither the timing nor a new GPU step started meanwhile
    release.set()
    for t in (first, timing, late):
        t.join(5)
    assert order == ["run 1 in", "run 1 out", "timing in", "timing out", "run 2 in", "run 2 out"]
    with gate.exclusive("cpu"), gate.shared("cpu"):  # nothing is timed under the interpreter: no waiting
        pass


def test_admission_keeps_the_caps_within_the_free_memory_and_a_retry_runs_alone():
    adm = MemoryAdmission()
    adm._capacity = 100  # as if measured: free GPU memory
    events: list[str] = []
    with adm.admit("cuda", 60), adm.admit("cuda", 40):  # together they fit
        blocked = threading.Thread(target=lambda: _admit(adm, 10, events, "third"))
        blocked.start()
        time.sleep(0.05)
        assert events == []  # 110 > 100: it waits
    blocked.join(5)
    assert events == ["third"]
    with adm.admit("cuda", 10):
        alone = threading.Thread(target=lambda: _admit(adm, 10, events, "alone", alone=True))
        alone.start()
        time.sleep(0.05)
        assert events == ["third"]  # a retry waits for every running verification
    alone.join(5)
    assert events == ["third", "alone"]
    with adm.admit("cuda", 500) as granted:  # bigger than the GPU: admitted alone, at most all of it
        assert granted == 100


def _admit(adm: MemoryAdmission, n: int, events: list[str], name: str, alone: bool = False) -> None:
    with adm.admit("cuda", n, alone=alone):
        events.append(name)


def test_the_worker_holds_earlier_outputs_only_within_its_budget():
    a, b, c = (torch.empty(100, dtype=torch.uint8) for _ in range(3))
    assert _window([a, b, c], 1, 250) == [b, c]  # c, the latest, always; b fits; a would not
    assert _window([a, b, c], 1, 50) == [c]  # the latest even over budget
    assert _window([a, b, c], 2, 1000) == [a, b, c]


def test_the_worker_compares_every_byte_of_an_input_storage():
    base = torch.arange(64, dtype=torch.float32)
    view = base[8:40].view(4, 8)
    now = base.clone()[8:40].view(4, 8)
    assert _same_storage(view, now)
    now.untyped_storage()[0] = 1  # a byte outside the view, in the same storage
    assert not _same_storage(view, now)


def test_bytes_and_flops_are_counted_without_running_the_region():
    a, b = torch.randn(64, 32), torch.randn(32, 16)
    counted = work(lambda x, y: x @ y, [a, b])
    assert counted == {"bytes": float((64 * 32 + 32 * 16 + 64 * 16) * 4), "flops": float(2 * 64 * 32 * 16)}


def test_the_default_parallelism_follows_the_cores(monkeypatch):
    monkeypatch.setattr(engine.os, "cpu_count", lambda: 16)
    assert engine.default_parallel("cuda") == engine.MAX_PARALLEL
    monkeypatch.setattr(engine.os, "cpu_count", lambda: 2)
    assert engine.default_parallel("cuda") == 1
    assert engine.default_parallel("cpu") == 1


def test_the_marked_poison_is_never_a_nan_that_arithmetic_writes(monkeypatch):
    """A GPU writes NaN as all-ones payload (0x7FFFFFFF, and 0x7FFF in bfloat16); a poison equal to it made a
    correct softmax's NaN rows read as never written (seen on the H200, about 1 in 126 marked calls)."""
    from llm_inductor.verify import guard

    monkeypatch.setattr(guard.secrets, "randbits", lambda n: 0)  # sign bit clear
    for dtype, (_, base, payload) in guard.NAN_LAYOUT.items():
        monkeypatch.setattr(guard.secrets, "randbelow", lambda n: n - 1)  # the largest payload it can draw
        top = guard._draw(dtype)
        assert top == base | ((1 << payload) - 2) and top != base | ((1 << payload) - 1), dtype
        monkeypatch.setattr(guard.secrets, "randbelow", lambda n: 0)
        assert guard._draw(dtype) == base | 1, dtype  # nor 0, the x86 canonical NaN
    # torch on the host writes NaN in bfloat16 as 0xFFFF: all-ones payload as well, never a marked poison.
    host = int(torch.tensor([float("nan")]).to(torch.bfloat16).view(torch.int16)) & 0x7FFF
    assert host == 0x7FC0 | 0x3F


def test_noise_fills_fresh_memory_in_place():
    from llm_inductor.verify import guard

    p = guard.Poison(marked=False)
    for dtype in (torch.bfloat16, torch.float32, torch.int32, torch.bool):
        t = torch.zeros(4096, dtype=dtype)
        p.fill(t)
        assert t.dtype == dtype and t.float().std() > 0  # data-like values, written into t itself
