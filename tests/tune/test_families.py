"""Size families end to end on the CPU: tune once, then serve other batch sizes by verification alone.

The LLM (a loopback server) writes one RMSNorm kernel for 8 rows. The winner is verified across its
family's sizes and stored as the family's kernel, with a size record at 8 rows. A compile at 12 rows
misses, pending with "timing needed at this size"; ``tune --pending`` with no provider at all verifies the
family kernel at 12 rows and records it; the next compile at 12 rows serves it. A kernel right at the
size it was tuned at only never becomes a family's.
"""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch

import llm_inductor
from llm_inductor.cli import main
from llm_inductor.compile import state as _state
from llm_inductor.config import Config
from support.loopback import LoopbackLLM, Reply, sequence
from support.search import GOOD, answer, verifier

W = torch.randn(33)


def rms(x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * W


SCRIPT = """
import torch
w = torch.randn(33)
def f(x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w
with torch.no_grad():
    torch.compile(f, backend="llm")(torch.randn(8, 33))
"""

# Divides by the 33 columns it was shown rather than by N: right at 33, wrong at the family's 1, 17 and 49.
FITTED = GOOD.replace("tl.sum(x * x, axis=0) / N + eps", "tl.sum(x * x, axis=0) / 33 + eps")


def compile_rows(
    rows: int, dynamic: bool = False, **options: bool
) -> tuple[torch.Tensor, list[_state.RegionRow], dict]:
    _state.reset()
    torch._dynamo.reset()
    x = torch.randn(rows, 33)
    with torch.no_grad():
        out = torch.compile(rms, backend=llm_inductor.backend(min_region_us=0, **options), dynamic=dynamic)(x)
    torch.testing.assert_close(out, rms(x), rtol=1e-5, atol=1e-5)
    return out, [row for r in _state.reports for row in r.regions], llm_inductor.stats()


def tune_script(tmp_path, monkeypatch, kernel: str) -> None:
    import llm_inductor.search.tune as tune_module

    script = tmp_path / "model.py"
    script.write_text(SCRIPT)
    monkeypatch.setattr(tune_module, "default_verifier", verifier())
    with LoopbackLLM(sequence(Reply.text(answer(kernel)))) as llm, monkeypatch.context() as m:
        m.setenv("OPENAI_BASE_URL", llm.base_url)
        m.setenv("OPENAI_API_KEY", "sk-test")
        assert main(["tune", "--json", str(tmp_path / "summary.json"), str(script)]) == 0
    (row,) = json.loads((tmp_path / "summary.json").read_text())["rows"]
    assert row["outcome"] == "winner"


@pytest.fixture
def interpret(monkeypatch):
    monkeypatch.setenv("LLM_INDUCTOR_INTERPRET", "1")
    monkeypatch.setenv("LLM_INDUCTOR_MIN_REGION_US", "0")
    monkeypatch.setenv("LLM_INDUCTOR_MODEL", "loopback-model")
    monkeypatch.setenv("LLM_INDUCTOR_CANDIDATES", "1")
    _state.set_config(None)


def test_a_winner_travels_to_another_batch_size_with_no_llm_call(tmp_path, monkeypatch, capsys, interpret):
    tune_script(tmp_path, monkeypatch, GOOD)
    store = _state.store(Config.load()[0])
    (family,) = [r.entry for r in store.listings() if r.entry is not None and r.entry.key_fields.get("family")]
    assert family.provenance["promoted_from"].split(":")[0] != family.key  # from the region's own winner
    (first,) = [r for r, _, _ in store.size_records(family.entry_id)]
    assert first.sizes == {"s0": 8, "s1": 33} and first.won and first.verified

    # 8 rows: the region's own (exact) entry serves, as before.
    _, rows, stats = compile_rows(8)
    assert [r.status for r in rows] == ["hit"] and stats["substituted"] == 1

    # 12 rows: the family's kernel has no record there yet: a miss, pending for timing.
    _, rows, stats = compile_rows(12)
    (row,) = rows
    assert row.status == "pending (timing needed at this size)" and stats["substituted"] == 0
    assert row.family == family.key
    (pending,) = [p for p in store.pending() if p.family]
    assert pending.family["sizes"] == {"s0": 12, "s1": 33} and pending.family["entry_id"] == family.entry_id

    # A gate that cannot run (on the H200 once: the backend's name unknown to a checkout) is no verdict:
    # nothing is recorded, and the size stays pending for the next run.
    import llm_inductor.search.families as families

    failed = {"measured": False, "passed": False, "note": "not measured (graph A/B failed: InvalidBackend)"}
    with monkeypatch.context() as m:
        m.setattr(families, "in_graph_gate", lambda *a, **k: failed)
        assert main(["tune", "--pending"]) == 1  # no winner
    out = capsys.readouterr()
    assert "ungated" in out.out and "0 of 1 family size(s) now served" in out.out
    assert {r.bucket for r, _, _ in store.size_records(family.entry_id)} == {"s0=8,s1=33"}
    assert [p.family["sizes"] for p in store.pending() if p.family] == [{"s0": 12, "s1": 33}]

    # tune --pending with no provider configured: verification and timing alone.
    code = main(["tune", "--pending"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "no LLM call" in out.out and "s0=12,s1=33" in out.out and "won" in out.out
    # progress on stderr: a line as the extension starts (at large sizes it takes minutes) and one as it ends
    head = f"family {family.key[:16]} at s0=12, s1=33 (1 of 1)"
    assert f"{head}: verifying, timing and gating its kernel here" in out.err
    assert re.search(re.escape(head) + r": won,( [0-9.]+x alone,)? in \d+ s", out.err), out.err  # no timing on the CPU
    records = {r.bucket: r for r, _, _ in store.size_records(family.entry_id)}
    assert set(records) == {"s0=8,s1=33", "s0=12,s1=33"} and records["s0=12,s1=33"].won
    assert not [p for p in store.pending() if p.family]

    # 12 rows again: served from the family, at the right values (compile_rows checks them).
    _, rows, stats = compile_rows(12)
    assert [r.status for r in rows] == ["hit (family)"] and stats["substituted"] == 1

    # Compiled with dynamic shapes at 12 rows: the same family key (Dynamo's symbol is s0, 33 is s1), but the
    # graph runs at every row count, and the records name single sizes: not served, tuned as its own region.
    _, rows, stats = compile_rows(12, dynamic=True)
    (row,) = rows
    assert row.family == family.key and stats["substituted"] == 0
    assert not [p for p in store.pending() if p.family]


def test_a_kernel_right_at_its_own_size_only_stays_the_regions(tmp_path, monkeypatch, interpret):
    tune_script(tmp_path, monkeypatch, FITTED)
    store = _state.store(Config.load()[0])
    entries = [r.entry for r in store.listings() if r.entry is not None]
    assert len(entries) == 1 and not entries[0].key_fields.get("family")
    (state,) = (Config.load()[0].cache_path / "search" / "state").glob("*.json")
    promoted = json.loads(state.read_text())["result"]["family"]
    assert promoted["promoted"] is False and "not right across the family's sizes" in promoted["why"]
    assert "wrong_at_size" in promoted["why"]
    # another batch size is an ordinary miss, for the LLM
    _, rows, _ = compile_rows(12)
    assert [r.status for r in rows] == ["pending"]


def test_entries_made_before_families_are_converted_once(tmp_path, monkeypatch, capsys, interpret):
    """`tune --pending` makes a served region entry its family's kernel, once; a refusal is remembered."""
    import llm_inductor.search.tune as tune_module

    calls = []
    real = verifier()

    def counting(region_path, source, cfg):
        calls.append(region_path)
        return real(region_path, source, cfg)

    monkeypatch.setattr(tune_module, "default_verifier", counting)
    compile_rows(8)  # records the region file, as any compile of a hot miss does
    (region,) = (Config.load()[0].cache_path / "regions").glob("region_*.py")
    for name, kernel in (("good", GOOD), ("fitted", FITTED)):
        (tmp_path / f"{name}.py").write_text(kernel)
    store = _state.store(Config.load()[0])

    # A kernel right at its own size only: added by hand, then refused by the family, and not asked again.
    assert main(["cache", "add", str(region), str(tmp_path / "fitted.py")]) == 0
    assert main(["tune", "--pending"]) in (0, 1)
    assert len(calls) == 1 and "families" in calls[0]
    refused = json.loads((Config.load()[0].cache_path / "regions" / "families" / "refused.json").read_text())
    assert len(refused) == 1 and "wrong_at_size" in next(iter(refused.values()))
    main(["tune", "--pending"])
    assert len(calls) == 1
    capsys.readouterr()

    # 12 rows while the family has no kernel: pending for the LLM.
    _, rows, _ = compile_rows(12)
    assert [r.status for r in rows] == ["pending"]

    # A right one replaces it: converted, and the 12 rows recorded for the LLM before go by timing alone, in
    # the same run (on the H200, four softmax sizes compiled before the conversion were sent to the LLM).
    assert main(["cache", "add", str(region), str(tmp_path / "good.py")]) == 0
    main(["tune", "--pending"])
    assert len(calls) == 3 and "families" in calls[1] and "families" not in calls[2]
    families = [r.entry for r in store.listings() if r.entry is not None and r.entry.key_fields.get("family")]
    assert len(families) == 1 and families[0].provenance["promoted_from"]
    assert {r.bucket for r, _, _ in store.size_records(families[0].entry_id)} == {"s0=8,s1=33", "s0=12,s1=33"}
    assert store.pending() == []
    _, rows, _ = compile_rows(12)
    assert [r.status for r in rows] == ["hit (family)"]
    _, rows, _ = compile_rows(16)
    assert [r.status for r in rows] == ["pending (timing needed at this size)"]


def test_tuning_a_script_at_a_new_size_extends_the_family_without_asking_the_llm(
    tmp_path, monkeypatch, capsys, interpret
):
    """`llm-inductor tune SCRIPT.py` at a size the family has no record for: timed, and not sent to the LLM."""
    import llm_inductor.search.tune as tune_module

    tune_script(tmp_path, monkeypatch, GOOD)  # the family, with a record at 8 rows
    script = tmp_path / "model12.py"
    script.write_text(SCRIPT.replace("torch.randn(8, 33)", "torch.randn(12, 33)"))
    monkeypatch.setattr(tune_module, "default_verifier", verifier())
    capsys.readouterr()
    with LoopbackLLM(sequence(Reply.text(answer(GOOD)))) as llm, monkeypatch.context() as m:
        m.setenv("OPENAI_BASE_URL", llm.base_url)
        m.setenv("OPENAI_API_KEY", "sk-test")
        code = main(["tune", str(script)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert llm.seen == []  # the LLM was never asked
    assert "s0=12,s1=33" in out.out and "won" in out.out
    store = _state.store(Config.load()[0])
    (family,) = [r.entry for r in store.listings() if r.entry is not None and r.entry.key_fields.get("family")]
    assert {r.bucket for r, _, _ in store.size_records(family.entry_id)} == {"s0=8,s1=33", "s0=12,s1=33"}


def test_an_extensions_outcome_names_what_decided_it():
    from llm_inductor.search.families import _outcome

    ok, slower = {"outcome": "ok"}, {"outcome": "slower"}
    assert _outcome(True, True, ok, {"measured": True, "passed": True}) == "won"
    assert _outcome(False, False, {"outcome": "wrong_values"}, {}) == "wrong: wrong_values"
    assert _outcome(False, True, slower, {}) == "slower"  # timed, under the margin
    assert _outcome(False, True, ok, {"measured": True, "passed": False}) == "slows_graph"


def test_a_region_too_large_for_this_host_is_not_built_again_on_a_host_no_larger(tmp_path, monkeypatch):
    """The H200 spent every `tune --pending` on a 16384 x 128256 draw its host could not build. A host-memory
    failure stays a harness failure (pending, no record), but a host no larger skips the region; a larger tries."""
    import llm_inductor.search.families as families
    from llm_inductor.cache.store import MemoryStore, PendingRegion
    from llm_inductor.verify.host_budget import HostBudget
    from support.cache_entries import make_family_entry

    entry = make_family_entry()
    store = MemoryStore([entry])
    region = tmp_path / "region_0123456789abcdef.py"
    region.write_text("# a region file\n")
    family = {"key": entry.key, "entry_id": entry.entry_id, "sizes": {"s0": 16384, "s1": 33}}
    store.add_pending(PendingRegion(entry.key[:15] + "x", str(region), ["mul"], 1e4, 0.5, "cpu", family=family))
    calls = []

    def too_large(region_path, source, cfg):
        calls.append(region_path)
        message = "not retried, since no retry can change it: draw 'normal' needs about 78.3 GiB of host memory"
        return {"reason": "harness:host_memory", "harness_failure": True, "accepted": False, "message": message}

    def extend_once(capacity: int):
        monkeypatch.setattr(families, "HOST", HostBudget(capacity=capacity))
        (rec,) = store.pending()
        return families.extend(rec, store, Config.load()[0], "cpu", too_large)

    first = extend_once(80 * 2**30)
    assert first.outcome == "harness:host_memory" and len(calls) == 1 and first.record is None
    (rec,) = store.pending()
    assert rec.family["host_memory"]["budget"] == 80 * 2**30 and "78.3 GiB" in rec.family["host_memory"]["why"]
    assert store.size_records(entry.entry_id) == []  # no verdict
    skipped = extend_once(80 * 2**30)
    assert skipped.outcome == "harness:host_memory" and "skipped on this host" in skipped.message
    assert len(calls) == 1  # no draw built
    extend_once(160 * 2**30)  # a larger host tries again
    assert len(calls) == 2 and len(store.pending()) == 1
    # A note from before estimates were kept (or one whose draw is estimated smaller now) is tried again.
    (rec,) = store.pending()
    note = dict(rec.family["host_memory"])
    del note["needed"]
    store.add_pending(dataclasses.replace(rec, family={**rec.family, "host_memory": note}))
    extend_once(80 * 2**30)
    assert len(calls) == 3


def test_adopting_pending_regions_follows_the_records_of_this_gpu(tmp_path):
    """After a conversion: no record at a region's sizes, timed (family pending); a win or a loss there, decided
    as a compile would (resolved: served, or left with Inductor); wrong there, left for the LLM."""
    from llm_inductor.cache.store import MemoryStore, PendingRegion
    from llm_inductor.search.families import _versions, adopt
    from support.cache_entries import make_family_entry, make_size_record

    entry = make_family_entry()
    store = MemoryStore([entry])
    gpu = _versions("cpu")["gpu"]
    records = {12: None, 16: {"won": True}, 20: {"won": False, "speedup": 0.9}, 24: {"won": False, "verified": False}}
    for rows, record in records.items():
        region = tmp_path / f"region_{rows:016d}.py"
        region.write_text("# a region file\n")
        side = {"key": f"{rows:064d}", "family": {"key": entry.key, "symbols": {"s0": rows, "s1": 33}}}
        region.with_suffix(".json").write_text(json.dumps(side))
        store.add_pending(PendingRegion(f"{rows:064d}", str(region), ["mul"], rows, 0.5, "cpu"))
        if record is not None:
            store.put_size(make_size_record(entry, {"s0": rows, "s1": 33}, gpu=gpu, **record))
    (adopted,) = adopt(store, "cpu")
    assert adopted.family["sizes"] == {"s0": 12, "s1": 33} and adopted.family["reason"] == "timing needed at this size"
    assert adopted.family["entry_id"] == entry.entry_id and adopted.family["inductor_mode"] == "default"
    pending = {p.key[-2:]: p for p in store.pending()}
    assert set(pending) == {"12", "24"}  # 16 rows won and 20 lost: resolved
    assert pending["12"].family and pending["24"].family is None  # wrong at 24 rows: for the LLM, as it was


def test_family_extensions_run_the_cheapest_regions_first(tmp_path):
    """One region at a huge size (minutes of host work per draw) must not take a run's time from the others."""
    from llm_inductor.cache.store import MemoryStore, PendingRegion
    from llm_inductor.search.families import family_pending
    from support.cache_entries import make_family_entry

    entry = make_family_entry()
    store = MemoryStore([entry])
    for rows, est_us in ((16384, 900.0), (1024, 60.0), (8192, 450.0), (2048, 110.0)):
        region = tmp_path / f"region_{rows:016d}.py"
        region.write_text("# a region file\n")
        family = {"key": entry.key, "entry_id": entry.entry_id, "sizes": {"s0": rows, "s1": 33}}
        store.add_pending(PendingRegion(f"{rows:064d}", str(region), ["mul"], est_us, 0.5, "cpu", family=family))
    store.add_pending(PendingRegion("f" * 64, str(tmp_path / "gone.py"), ["mul"], 1.0, 0.5, "cpu", family=family))
    assert [r.family["sizes"]["s0"] for r in family_pending(store)] == [1024, 2048, 8192, 16384]


def test_a_winner_gated_against_default_is_timed_under_max_autotune_before_it_serves_there(
    tmp_path, monkeypatch, capsys, interpret
):
    """The same path as a new size: a compile under max-autotune meets the default-gated winner, leaves the
    region pending for that mode, and ``tune --pending`` times it there with no LLM call."""
    from llm_inductor.compile.region_pass import MAX_AUTOTUNE

    tune_script(tmp_path, monkeypatch, GOOD)
    store = _state.store(Config.load()[0])
    _, rows, stats = compile_rows(8, max_autotune=True)
    (row,) = rows
    assert row.status == f"pending (timing needed at this size, under {MAX_AUTOTUNE})" and stats["substituted"] == 0
    (pending,) = [p for p in store.pending() if p.family]
    assert pending.family["inductor_mode"] == MAX_AUTOTUNE and pending.family["sizes"] == {}
    assert main(["tune", "--pending"]) == 0, capsys.readouterr().err
    assert "no LLM call" in capsys.readouterr().out
    entry = store.lookup(pending.family["key"])
    (record,) = [r for r, _, _ in store.size_records(entry.entry_id) if r.inductor_mode == MAX_AUTOTUNE]
    assert record.sizes == {} and record.won and not [p for p in store.pending() if p.family]
    _, rows, stats = compile_rows(8, max_autotune=True)
    assert [r.status for r in rows] == ["hit"] and stats["substituted"] == 1
    _, rows, stats = compile_rows(8)  # and under default, as it was gated
    assert [r.status for r in rows] == ["hit"] and stats["substituted"] == 1
