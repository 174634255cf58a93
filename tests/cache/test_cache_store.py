"""The local tier and the tiered store: round trips, signing, trust verdicts, revocation, pending records."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
import stat
import time

import pytest

from llm_inductor.cache import sign
from llm_inductor.cache.entry import Entry, EntryError
from llm_inductor.cache.store import KernelStore, PendingRegion
from llm_inductor.cache.trust import forget_reports
from support.cache_entries import digest, make_entry, open_test_store


@pytest.fixture(autouse=True)
def _fresh_reports():
    forget_reports()


def test_round_trip_signs_with_the_local_key_and_serves(tmp_path):
    store = open_test_store(tmp_path)
    assert isinstance(store, KernelStore)
    stored = store.put(make_entry())
    key_file = tmp_path / "keys" / "local.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stored.signer == sign.load_public(tmp_path / "keys" / "local.pub").fingerprint
    fresh = open_test_store(tmp_path)  # another process: nothing in memory
    hit = fresh.lookup(stored.key)
    assert hit is not None and hit.entry_id == stored.entry_id and hit.kernel_source == stored.kernel_source
    assert fresh.get(stored.entry_id).entry_id == stored.entry_id
    assert fresh.get(stored.key + ":" + "0" * 16) is None


def test_repeated_lookups_are_served_from_memory(tmp_path, monkeypatch):
    store = open_test_store(tmp_path)
    stored = store.put(make_entry())
    assert store.lookup(stored.key) is not None
    assert store.lookup(digest("absent")) is None
    calls = []
    monkeypatch.setattr(store.local, "bodies_for_key", lambda key: calls.append(key) or [])
    for _ in range(3):
        assert store.lookup(stored.key).entry_id == stored.entry_id
        assert store.lookup(digest("absent")) is None
    assert calls == []
    store.flush()
    assert store.local.counters() == {"hits": 4, "misses": 4}


def test_unknown_schema_is_a_miss(tmp_path):
    store = open_test_store(tmp_path)
    entry = store.signer().sign(make_entry())
    body = json.loads(entry.to_json())
    body["schema"] = 99
    store.local.put(entry.entry_id, entry.key, entry.content_hash, entry.created, json.dumps(body))
    with pytest.raises(EntryError) as e:
        Entry.from_json(json.dumps(body))
    assert e.value.reason == "schema"
    assert store.lookup(entry.key) is None


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda d: "{not json", "malformed"),
        (lambda d: json.dumps([d]), "malformed"),
        (lambda d: json.dumps({**d, "region_meta": "a string"}), "malformed"),
        (lambda d: json.dumps({k: v for k, v in d.items() if k != "kernel_source"}), "malformed"),
        (lambda d: json.dumps({**d, "schema": 2}), "schema"),
        (lambda d: json.dumps({**d, "envelope": {"s0": [1, 10**6]}}), "tampered"),
    ],
)
def test_entry_parse_errors_carry_reason_codes(damage, reason):
    good = json.loads(make_entry().to_json())
    assert Entry.from_json(json.dumps(good)).content_hash == good["content_hash"]
    with pytest.raises(EntryError) as e:
        Entry.from_json(damage(good))
    assert e.value.reason == reason


def test_tampered_source_is_refused_with_a_warning_naming_the_key(tmp_path, caplog):
    store = open_test_store(tmp_path)
    good = store.put(make_entry("a"))
    evil = dataclasses.replace(good, kernel_source=good.kernel_source + "\nimport os\n")
    # 1: the stored content hash no longer matches; 2: the hash is recomputed but the signature is the old one
    body = json.loads(good.to_json())
    body["kernel_source"] = evil.kernel_source
    store.local.put(good.key + ":tampered00000001", good.key, good.content_hash, time.time(), json.dumps(body))
    second = store.put(make_entry("b"))
    forged = dataclasses.replace(second, kernel_source=evil.kernel_source)
    store.local.delete([second.entry_id])
    store.local.put(forged.entry_id, forged.key, forged.content_hash, forged.created, forged.to_json())
    fresh = open_test_store(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert fresh.lookup(second.key) is None
        hit = fresh.lookup(good.key)  # the intact entry of that key is still served
    assert hit is not None and "import os" not in hit.kernel_source
    text = caplog.text
    assert f"refused kernel {second.key[:16]}" in text and "tampered" in text
    assert f"refused an entry for key {good.key[:16]}" in text and "content hash mismatch" in text


def test_untrusted_key_other_versions_and_gpu_are_misses_naming_cache_verify(tmp_path, caplog):
    store = open_test_store(tmp_path)
    other_team = sign.SigningKey(sign._crypto().Ed25519PrivateKey.generate(), "other team")
    old_torch = make_entry("old", versions={**make_entry().versions, "torch": "2.9.1"})
    other_gpu = make_entry("gpu", versions={**make_entry().versions, "gpu": "NVIDIA A100"})
    entries = [other_team.sign(make_entry("team")), store.put(old_torch), store.put(other_gpu), make_entry("unsigned")]
    store.write(entries[-1], sign_unsigned=False)
    store.write(entries[0], sign_unsigned=False)
    fresh = open_test_store(tmp_path)
    with caplog.at_level(logging.WARNING):
        for e in entries:
            assert fresh.lookup(e.key) is None
            assert fresh.lookup(e.key) is None  # a second lookup says nothing more
    reasons = {e.key[:16]: str(fresh.judge(e)).split(":")[0] for e in entries}
    assert reasons == {
        entries[0].key[:16]: "untrusted_key",
        entries[1].key[:16]: "torch_version",
        entries[2].key[:16]: "gpu_model",
        entries[3].key[:16]: "unsigned",
    }
    lines = [r.getMessage() for r in caplog.records if "cache verify" in r.getMessage()]
    assert len(lines) == 4 and all(any(e.key[:16] in line for line in lines) for e in entries)


def test_trusting_the_other_teams_public_key_serves_its_entries(tmp_path):
    keys = tmp_path / "their_keys"
    key_path, pub_path = sign.generate(keys, "team")
    theirs = sign.load_private(key_path).sign(make_entry("team"))
    mine = open_test_store(tmp_path / "mine")
    mine.write(theirs, sign_unsigned=False)
    assert open_test_store(tmp_path / "mine").lookup(theirs.key) is None
    trusting = open_test_store(tmp_path / "mine", LLM_INDUCTOR_TRUSTED_KEYS=str(keys))  # a folder of .pub files
    assert trusting.lookup(theirs.key).entry_id == theirs.entry_id


def test_revoked_key_and_content_hash_are_not_served(tmp_path):
    store = open_test_store(tmp_path)
    a, b = store.put(make_entry("a")), store.put(make_entry("b"))
    assert store.lookup(a.key) is not None and store.lookup(b.key) is not None
    store.revoke(f"key:{a.key}", "bad numerics")
    store.revoke(f"hash:{b.content_hash}", "")
    assert store.lookup(a.key) is None and store.lookup(b.key) is None and store.get(a.entry_id) is None
    fresh = open_test_store(tmp_path)
    assert fresh.lookup(a.key) is None and fresh.lookup(b.key) is None
    assert str(fresh.judge(a)).startswith("revoked")


def test_policy_failing_entry_is_refused(tmp_path, caplog):
    store = open_test_store(tmp_path, policy=lambda src: ["import of os"] if "import os" in src else [])
    bad = store.put(make_entry("bad", kernel_source="import os\n" + make_entry().kernel_source))
    with caplog.at_level(logging.WARNING):
        assert store.lookup(bad.key) is None
    assert f"refused kernel {bad.key[:16]}" in caplog.text and "import of os" in caplog.text


def test_best_servable_entry_wins_and_old_ids_stay_reachable(tmp_path):
    store = open_test_store(tmp_path)
    slow = store.put(make_entry(speed={"cpu": {"speedup": 1.1}}))
    fast = store.put(make_entry(speed={"cpu": {"speedup": 1.6}}))
    assert store.lookup(slow.key).entry_id == fast.entry_id
    assert store.get(slow.entry_id).entry_id == slow.entry_id  # a graph compiled against the older one


def test_pending_records_count_sightings_and_resolve_on_put(tmp_path):
    store = open_test_store(tmp_path)

    def rec(key, us):
        return PendingRegion(
            key=key,
            region_path=f"/r/{key[:16]}.py",
            ops=["mul"],
            est_us=us,
            share=0.5,
            device="cpu",
        )

    store.add_pending(rec(digest("x"), 3.0))
    store.add_pending(rec(digest("x"), 3.0))
    store.add_pending(rec(digest("y"), 9.0))
    got = open_test_store(tmp_path).pending()
    assert [(p.key, p.seen) for p in got] == [(digest("y"), 1), (digest("x"), 2)]
    store.put(make_entry("y"))
    assert [p.key for p in store.pending()] == [digest("x")]
    store.resolve_pending(digest("x"))
    assert store.pending() == []


def test_a_pending_record_says_what_it_waits_for_now_and_keeps_its_first_sighting(tmp_path):
    """A region first pending for the LLM, then for timing of its family's kernel (or back): the newest wins."""
    store = open_test_store(tmp_path)
    first = PendingRegion(key=digest("x"), region_path="/r/x.py", ops=["mul"], est_us=3.0, share=0.5, device="cpu")
    first.first_seen = 1000.0
    store.add_pending(first)
    family = {"key": digest("f"), "entry_id": "e", "sizes": {"s0": 12}, "reason": "timing needed at this size"}
    store.add_pending(dataclasses.replace(first, family=family, first_seen=2000.0))
    (got,) = open_test_store(tmp_path).pending()
    assert got.family == family and got.seen == 2 and got.first_seen == 1000.0
    store.add_pending(dataclasses.replace(first, family=None, first_seen=3000.0))  # wrong there: for the LLM
    (got,) = open_test_store(tmp_path).pending()
    assert got.family is None and got.seen == 3 and got.first_seen == 1000.0


