"""An exact entry is served under the Inductor mode it was gated against; under another, once timed there.

A kernel gated against default Inductor can lose to max-autotune's code, and one gated against max-autotune
was never timed against default's: a compile under the other mode leaves the region pending with "timing
needed" for that mode (``tune --pending`` verifies, times and gates the kernel under it, with no LLM call),
and serves the kernel only where that mode's size record says it won.
"""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch

import llm_inductor
from llm_inductor.cache.store import MemoryStore
from llm_inductor.compile import state as _state
from llm_inductor.compile.region_pass import MAX_AUTOTUNE, SLOWER_MODE
from support.cache_entries import make_size_record
from support.util import rmsnorm_entry, serve


@pytest.fixture
def served(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LLM_INDUCTOR_INTERPRET", "1")  # kernels run on the CPU
    _state.set_config(None)
    model, x, entry = rmsnorm_entry(tmp_path)
    store = MemoryStore([entry])
    _state.set_store(store)
    return model, x, entry, store


def run(model, x, **options):
    out = serve(model, x, **options)
    torch.testing.assert_close(out, model(x), rtol=1e-5, atol=1e-5)  # whatever serves, the values are right
    (row,) = [row for r in _state.reports for row in r.regions]
    return row, llm_inductor.stats()["substituted"]


def test_served_under_the_mode_it_was_gated_against_and_pending_under_another(served):
    model, x, entry, store = served
    assert (entry.region_meta.get("baseline_inductor_mode") or "default") == "default"
    row, substituted = run(model, x)
    assert row.status == "hit" and substituted == 1
    row, substituted = run(model, x, max_autotune=True)
    assert substituted == 0 and row.status == f"pending (timing needed at this size, under {MAX_AUTOTUNE})"
    (pending,) = store.pending()
    assert pending.family == {
        "key": entry.key,
        "entry_id": entry.entry_id,
        "sizes": {},
        "inductor_mode": MAX_AUTOTUNE,
        "reason": f"timing needed at this size, under {MAX_AUTOTUNE}",
    }


def test_a_record_under_the_other_mode_decides(served):
    model, x, entry, store = served
    store.put_size(make_size_record(entry, {}, inductor_mode=MAX_AUTOTUNE))  # won under max-autotune
    row, substituted = run(model, x, max_autotune=True)
    assert row.status == "hit" and substituted == 1
    lost = make_size_record(entry, {}, inductor_mode=MAX_AUTOTUNE, won=False, speedup=0.9, created=time.time() + 5)
    store.put_size(lost)
    row, substituted = run(model, x, max_autotune=True)
    assert substituted == 0 and row.status.startswith(SLOWER_MODE) and not store.pending(), row.status
    wrong = make_size_record(entry, {}, inductor_mode=MAX_AUTOTUNE, verified=False, won=False, created=time.time() + 10)
    store.put_size(wrong)
    row, substituted = run(model, x, max_autotune=True)
    assert substituted == 0 and row.status == "pending" and store.pending()[0].family is None  # for the LLM


def test_an_entry_gated_against_max_autotune_waits_for_a_default_record(served):
    model, x, entry, store = served
    meta = {**entry.region_meta, "baseline_inductor_mode": MAX_AUTOTUNE}
    store = MemoryStore([dataclasses.replace(entry, region_meta=meta)])
    _state.set_store(store)
    row, substituted = run(model, x, max_autotune=True)
    assert row.status == "hit" and substituted == 1
    row, substituted = run(model, x)
    assert substituted == 0 and row.status == "pending (timing needed at this size, under default)"
