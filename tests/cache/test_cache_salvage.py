"""``llm-inductor cache salvage``: the rows of a damaged database come back, re-checked, and the file stays."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from llm_inductor.cache.sqlite import read_damaged
from llm_inductor.cache.trust import forget_reports
from support.cache_entries import cache_cli as _cli
from support.cache_entries import digest, make_entry, open_test_store


@pytest.fixture(autouse=True)
def _fresh_reports():
    forget_reports()


def _aside(cache_dir):
    return [p for p in cache_dir.iterdir() if ".corrupt-" in p.name and not p.name.endswith(("-wal", "-shm"))]


def _damage(cache_dir, keep: float) -> None:
    """Truncate the database to a fraction of its size, then let a lookup find it and move it aside."""
    db = cache_dir / "entries-v1.db"
    (cache_dir / (db.name + "-wal")).unlink(missing_ok=True)
    data = db.read_bytes()
    db.write_bytes(data[: int(len(data) * keep)])
    assert open_test_store(cache_dir).lookup(digest("anything")) is None
    assert len(_aside(cache_dir)) == 1


def test_salvage_restores_what_is_readable_and_refuses_what_fails_its_checks(tmp_path, capsys, monkeypatch):
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(cache_dir))
    store = open_test_store(cache_dir)
    entries = [store.put(make_entry(f"e{i}")) for i in range(40)]
    store.revoke(f"key:{entries[2].key}", "withdrawn")
    store.local.close()
    altered_code = entries[0].to_json().replace("_rmsnorm_fwd", "_evil_fwd")  # the content hash no longer matches
    forged = json.loads(entries[1].to_json())
    forged["signature"] = "00" * 64  # content intact, signature wrong
    c = sqlite3.connect(cache_dir / "entries-v1.db", isolation_level=None)  # two rows altered on disk, early on
    c.execute("UPDATE entries SET body=? WHERE entry_id=?", (altered_code, entries[0].entry_id))
    c.execute("UPDATE entries SET body=? WHERE entry_id=?", (json.dumps(forged), entries[1].entry_id))
    c.close()
    _damage(cache_dir, keep=0.75)
    (aside,) = _aside(cache_dir)
    damaged = aside.read_bytes()
    readable = {row_id for row_id, _ in read_damaged(aside).entries}
    assert {entries[0].entry_id, entries[1].entry_id, entries[2].entry_id} <= readable and len(readable) < 40
    fresh = open_test_store(cache_dir)
    assert all(fresh.lookup(e.key) is None for e in entries)  # moved aside: everything unavailable

    rc, out, err = _cli(capsys, "salvage")
    assert rc == 0, err
    restored = readable - {entries[0].entry_id, entries[1].entry_id}
    assert f"restored {len(restored)} entries ({len(restored) - 1} served here, 1 not" in out
    assert "refused 2 (tampered 2)" in out and f"{40 - len(readable)} row(s) unreadable" in out
    assert "1 revocation(s)" in out
    assert f"refused {entries[0].entry_id[:33]}: tampered: content hash mismatch" in err
    assert f"refused {entries[1].entry_id[:33]}: tampered" in err
    after = open_test_store(cache_dir)
    served = {e.entry_id for e in entries if after.lookup(e.key) is not None}
    assert served == restored - {entries[2].entry_id}  # the revoked one is back, and still not served
    assert {r["entry_id"] for r in after.local.rows()} == restored
    assert aside.read_bytes() == damaged  # never changed, never deleted

    rc, out, _ = _cli(capsys, "salvage", str(aside))  # again: nothing new, nothing lost
    assert rc == 0 and "restored 0 entries" in out and f"{len(restored)} present already" in out
    assert aside.exists()


def test_salvage_reads_the_write_ahead_log_beside_the_file_and_changes_neither(tmp_path, capsys, monkeypatch):
    live_dir = tmp_path / "live"
    live = open_test_store(live_dir)
    checkpointed = [live.put(make_entry(f"main{i}")) for i in range(30)]
    live.local._open().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    in_log = [live.put(make_entry(f"wal{i}")) for i in range(3)]
    kept = tmp_path / "kept"
    kept.mkdir()
    aside = kept / "entries-v1.db.corrupt-20250101-000000-1"  # as a crash, then a quarantine, leave them
    db = live_dir / "entries-v1.db"
    aside.write_bytes(db.read_bytes()[: db.stat().st_size * 3 // 4])
    shutil.copy(live_dir / "entries-v1.db-wal", kept / (aside.name + "-wal"))
    live.local.close()
    before = {p.name: p.read_bytes() for p in kept.iterdir()}
    trusted = str(live_dir / "keys" / "local.pub")  # salvaged into another cache, which trusts the signer
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LLM_INDUCTOR_TRUSTED_KEYS", trusted)
    rc, out, err = _cli(capsys, "salvage", str(aside))
    assert rc == 0, err
    after = open_test_store(tmp_path / "cache", LLM_INDUCTOR_TRUSTED_KEYS=trusted)
    assert all(after.lookup(e.key) is not None for e in in_log)
    assert 0 < sum(after.lookup(e.key) is not None for e in checkpointed) < len(checkpointed)
    assert {p.name: p.read_bytes() for p in kept.iterdir()} == before  # no -shm made, nothing checkpointed


def test_salvage_of_nothing_readable_is_negative_and_keeps_the_file(tmp_path, capsys, monkeypatch):
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(cache_dir))
    store = open_test_store(cache_dir)
    store.put(make_entry("a"))
    store.local.close()
    rc, out, err = _cli(capsys, "salvage")
    assert rc == 1 and "nothing to salvage" in err
    (cache_dir / "entries-v1.db").write_bytes(b"this is not a database" * 500)
    open_test_store(cache_dir).lookup(digest("a"))
    (aside,) = _aside(cache_dir)
    rc, out, err = _cli(capsys, "salvage")
    assert rc == 1 and "restored 0 entries" in out and "unreadable: entries" in err
    assert aside.exists()
    rc, _, err = _cli(capsys, "salvage", str(tmp_path / "missing.db"))
    assert rc == 2 and "No file" in err