def _writer(cache: str, index: int, n: int, total: int, barrier, results) -> None:
    """One of n processes: write its share of the entries while reading everyone's."""
    barrier.wait(timeout=60)  # all at once
    store = open_test_store(cache)
    read = 0
    for k in range(index, total, n):
        assert store.write(make_entry(f"concurrent-{k}"))[1] == ["local"]
        reader = open_test_store(cache)  # no memory tier: every lookup reads the database
        read += sum(reader.lookup(digest(f"concurrent-{j}")) is not None for j in range(index % 5, total, 20))
    assert all(open_test_store(cache).lookup(digest(f"concurrent-{k}")) for k in range(index, total, n))
    results.put(read)


def test_eight_processes_write_and_read_200_entries(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")  # torch is imported already: forking skips 8 imports
    barrier, results = ctx.Barrier(8), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), i, 8, 200, barrier, results)) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * 8
    reads = [results.get(timeout=5) for _ in procs]
    assert sum(reads) > 0  # the workers saw each other's entries while writing
    store = open_test_store(tmp_path)
    rows = store.local.rows()
    assert len(rows) == 200
    seen = set()
    for r in rows:
        entry = Entry.from_json(r["body"])  # intact: the content hash matches
        assert store.judge(entry).servable  # and signed by this cache's (single, raced-for) local key
        seen.add(entry.region_source.strip().removeprefix("# region "))
    assert seen == {f"concurrent-{n}" for n in range(200)}
    with sqlite3.connect(store.local.path) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_entry_failing_the_real_policy_is_never_imported(tmp_path, caplog):
    pytest.importorskip("llm_inductor.verify.policy")
    from llm_inductor.compile import runtime as _runtime

    marker = tmp_path / "imported"
    evil = f"import os\nopen({str(marker)!r}, 'w').write('ran')\n" + make_entry().kernel_source
    store = open_test_store(tmp_path / "cache", policy=None)  # the real llm_inductor.verify.policy
    stored = store.put(make_entry("evil", kernel_source=evil))  # signed by a trusted key all the same
    fresh = open_test_store(tmp_path / "cache", policy=None)
    with caplog.at_level(logging.WARNING):
        assert fresh.lookup(stored.key) is None
        assert fresh.get(stored.entry_id) is None
    assert f"refused kernel {stored.key[:16]}" in caplog.text and "policy:" in caplog.text
    _runtime.set_resolver(fresh.get)  # what an FX-cache replay naming this entry would do
    try:
        with pytest.raises(RuntimeError, match="not in any cache tier"):
            _runtime.kernel(stored.entry_id, [])
    finally:
        _runtime.set_resolver(None)
    assert not marker.exists()


