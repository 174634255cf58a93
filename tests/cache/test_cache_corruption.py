"""Robustness: a corrupt or truncated database, a full disk and a bad pack line each give a warning and a miss."""

from __future__ import annotations

import gzip
import json
import logging
import sqlite3

import pytest

from llm_inductor.cache.pack import PackError, read_pack, write_pack
from llm_inductor.cache.store import PendingRegion
from llm_inductor.cache.trust import forget_reports
from support.cache_entries import digest, make_entry, open_test_store


@pytest.fixture(autouse=True)
def _fresh_reports():
    forget_reports()


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_database_is_moved_aside_and_rebuilt(tmp_path, caplog, damage):
    store = open_test_store(tmp_path)
    entries = [store.put(make_entry(f"e{i}")) for i in range(40)]
    store.local.close()
    db = store.local.path
    original = db.read_bytes()
    if damage == "garbage":
        db.write_bytes(b"this is not a database" * 500)
    else:
        (tmp_path / (db.name + "-wal")).unlink(missing_ok=True)  # only what reached the main file survives
        db.write_bytes(original[: len(original) // 2])
    damaged = db.read_bytes()
    fresh = open_test_store(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert fresh.lookup(entries[0].key) is None  # a miss, not a crash, not a wrong kernel
        assert fresh.lookup(entries[1].key) is None
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name and not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1 and aside[0].read_bytes() == damaged  # kept for a post-mortem, not deleted
    moved = [w for w in _warnings(caplog) if "was corrupt" in w]
    assert len(moved) == 1 and str(aside[0]) in moved[0]
    again = fresh.put(make_entry("after"))  # the rest of the cache keeps working
    assert open_test_store(tmp_path).lookup(again.key).entry_id == again.entry_id
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


class _FullDisk(sqlite3.Connection):
    """A connection on a disk with no space left: every write fails as SQLite reports it."""

    def execute(self, sql, *args):
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            raise sqlite3.OperationalError("database or disk is full")
        return super().execute(sql, *args)


def test_full_disk_warns_once_and_the_compile_path_goes_on(tmp_path, caplog, monkeypatch):
    store = open_test_store(tmp_path)
    kept = store.put(make_entry("kept"))
    store.local.close()
    full = open_test_store(tmp_path)
    monkeypatch.setattr(
        full.local,
        "_connect",
        lambda: sqlite3.connect(
            full.local.path, timeout=1, isolation_level=None, check_same_thread=False, factory=_FullDisk
        ),
    )
    full.local.close()  # reconnect through the full disk
    record = PendingRegion(key=digest("p"), region_path="/r.py", ops=["mul"], est_us=5.0, share=0.5, device="cpu")
    with caplog.at_level(logging.WARNING):
        stored, tiers = full.write(make_entry("new"))
        full.add_pending(record)
        full.add_pending(record)
        hit = full.lookup(kept.key)  # reads still work
        full.flush()
    assert tiers == [] and hit is not None and hit.entry_id == kept.entry_id
    full_warnings = [w for w in _warnings(caplog) if "is full" in w]
    assert len(full_warnings) == 1 and "llm-inductor cache prune" in full_warnings[0]
    assert open_test_store(tmp_path).lookup(stored.key) is None  # the dropped write left nothing half-done


def test_unwritable_cache_dir_is_a_miss(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = open_test_store(blocker / "cache")
    with caplog.at_level(logging.WARNING):
        assert store.lookup(digest("x")) is None
        store.add_pending(PendingRegion(key=digest("x"), region_path="/r.py", ops=[], est_us=1, share=1, device="cpu"))
    assert any("unusable" in w for w in _warnings(caplog))


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_pack_with_bad_lines_skips_them_with_one_warning(tmp_path, caplog, suffix):
    store = open_test_store(tmp_path / "maker")
    good = [store.put(make_entry(f"g{i}")) for i in range(3)]
    pack = tmp_path / f"p{suffix}"
    write_pack(pack, good, [(f"key:{digest('revoked')}", "test")])
    lines = (gzip.decompress(pack.read_bytes()) if suffix.endswith(".gz") else pack.read_bytes()).decode().splitlines()
    tampered = json.loads(lines[2])
    tampered["entry"]["kernel_source"] += "\nimport os\n"
    lines[2] = json.dumps(tampered)
    lines.insert(2, '{"entry": {"key": 5')
    lines.insert(3, "[1, 2, 3]")
    data = ("\n".join(lines) + "\n").encode()
    pack.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    contents = read_pack(pack)
    assert [n for n, _ in contents.bad] == [3, 4] and len(contents.entries) == 3 and len(contents.revocations) == 1
    consumer = open_test_store(
        tmp_path / "consumer",
        LLM_INDUCTOR_PACKS=str(pack),
        LLM_INDUCTOR_TRUSTED_KEYS=str(tmp_path / "maker" / "keys" / "local.pub"),
    )
    with caplog.at_level(logging.WARNING):
        served = [consumer.lookup(e.key) for e in good]
    tampered_key = tampered["entry"]["key"]
    assert [s is not None for s in served] == [e.key != tampered_key for e in good]
    warnings = _warnings(caplog)
    assert sum("skipped 2 bad line(s)" in w for w in warnings) == 1
    assert any(f"refused an entry for key {tampered_key[:16]}" in w for w in warnings)
    # a pack hit is copied to the local tier
    assert len(consumer.local.rows()) == 2


def test_truncated_compressed_pack_keeps_the_lines_before_the_break(tmp_path):
    store = open_test_store(tmp_path)
    pack = tmp_path / "p.jsonl.gz"
    write_pack(pack, [store.put(make_entry(f"g{i}")) for i in range(20)])
    pack.write_bytes(pack.read_bytes()[:-200])
    contents = read_pack(pack)
    assert 0 < len(contents.entries) < 20 and "compressed stream broken" in contents.bad[-1][1]


def test_not_a_pack_is_a_usage_error(tmp_path):
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"hello": 1}\n')
    with pytest.raises(PackError) as e:
        read_pack(bad)
    assert e.value.exit_code == 2 and "not an llm_inductor pack" in str(e.value)
    with pytest.raises(PackError):
        read_pack(tmp_path / "missing.jsonl")
