"""The region pass and a family entry: served only where a size record says it won (cache/sizes.py).

One family entry (the tests' RMSNorm kernel for the family of an 8-row region), then a compile at 12 rows
under each record it may meet: none (pending, "timing needed at this size"), verified but slower (stays
with Inductor, nothing to tune), wrong there (an ordinary miss, for the LLM), won (served, right values).
"""

from __future__ import annotations

import json
import time

import pytest
import torch

import llm_inductor
from llm_inductor.cache.entry import Entry
from llm_inductor.cache.store import MemoryStore
from llm_inductor.compile import state as _state
from support.cache_entries import make_size_record
from support.search import GOOD

W = torch.randn(33)


def rms(x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * W


def compile_at(rows: int):
    _state.reset()
    torch._dynamo.reset()
    x = torch.randn(rows, 33)
    with torch.no_grad():
        out = torch.compile(rms, backend=llm_inductor.backend(min_region_us=0))(x)
    torch.testing.assert_close(out, rms(x), rtol=1e-5, atol=1e-5)
    (row,) = [row for r in _state.reports for row in r.regions]
    return row, llm_inductor.stats()


@pytest.fixture
def family(tmp_path, monkeypatch):
    """A MemoryStore serving GOOD as the family kernel of rms's region (from an 8-row compile)."""
    monkeypatch.setenv("LLM_INDUCTOR_INTERPRET", "1")
    _state.set_config(None)
    seen = []
    with torch.no_grad(), _state.overridden(graph_hook=lambda gm, kind, infos: seen.extend(infos)):
        torch.compile(rms, backend=llm_inductor.backend(mode="discover", min_region_us=0))(torch.randn(8, 33))
    (info,) = seen
    path = info.family.write(tmp_path / "families")
    side = json.loads(path.with_suffix(".json").read_text())
    entry = Entry(
        key=side["key"],
        key_fields=side["key_fields"],
        kernel_source=GOOD,
        region_source=path.read_text(),
        region_meta=side,
        provenance={"provider": "test"},
    )
    store = MemoryStore([entry])
    _state.set_store(store)
    return store, entry


def test_no_record_is_pending_for_timing(family):
    store, entry = family
    row, stats = compile_at(12)
    assert row.status == "pending (timing needed at this size)" and stats["substituted"] == 0
    (pending,) = store.pending()
    assert pending.family["entry_id"] == entry.entry_id and pending.family["sizes"] == {"s0": 12, "s1": 33}
    assert pending.family["inductor_mode"] == "default"
    assert row.family_lookup.startswith(entry.entry_id) and row.family_answer == "-"


def test_slower_there_stays_with_inductor_and_is_not_tuned_again(family):
    store, entry = family
    store.put_size(make_size_record(entry, {"s0": 12, "s1": 33}, won=False, speedup=0.9))
    row, stats = compile_at(12)
    assert row.status == "family: slower at this size (0.90x)" and stats["substituted"] == 0
    assert store.pending() == []


def test_faster_alone_but_slower_in_its_graph_says_so(family):
    store, entry = family
    gate = {"measured": True, "passed": False, "without_ms": 0.3587, "with_ms": 0.3910}
    store.put_size(make_size_record(entry, {"s0": 12, "s1": 33}, won=False, speedup=2.49, graph_ab=gate))
    row, stats = compile_at(12)
    assert row.status == "family: slower at this size (2.49x alone, but its graph 0.359 -> 0.391 ms)"
    assert stats["substituted"] == 0 and store.pending() == []
    # the gate also measured the host's time per call: more than the graph's time, so the GPU waited for it
    host = {**gate, "with_host_us": 330.0, "without_host_us": 47.2}  # 330 of 391 us: the GPU waited
    newer = time.time() + 5
    store.put_size(make_size_record(entry, {"s0": 12, "s1": 33}, won=False, speedup=2.49, graph_ab=host, created=newer))
    row, _ = compile_at(12)
    assert row.status.endswith("0.359 -> 0.391 ms, host-bound (330 us per call))"), row.status


def test_a_win_that_hangs_on_the_hosts_launch_speed_is_not_served(family):
    """Recorded as won (the H200's softmax gate at 2048 rows), but host-bound: a slower host loses (sizes.host_risk)."""
    store, entry = family
    gate = {"measured": True, "passed": True, "without_ms": 0.1534, "with_ms": 0.0944}
    host = {**gate, "with_host_us": 101.1, "without_host_us": 30.7}
    store.put_size(make_size_record(entry, {"s0": 12, "s1": 33}, won=True, speedup=1.61, graph_ab=host))
    row, stats = compile_at(12)
    assert stats["substituted"] == 0 and store.pending() == []
    assert row.status == (
        "family: slower at this size (1.61x alone, its graph 0.153 -> 0.094 ms, but host-bound (101 us per call): "
        "slower on a host 2x slower to launch)"
    ), row.status
    # A record the gate failed by that rule (made since) says the same, not "but its graph 0.153 -> 0.094 ms".
    failed = {**host, "passed": False}
    newer = time.time() + 5
    store.put_size(
        make_size_record(entry, {"s0": 12, "s1": 33}, won=False, speedup=1.61, graph_ab=failed, created=newer)
    )
    again, _ = compile_at(12)
    assert again.status == row.status


def test_wrong_there_is_an_ordinary_miss_for_the_llm(family):
    store, entry = family
    store.put_size(make_size_record(entry, {"s0": 12, "s1": 33}, verified=False, won=False, why="wrong_at_size"))
    row, stats = compile_at(12)
    assert row.status == "pending" and stats["substituted"] == 0
    (pending,) = store.pending()
    assert pending.family is None


def test_won_there_is_served_with_the_right_values_and_only_there(family):
    store, entry = family
    won = make_size_record(entry, {"s0": 12, "s1": 33})
    store.put_size(won)
    row, stats = compile_at(12)  # compile_at checks the values against eager
    assert row.status == "hit (family)" and stats["substituted"] == 1
    assert row.family_answer == won.content_hash
    # another mode's record, or another size's, serves nothing here
    store.put_size(make_size_record(entry, {"s0": 16, "s1": 33}, inductor_mode="max-autotune-no-cudagraphs"))
    row, stats = compile_at(16)
    assert row.status == "pending (timing needed at this size)" and stats["substituted"] == 0
    # a newer record that lost replaces the win
    store.put_size(make_size_record(entry, {"s0": 12, "s1": 33}, won=False, speedup=0.95, created=time.time() + 5))
    row, stats = compile_at(12)
    assert row.status.startswith("family: slower at this size") and stats["substituted"] == 0


def test_a_graph_that_views_its_input_is_served_by_the_core_s_family(family):
    store, entry = family
    store.put_size(make_size_record(entry, {"s0": 12, "s1": 33}))
    _state.reset()
    torch._dynamo.reset()
    x = torch.randn(2, 6, 33)  # 12 rows as batch x sequence, flattened in the graph

    def flat(x):
        return rms(x.view(-1, 33))

    with torch.no_grad():
        out = torch.compile(flat, backend=llm_inductor.backend(min_region_us=0))(x)
    torch.testing.assert_close(out, flat(x), rtol=1e-5, atol=1e-5)
    (row,) = [row for r in _state.reports for row in r.regions]
    assert row.core and row.status == "hit (family)" and llm_inductor.stats()["substituted"] == 1


def test_an_unknown_region_that_views_its_input_is_recorded_as_its_core(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(tmp_path))
    store = MemoryStore([])
    _state.set_config(None)
    _state.set_store(store)
    for x, fn in ((torch.randn(2, 6, 33), lambda x: rms(x.view(-1, 33))), (torch.randn(12, 33), rms)):
        _state.reset()
        torch._dynamo.reset()
        with torch.no_grad():
            torch.compile(fn, backend=llm_inductor.backend(mode="cache", min_region_us=0))(x)
    # both graphs are one pending region: a kernel tuned for it serves both
    assert len({p.key for p in store.pending()}) == 1


def compile_bounded(rows: list[int], high: int | None = 16):
    """Compiled with dynamic rows, bounded by mark_dynamic, then run at each of rows (values checked)."""
    _state.reset()
    torch._dynamo.reset()
    f = torch.compile(rms, backend=llm_inductor.backend(min_region_us=0))
    with torch.no_grad():
        for n in rows:
            x = torch.randn(n, 33)
            torch._dynamo.mark_dynamic(x, 0, **({} if high is None else {"min": 2, "max": high}))
            torch.testing.assert_close(f(x), rms(x), rtol=1e-5, atol=1e-5)
    (row,) = [row for r in _state.reports for row in r.regions]
    return row, llm_inductor.stats()


def test_a_bounded_dynamic_graph_is_served_only_where_every_size_class_won(family):
    store, entry = family
    for n in (3, 5, 12):  # the classes 2-3, 4-7 and 8-15 rows; 16-31 has no record yet
        store.put_size(make_size_record(entry, {"s0": n, "s1": 33}))
    row, stats = compile_bounded([7, 3, 16])
    # tuned as its own region meanwhile, with the reason (tune --pending does not time size classes)
    assert row.status == "pending (dynamic shapes: 1 of 4 size classes its guards admit are not timed)"
    assert stats["substituted"] == 0 and row.family_lookup.endswith("|range:s0=2..16,s1=33..33")
    store.put_size(make_size_record(entry, {"s0": 16, "s1": 33}))
    row, stats = compile_bounded([7, 3, 16])  # one graph for the three sizes, each checked against eager
    assert row.status == "hit (family)" and stats["substituted"] == 1 and stats["kernel_calls"] == 3
    store.put_size(make_size_record(entry, {"s0": 6, "s1": 33}, won=False, speedup=0.8))
    row, stats = compile_bounded([7])
    assert row.status == "pending (dynamic shapes: not a winner at s0=6,s1=33)" and stats["substituted"] == 0
    # unbounded (Dynamo's default for a dynamic dim): never served from records of single sizes
    row, stats = compile_bounded([7], high=None)
    assert "unbounded" in row.status and stats["substituted"] == 0