def test_revocation_in_a_pack_reaches_every_tier(tmp_path):
    from llm_inductor.cache.pack import write_pack

    maker = open_test_store(tmp_path / "maker")
    local_one, pack_one = maker.put(make_entry("local")), maker.put(make_entry("packed"))
    withdraw = tmp_path / "withdraw.jsonl"
    from llm_inductor.cache.trust import Revocation

    signed = [
        Revocation(t, "withdrawn").signed_with(maker.signer())
        for t in (f"key:{local_one.key}", f"hash:{pack_one.content_hash}")
    ]
    write_pack(withdraw, [], signed)
    shipped = tmp_path / "shipped.jsonl"
    write_pack(shipped, [pack_one])
    packs = os.pathsep.join([str(shipped), str(withdraw)])
    consumer = open_test_store(tmp_path / "maker", LLM_INDUCTOR_PACKS=packs)
    assert consumer.lookup(local_one.key) is None  # in the local tier, revoked by a pack
    other = open_test_store(
        tmp_path / "other",
        LLM_INDUCTOR_PACKS=packs,
        LLM_INDUCTOR_TRUSTED_KEYS=str(tmp_path / "maker" / "keys" / "local.pub"),
    )
    assert other.lookup(pack_one.key) is None  # in a pack, revoked by another pack
    assert open_test_store(
        tmp_path / "other",
        LLM_INDUCTOR_PACKS=str(shipped),
        LLM_INDUCTOR_TRUSTED_KEYS=str(tmp_path / "maker" / "keys" / "local.pub"),
    ).lookup(pack_one.key)


