"""AOTAutograd's token follows the size records a graph's family entries looked up, and no others.

A size record (cache/sizes.py) is not in the store's generation: timing one family at one size must not
invalidate every AOTAutograd entry of a team. A graph's compile record lists the size records its pass
looked up and what it found; while the same lookups find the same, its token stays (a hit), and when one
changes, so does the token (a miss, and a compile that sees the new record). A graph with no record yet
follows every size record.
"""

from __future__ import annotations

import json
import time

from llm_inductor.cache.sizes import record_key
from llm_inductor.cache.store import MemoryStore
from llm_inductor.compile.aot import family_token
from support.cache_entries import make_family_entry, make_size_record

AT_12 = {"s0": 12, "s1": 33}
BASE = "b" * 32


def compile_record(path, token: str, lookups: dict[str, str], base: str = BASE):
    """A compile record as aot.Record writes it: one graph whose regions looked these size records up."""
    rows = [
        {"key16": f"{i:016x}", "family_lookup": lookup, "family_answer": answer}
        for i, (lookup, answer) in enumerate(lookups.items())
    ]
    rows.append({"key16": "f" * 16, "family_lookup": None})  # a region with no family entry: looked nothing up
    data = {"token": token, "base": base, "passes": [{"counters": {}, "reports": [{"regions": rows}]}]}
    path.write_text(json.dumps(data))
    return path


def test_the_token_stays_while_its_lookups_find_the_same_and_moves_when_one_changes(tmp_path):
    store = MemoryStore()
    fam, other = make_family_entry("rms family"), make_family_entry("another family")
    lookup = record_key(fam.entry_id, "cpu", "default", AT_12)
    # The graph's last compile looked up fam at 12 rows and found no record ("-"), under token "t1".
    path = compile_record(tmp_path / "graph.json", "t1", {lookup: "-"})
    assert family_token(BASE, store, path) == "t1"  # an AOTAutograd hit

    store.put_size(make_size_record(other, AT_12))  # another family's record
    store.put_size(make_size_record(fam, {"s0": 64, "s1": 33}))  # this family at other sizes
    store.put_size(make_size_record(fam, AT_12, inductor_mode="max-autotune-no-cudagraphs"))  # another mode
    assert family_token(BASE, store, path) == "t1"  # none of those is what this graph would serve

    won = make_size_record(fam, AT_12)
    store.put_size(won)  # the record this graph looks up: now it would be served
    moved = family_token(BASE, store, path)
    assert moved != "t1"
    # The compile that follows records what it found, and from then on the token stays.
    path = compile_record(tmp_path / "graph.json", moved, {lookup: won.content_hash})
    assert family_token(BASE, store, path) == moved
    store.put_size(make_size_record(fam, AT_12, won=False, speedup=0.9, created=time.time() + 1))  # retimed: lost
    assert family_token(BASE, store, path) not in ("t1", moved)


def test_a_graph_without_a_record_under_this_base_follows_every_size_record(tmp_path):
    store = MemoryStore()
    missing = tmp_path / "never_compiled.json"
    before = family_token(BASE, store, missing)
    assert before == family_token(BASE, store, missing)
    store.put_size(make_size_record(make_family_entry("any family"), {"s0": 3, "s1": 5}))
    after = family_token(BASE, store, missing)
    assert after != before
    # A record made under another base (an entry was added since) is no record for this one.
    other_base = compile_record(tmp_path / "old.json", "t0", {}, base="a" * 32)
    assert family_token(BASE, store, other_base) == after
    # A graph whose regions looked nothing up keeps its token under its base.
    assert family_token(BASE, store, compile_record(tmp_path / "plain.json", "t2", {})) == "t2"


def test_a_store_without_size_records_adds_nothing(tmp_path):
    class Plain:  # a KernelStore that predates size records
        def lookup(self, key):
            return None

    assert family_token(BASE, Plain(), compile_record(tmp_path / "g.json", "t", {"x|cpu|default|s0=2": "-"})) == BASE


def test_a_dynamic_graphs_token_follows_every_record_in_its_range_and_no_other(tmp_path):
    from llm_inductor.cache.sizes import judge_range, range_text

    store = MemoryStore()
    fam = make_family_entry("rms family")
    ranges = {"s0": (2, 16), "s1": (33, 33)}
    lookup = f"{fam.entry_id}|cpu|default|{range_text(ranges)}"
    path = compile_record(
        tmp_path / "c.json", "t1", {lookup: judge_range(store, fam.entry_id, "cpu", "default", ranges).answer}
    )
    assert family_token(BASE, store, path) == "t1"
    store.put_size(make_size_record(fam, {"s0": 64, "s1": 33}))  # outside its size classes: the same token
    assert family_token(BASE, store, path) == "t1"
    store.put_size(make_size_record(fam, {"s0": 12, "s1": 33}))  # inside: a new token
    assert family_token(BASE, store, path) != "t1"
