"""``llm-inductor cache``: listings, packs, keys, revocation and exit codes (in-process, no compiles)."""

from __future__ import annotations

import json
import os
import sqlite3
import time

import pytest

from llm_inductor.cache import sign
from llm_inductor.cli import main
from support.cache_entries import digest, make_entry, open_test_store


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache directory with two served entries (one with a revoked sibling key) and one pending record."""
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
    store = open_test_store(tmp_path / "cache")
    a = store.put(make_entry("a"))
    b = store.put(make_entry("b", speed={"cpu": {"speedup": 1.8}}))
    return tmp_path / "cache", a, b


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["cache", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_ls_show_stats(cache, capsys):
    _, a, b = cache
    rc, out, _ = run(capsys, "ls")
    assert rc == 0
    header, *rows = out.splitlines()
    for col in ("key16", "ops", "shapes", "device", "speedup", "age", "tier", "served/why-not"):
        assert col in header
    assert sorted(r.split()[0] for r in rows) == sorted([a.key16, b.key16])
    assert all(r.rstrip().endswith("served") and "float32[8,33]" in r and " local " in r for r in rows)
    assert "1.80x" in next(r for r in rows if r.startswith(b.key16))
    rc, out, _ = run(capsys, "ls", "--json")
    assert rc == 0 and {r["entry_id"] for r in json.loads(out)} == {a.entry_id, b.entry_id}
    rc, out, _ = run(capsys, "show", a.key16)
    assert rc == 0 and a.entry_id in out and "-- kernel source" in out and "_rmsnorm_fwd" in out
    rc, out, _ = run(capsys, "show", b.key16, "--json")
    (doc,) = json.loads(out)
    assert (
        rc == 0
        and doc["entry_id"] == b.entry_id
        and doc["verdict"] == "served"
        and doc["speed"]["cpu"]["speedup"] == 1.8
    )
    rc, out, _ = run(capsys, "stats", "--json")
    stats = json.loads(out)
    assert rc == 0 and stats["entries"] == 2 and stats["served"] == 2 and stats["size_bytes"] > 0


def test_unknown_key_and_missing_files_are_usage_errors(cache, capsys, tmp_path):
    assert run(capsys, "show", "ffff")[0] == 2
    rc, _, err = run(capsys, "import", str(tmp_path / "nope.jsonl"))
    assert rc == 2 and "No pack at" in err
    not_pack = tmp_path / "x.jsonl"
    not_pack.write_text("hello\n")
    assert run(capsys, "import", str(not_pack))[0] == 2
    region = tmp_path / "region_x.py"
    region.write_text("def forward(x):\n    return x\n")
    rc, _, err = run(capsys, "add", str(region), str(region))
    assert rc == 2 and "sidecar" in err
    assert run(capsys, "prune")[0] == 2
    rc, _, err = run(capsys, "keygen", str(tmp_path / "k"))
    assert rc == 0
    rc, _, err = run(capsys, "keygen", str(tmp_path / "k"))
    assert rc == 2 and "--force" in err


def test_export_import_between_machines(cache, capsys, tmp_path, monkeypatch):
    cache_dir, a, b = cache
    pack = tmp_path / "team.jsonl.gz"
    assert run(capsys, "revoke", digest("withdrawn"), "--reason", "bad kernel")[0] == 0
    rc, out, _ = run(capsys, "export", str(pack), "--key", a.key16)
    assert rc == 0 and "wrote 1 entry and 1 revocation(s)" in out
    # another machine, not trusting our key yet: imported but not served
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(tmp_path / "other"))
    rc, out, err = run(capsys, "import", str(pack))
    assert rc == 0 and "imported 1 entry (0 served here" in out and "0 of 1 revocation(s)" in out
    assert f"skipped the revocation of key:{digest('withdrawn')}: signed by {a.signer[:16]}, not a trusted key" in err
    rc, out, _ = run(capsys, "ls")
    assert "untrusted_key" in out and a.key16 in out and b.key16 not in out
    assert open_test_store(tmp_path / "other").local.revocations() == []
    # trusting it: served, and the import did not re-sign it with the other machine's key
    monkeypatch.setenv("LLM_INDUCTOR_TRUSTED_KEYS", str(cache_dir / "keys" / "local.pub"))
    rc, out, _ = run(capsys, "ls")
    assert out.splitlines()[1].rstrip().endswith("served")
    rc, out, _ = run(capsys, "import", str(pack))  # now the revocation is honoured, and kept with its signature
    assert rc == 0 and "1 of 1 revocation(s)" in out
    ((target, body),) = open_test_store(tmp_path / "other").local.revocations()
    assert target == f"key:{digest('withdrawn')}" and json.loads(body)["signer"] == a.signer
    trusting = open_test_store(tmp_path / "other", LLM_INDUCTOR_TRUSTED_KEYS=str(cache_dir / "keys" / "local.pub"))
    assert trusting.lookup(a.key).signer == a.signer
    # a pack whose every entry is tampered imports nothing: exit 1
    lines = pack.read_bytes()
    import gzip

    text = gzip.decompress(lines).decode().replace("_rmsnorm_fwd", "_evil_fwd")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(text)
    rc, _, err = run(capsys, "import", str(bad))
    assert rc == 1 and "content hash mismatch" in err


def test_export_with_nothing_to_export_is_negative(cache, capsys, tmp_path):
    rc, _, err = run(capsys, "export", str(tmp_path / "p.jsonl"), "--op", "softmax")
    assert rc == 1 and "nothing to export" in err and not (tmp_path / "p.jsonl").exists()


def test_revoke_by_prefix_then_rm_and_prune(cache, capsys):
    cache_dir, a, b = cache
    rc, out, _ = run(capsys, "revoke", a.key16)
    assert rc == 0 and f"key:{a.key}" in out
    rc, out, _ = run(capsys, "ls")
    row = next(r for r in out.splitlines() if r.startswith(a.key16))
    assert "no: revoked" in row
    rc, out, _ = run(capsys, "revoke", "--list")
    assert f"key:{a.key}" in out
    rc, out, _ = run(capsys, "prune", "--unservable", "--dry-run")
    assert rc == 0 and "1 of 2 entries would be pruned" in out
    assert len(open_test_store(cache_dir).local.rows()) == 2
    rc, out, _ = run(capsys, "prune", "--unservable")
    assert rc == 0 and [r["entry_id"] for r in open_test_store(cache_dir).local.rows()] == [b.entry_id]
    rc, out, _ = run(capsys, "rm", b.key16)
    assert rc == 0 and "removed 1 entry" in out and open_test_store(cache_dir).local.rows() == []


def test_prune_other_versions_and_size(cache, capsys):
    cache_dir, a, b = cache
    store = open_test_store(cache_dir)
    old = store.put(make_entry("old", versions={**a.versions, "triton": "3.1.0"}))
    rc, out, _ = run(capsys, "prune", "--other-versions")
    assert rc == 0 and old.entry_id[:33] in out and "1 of 3" in out
    with sqlite3.connect(store.local.path) as c:  # a entry added three days ago
        c.execute("UPDATE entries SET added=? WHERE entry_id=?", (time.time() - 3 * 86400, a.entry_id))
    records = cache_dir / "compiles"
    records.mkdir()
    for name in ("used", "stale"):
        (records / f"{name}.json").write_text("{}")
    os.utime(records / "stale.json", (time.time() - 3 * 86400,) * 2)
    rc, out, _ = run(capsys, "prune", "--older-than", "2", "--dry-run")
    assert rc == 0 and "1 compile record unused for 2.0 days would be removed" in out
    assert (records / "stale.json").exists()
    rc, out, _ = run(capsys, "prune", "--older-than", "2")
    assert rc == 0 and "1 of 2" in out and a.entry_id[:33] in out
    assert "1 compile record unused for 2.0 days removed" in out
    assert [p.name for p in records.iterdir()] == ["used.json"]
    assert [r["entry_id"] for r in open_test_store(cache_dir).local.rows()] == [b.entry_id]
    rc, out, _ = run(capsys, "prune", "--max-size", "0.000001")
    assert rc == 0 and open_test_store(cache_dir).local.rows() == []


def test_keygen_pair_signs_and_verifies(tmp_path, capsys):
    rc, out, _ = run(capsys, "keygen", str(tmp_path / "keys"), "--name", "team")
    assert rc == 0 and "LLM_INDUCTOR_SIGNING_KEY" in out
    key = sign.load_private(tmp_path / "keys" / "team.key")
    pub = sign.load_public(tmp_path / "keys" / "team.pub")
    signed = key.sign(make_entry())
    assert pub.fingerprint == signed.signer and pub.verify(bytes.fromhex(signed.signature), signed.content_hash)
    assert not pub.verify(bytes.fromhex(signed.signature), make_entry("other").content_hash)
    assert (tmp_path / "keys" / "team.key").stat().st_mode & 0o077 == 0


def test_configured_signing_key_signs_and_is_trusted(tmp_path, capsys, monkeypatch):
    sign.generate(tmp_path / "k", "team")
    store = open_test_store(tmp_path / "c", LLM_INDUCTOR_SIGNING_KEY=str(tmp_path / "k" / "team.key"))
    entry = store.put(make_entry())
    assert entry.signer == sign.load_public(tmp_path / "k" / "team.pub").fingerprint
    assert not (tmp_path / "c" / "keys" / "local.key").exists()
    assert open_test_store(tmp_path / "c", LLM_INDUCTOR_SIGNING_KEY=str(tmp_path / "k" / "team.key")).lookup(entry.key)