def test_generation_changes_with_what_can_be_served_and_only_then(tmp_path):
    """The backend keys AOTAutograd's cache on it: every change a lookup could see must change it."""
    from llm_inductor.cache.pack import write_pack

    pack = tmp_path / "team.jsonl"
    write_pack(pack, [])
    store = open_test_store(tmp_path / "c", LLM_INDUCTOR_PACKS=str(pack))
    seen = [store.generation()]

    def changed() -> bool:
        seen.append(open_test_store(tmp_path / "c", LLM_INDUCTOR_PACKS=str(pack)).generation())  # another process
        assert seen[-1] == store.generation()
        return seen[-1] != seen[-2]

    assert not changed()
    entry = store.put(make_entry())  # creates the local signing key too
    assert changed()
    store.add_pending(
        PendingRegion(key=digest("other"), region_path="r.py", ops=[], est_us=1.0, share=0.5, device="cpu")
    )
    assert store.lookup(entry.key) is not None
    store.flush()  # hit counts and pending records change nothing a lookup returns
    assert not changed()
    store.revoke(f"key:{digest('x')}", "test")
    assert changed()
    store.remove([entry.entry_id])
    assert changed()
    write_pack(pack, [make_entry("shipped")])
    assert changed()
    (tmp_path / "trusted.pub").write_bytes((tmp_path / "c" / "keys" / "local.pub").read_bytes())
    with_key = open_test_store(
        tmp_path / "c", LLM_INDUCTOR_PACKS=str(pack), LLM_INDUCTOR_TRUSTED_KEYS=str(tmp_path / "trusted.pub")
    )
    assert with_key.generation() not in seen
    assert len(set(seen)) == len(seen) - 2  # exactly the two "not changed" steps repeated a token


def test_generation_change_drops_what_the_process_remembered(tmp_path):
    """A lookup remembered before another process revoked the key is not served after the next generation()."""
    mine, other = open_test_store(tmp_path), open_test_store(tmp_path)
    entry = mine.put(make_entry())
    mine.generation()
    assert mine.lookup(entry.key) is not None  # now remembered
    other.revoke(f"key:{entry.key}", "bad kernel")
    assert mine.lookup(entry.key) is not None  # memory: repeated lookups are free
    mine.generation()  # what the compile path calls first
    assert mine.lookup(entry.key) is None


def test_a_database_from_before_the_generation_table_gets_one(tmp_path):
    store = open_test_store(tmp_path)
    entry = store.put(make_entry())
    db = store.local.path
    store.local.close()
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE meta")
    reopened = open_test_store(tmp_path)
    assert reopened.local.generation().endswith(":0")
    assert reopened.lookup(entry.key) is not None
    reopened.remove([entry.entry_id])
    assert reopened.local.generation().endswith(":1")
