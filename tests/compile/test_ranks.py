"""The ranks of one distributed job tune a region once, and all serve what the one decision record says."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from llm_inductor.compile import ranks
from llm_inductor.compile.ranks import Job, current_job, tune_once
from support.cache_entries import digest, make_entry, open_test_store


@dataclass(frozen=True)
class Info:  # what tune_once reads of a RegionInfo
    digest: str

    @property
    def key16(self) -> str:
        return self.digest[:16]


REGION = Info(digest("rms"))


def test_the_job_comes_from_torchrun_and_is_the_same_on_every_rank():
    env = {"WORLD_SIZE": "2", "RANK": "1", "TORCHELASTIC_RUN_ID": "abc"}
    job = current_job(env)
    assert job is not None and (job.rank, job.world) == (1, 2) and job.me == "rank 1"
    assert current_job({**env, "RANK": "0"}).id == job.id
    assert current_job({**env, "TORCHELASTIC_RUN_ID": "other"}).id != job.id
    static = {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}
    assert current_job(static).id == current_job({**static, "RANK": "1"}).id  # no run id: the rendezvous
    assert current_job({}) is None and current_job({"WORLD_SIZE": "1"}) is None
    assert current_job({"WORLD_SIZE": "two"}) is None


class Tuner:
    """The search, faked: stores a served winner for each region after `seconds`."""

    def __init__(self, store, seconds: float = 0.0) -> None:
        self.store, self.seconds, self.calls = store, seconds, []

    def __call__(self, infos) -> int:
        self.calls.append([i.key16 for i in infos])
        time.sleep(self.seconds)
        for _ in infos:
            self.store.put(make_entry("rms"))
        return len(infos)


def _ranks(tmp_path, seconds: float, wait_s: float):
    """Two ranks, two processes' stores over one cache directory, compiling at once."""
    job = current_job({"WORLD_SIZE": "2", "RANK": "0", "TORCHELASTIC_RUN_ID": "run-1"})
    out, tuners = {}, {}

    def rank(r: int) -> None:
        store = open_test_store(tmp_path)
        tuners[r] = Tuner(store, seconds)
        out[r] = tune_once([REGION], store, tuners[r], wait_s, job=Job(job.id, r, 2))

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out, tuners


def test_one_rank_tunes_and_both_serve_its_winner(tmp_path, monkeypatch):
    monkeypatch.setattr(ranks, "POLL_S", 0.02)
    out, tuners = _ranks(tmp_path, seconds=0.3, wait_s=20)
    assert sorted(len(t.calls) for t in tuners.values()) == [0, 1]  # one LLM search, not one per rank
    winner = open_test_store(tmp_path).lookup(REGION.digest)
    assert out[0] == out[1] == {REGION.digest: winner.entry_id}


def test_a_rank_that_waits_too_long_makes_every_rank_serve_inductor(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(ranks, "POLL_S", 0.02)
    out, tuners = _ranks(tmp_path, seconds=1.0, wait_s=0.2)
    assert out[0] == out[1] == {}  # the tuner's late winner is not served in this job, by any rank
    assert open_test_store(tmp_path).lookup(REGION.digest) is not None  # but kept for the next job
    assert "every rank serves Inductor there in this job" in caplog.text


def test_a_store_that_cannot_decide_leaves_the_region_with_inductor_untuned(tmp_path, caplog):
    store = open_test_store(tmp_path)
    store.claim = lambda name, value, ttl_s: None  # a read-only cache, or its shared tier down
    tuner = Tuner(store)
    assert tune_once([REGION], store, tuner, 5.0, job=Job("j", 1, 2)) == {}
    assert tuner.calls == [] and "cannot hold this job's decisions" in caplog.text


def test_a_single_process_tunes_as_before(tmp_path):
    store = open_test_store(tmp_path)
    tuner = Tuner(store)
    got = tune_once([REGION], store, tuner, 5.0, job=None)
    assert tuner.calls == [[REGION.key16]] and got == {REGION.digest: store.lookup(REGION.digest).entry_id}


@pytest.mark.parametrize("tier", ["memory", "sqlite"])
def test_claim_is_set_if_absent_and_expires(tmp_path, tier):
    from llm_inductor.cache.store import MemoryStore

    store = MemoryStore() if tier == "memory" else open_test_store(tmp_path).local
    assert store.decision("d") is None
    assert store.claim("d", "rank 0", 60) == "rank 0"
    assert store.claim("d", "rank 1", 60) == "rank 0" and store.decision("d") == "rank 0"
    assert store.claim("e", "x", -1) == "x" and store.decision("e") is None  # expired at once
    assert store.claim("e", "y", 60) == "y"
