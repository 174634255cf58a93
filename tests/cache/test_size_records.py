"""Per-size records of family entries (issue 14): signed, judged, keyed and stored beside the entries in every tier."""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3

import pytest

from llm_inductor.cache import sign
from llm_inductor.cache.pack import read_pack, write_pack
from llm_inductor.cache.sizes import SizeRecord, SizeRecordError
from llm_inductor.cache.store import MemoryStore
from llm_inductor.cache.trust import Revocation, forget_reports
from support.cache_entries import cache_cli, make_entry, make_family_entry, make_size_record, open_test_store

BIG, SMALL = {"s0": 4096, "s1": 128256}, {"s0": 1024, "s1": 128256}


@pytest.fixture(autouse=True)
def _fresh_reports():
    forget_reports()


def _pub(cache_dir) -> str:
    return str(cache_dir / "keys" / "local.pub")


def _family(tmp_path):
    store = open_test_store(tmp_path)
    return store, store.put(make_family_entry())


def test_sqlite_round_trip_signs_with_the_local_key_and_returns_won_and_lost(tmp_path):
    store, fam = _family(tmp_path)
    assert store.put_size(make_size_record(fam, BIG, speedup=2.39)) == ["local"]
    assert store.put_size(make_size_record(fam, SMALL, won=False, speedup=0.91, why="slower than Inductor")) == [
        "local"
    ]
    fresh = open_test_store(tmp_path)  # another process
    won = fresh.size_record(fam.entry_id, "cpu", "default", BIG)
    lost = fresh.size_record(fam.entry_id, "cpu", "default", {"s1": 128256, "s0": 1024})  # any order of symbols
    assert won is not None and won.won and won.speedup == 2.39
    assert won.signer == sign.load_public(tmp_path / "keys" / "local.pub").fingerprint
    assert lost is not None and not lost.won and lost.speedup == 0.91 and lost.why == "slower than Inductor"
    assert fresh.size_record(fam.entry_id, "cpu", "default", {"s0": 2048, "s1": 128256}) is None  # never timed
    with sqlite3.connect(store.local.path) as c:
        assert {r[0] for r in c.execute("SELECT entry_id FROM size_records")} == {fam.entry_id}
        assert c.execute("SELECT name FROM sqlite_master WHERE name='size_records_by_entry'").fetchone()


def test_a_size_write_leaves_generation_and_moves_sizes_generation(tmp_path):
    store, fam = _family(tmp_path)
    gen, sizes_gen = store.generation(), store.sizes_generation()
    assert gen is not None and sizes_gen is not None
    store.put_size(make_size_record(fam, BIG))
    other = open_test_store(tmp_path)  # another process sees the same tokens
    assert store.generation() == gen == other.generation()
    assert store.sizes_generation() != sizes_gen
    assert store.sizes_generation() == other.sizes_generation()
    after = store.sizes_generation()
    store.put(make_entry("another"))  # an entry write moves generation, not the size token
    assert store.generation() != gen and store.sizes_generation() == after
    store.remove([fam.entry_id])  # the entry's records go with it
    assert store.sizes_generation() != after
    assert store.size_records() == []


def test_records_are_keyed_by_entry_gpu_mode_and_sizes(tmp_path):
    store, fam = _family(tmp_path)
    other_fam = store.put(make_family_entry("other family"))
    store.put_size(make_size_record(fam, BIG))
    fresh = open_test_store(tmp_path)
    assert fresh.size_record(fam.entry_id, "cpu", "default", BIG) is not None
    assert fresh.size_record(fam.entry_id, "cpu", "max-autotune-no-cudagraphs", BIG) is None
    assert fresh.size_record(fam.entry_id, "cpu", "default", SMALL) is None
    assert fresh.size_record(fam.entry_id, "cpu", "default", {"s0": 4096}) is None
    assert fresh.size_record(fam.entry_id, "NVIDIA H200", "default", BIG) is None
    assert fresh.size_record(other_fam.entry_id, "cpu", "default", BIG) is None
    assert fresh.size_record(fam.key + ":" + "0" * 16, "cpu", "default", BIG) is None  # another entry of the key
    # one record per key: a later write replaces it, and the newest is what is returned
    store.put_size(make_size_record(fam, BIG, won=False, speedup=0.8, created=fam.created + 10))
    assert open_test_store(tmp_path).size_record(fam.entry_id, "cpu", "default", BIG).speedup == 0.8
    assert len(store.size_records(fam.entry_id)) == 1


def test_a_record_of_another_mode_is_its_own(tmp_path):
    store, fam = _family(tmp_path)
    store.put_size(make_size_record(fam, BIG, speedup=1.2))
    store.put_size(make_size_record(fam, BIG, inductor_mode="max-autotune-no-cudagraphs", won=False, speedup=0.7))
    fresh = open_test_store(tmp_path)
    assert fresh.size_record(fam.entry_id, "cpu", "default", BIG).speedup == 1.2
    assert fresh.size_record(fam.entry_id, "cpu", "max-autotune-no-cudagraphs", BIG).speedup == 0.7


def _stored_raw(store, record: SizeRecord, body: str | None = None) -> None:
    store.local.put_size(record.key, record.entry_id, record.content_hash, record.created, body or record.to_json())


@pytest.mark.parametrize(
    "case, reason",
    [
        ("untrusted key", "untrusted_key"),
        ("unsigned", "unsigned"),
        ("forged", "tampered"),
        ("other torch minor", "torch_version"),
        ("other triton minor", "triton_version"),
        ("other gpu", "gpu_model"),
        ("measured elsewhere", "gpu_model"),
    ],
)
def test_records_not_to_be_believed_are_not_returned(tmp_path, case, reason):
    store, fam = _family(tmp_path)
    base = make_size_record(fam, BIG)
    versions = base.versions
    if case == "untrusted key":
        stranger = sign.SigningKey(sign._crypto().Ed25519PrivateKey.generate(), "stranger")
        record = stranger.sign(base)
    elif case == "unsigned":
        record = base
    elif case == "forged":  # its content changed and its hash recomputed: the old signature no longer fits
        record = dataclasses.replace(store.signer().sign(base), speedup=9.9)
    elif case == "other torch minor":
        major, minor = versions["torch"].split(".")[:2]
        record = store.signer().sign(
            dataclasses.replace(base, versions={**versions, "torch": f"{major}.{int(minor) + 1}.0"})
        )
    elif case == "other triton minor":
        record = store.signer().sign(dataclasses.replace(base, versions={**versions, "triton": "0.1.0"}))
    elif case == "other gpu":
        changed = dataclasses.replace(base, gpu="NVIDIA H200", versions={**versions, "gpu": "NVIDIA H200"})
        record = store.signer().sign(changed)
    else:  # keyed by this machine's model but measured on another: not believed either
        record = store.signer().sign(dataclasses.replace(base, versions={**versions, "gpu": "NVIDIA A100"}))
    _stored_raw(store, record)
    fresh = open_test_store(tmp_path)
    assert fresh.size_record(record.entry_id, record.gpu, "default", BIG) is None
    assert fresh.judge_size(record).reason == reason
    ((listed, verdict, tiers),) = fresh.size_records(fam.entry_id)  # listed all the same, with why
    assert listed.content_hash == record.content_hash and verdict.reason == reason and tiers == ["local"]
    good = store.signer().sign(base)  # the control: the intact record, signed here, is believed
    assert fresh.judge_size(good).servable


def test_a_tampered_body_is_refused_with_a_warning(tmp_path, caplog):
    store, fam = _family(tmp_path)
    record = store.signer().sign(make_size_record(fam, BIG, won=False, speedup=0.9))
    body = json.loads(record.to_json())
    body["won"], body["speedup"] = True, 3.0  # the recorded content hash no longer matches
    with pytest.raises(SizeRecordError) as e:
        SizeRecord.from_dict(body)
    assert e.value.reason == "tampered"
    _stored_raw(store, record, json.dumps(body))
    with caplog.at_level(logging.WARNING):
        assert open_test_store(tmp_path).size_record(fam.entry_id, "cpu", "default", BIG) is None
    assert "refused the size record" in caplog.text and "content hash mismatch" in caplog.text


def test_a_signature_over_an_entry_is_not_one_over_a_record(tmp_path):
    store, fam = _family(tmp_path)
    record = make_size_record(fam, BIG)
    stolen = dataclasses.replace(record, signature=fam.signature, signer=fam.signer)  # a trusted key's signature
    assert store.judge_size(stolen).reason == "tampered"
    assert store.judge_size(store.signer().sign(record)).servable


@pytest.mark.parametrize("how", ["key", "hash", "signer", "record"])
def test_records_of_a_revoked_entry_or_signer_are_not_returned(tmp_path, how):
    store, fam = _family(tmp_path)
    record = store.write_size(make_size_record(fam, BIG))[0]
    assert store.size_record(fam.entry_id, "cpu", "default", BIG) is not None
    target = {
        "key": f"key:{fam.key}",
        "hash": f"hash:{fam.content_hash}",
        "signer": f"signer:{record.signer}",
        "record": f"hash:{record.content_hash}",
    }[how]
    store.revoke(target, "bad numerics at large sizes")
    assert store.size_record(fam.entry_id, "cpu", "default", BIG) is None
    fresh = open_test_store(tmp_path)
    assert fresh.size_record(fam.entry_id, "cpu", "default", BIG) is None
    assert str(fresh.judge_size(record)).startswith("revoked:") and "bad numerics" in str(fresh.judge_size(record))


def test_a_revocation_of_another_entry_leaves_the_record(tmp_path):
    store, fam = _family(tmp_path)
    other = store.put(make_family_entry("other"))
    store.put_size(make_size_record(fam, BIG))
    store.revoke(f"hash:{other.content_hash}", "x")
    assert open_test_store(tmp_path).size_record(fam.entry_id, "cpu", "default", BIG) is not None


def test_size_lookups_are_remembered_until_a_token_moves(tmp_path, monkeypatch):
    store, fam = _family(tmp_path)
    store.sizes_generation()
    assert store.size_record(fam.entry_id, "cpu", "default", BIG) is None  # a remembered miss
    calls = []
    real = store.local.size_bodies
    monkeypatch.setattr(store.local, "size_bodies", lambda k: calls.append(k) or real(k))
    for _ in range(3):
        assert store.size_record(fam.entry_id, "cpu", "default", BIG) is None
    assert calls == []
    open_test_store(tmp_path).put_size(make_size_record(fam, BIG))  # another process times it
    assert store.size_record(fam.entry_id, "cpu", "default", BIG) is None  # memory, until the token is read
    store.sizes_generation()
    assert store.size_record(fam.entry_id, "cpu", "default", BIG) is not None and len(calls) == 1
    # a revocation elsewhere moves generation(), which drops the size memory too
    open_test_store(tmp_path).revoke(f"key:{fam.key}", "withdrawn")
    assert store.size_record(fam.entry_id, "cpu", "default", BIG) is not None
    store.generation()
    assert store.size_record(fam.entry_id, "cpu", "default", BIG) is None


def test_size_record_never_raises(tmp_path, monkeypatch, caplog):
    store, fam = _family(tmp_path)

    def broken(key):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store.local, "size_bodies", broken)
    with caplog.at_level(logging.WARNING):
        assert store.size_record(fam.entry_id, "cpu", "default", BIG) is None
    assert "treated as never timed" in caplog.text and "disk on fire" in caplog.text


def test_a_database_from_before_size_records_gets_the_table(tmp_path):
    store, fam = _family(tmp_path)
    store.local.close()
    with sqlite3.connect(store.local.path) as c:
        c.execute("DROP TABLE size_records")
        c.execute("DELETE FROM meta WHERE name='sizes_version'")
    reopened = open_test_store(tmp_path)
    gen = reopened.local.generation()
    assert reopened.lookup(fam.key) is not None
    assert reopened.size_records() == [] and reopened.local.sizes_generation().endswith(":0")
    assert reopened.put_size(make_size_record(fam, BIG)) == ["local"]
    assert reopened.local.sizes_generation().endswith(":1") and reopened.local.generation() == gen
    assert open_test_store(tmp_path).size_record(fam.entry_id, "cpu", "default", BIG) is not None


def test_the_same_record_twice_is_one_write(tmp_path):
    store, fam = _family(tmp_path)
    record = store.write_size(make_size_record(fam, BIG))[0]
    token = store.local.sizes_generation()
    store.write_size(record)
    assert store.local.sizes_generation() == token
    older = dataclasses.replace(store.signer().sign(make_size_record(fam, BIG, speedup=0.5)), created=0.0)
    store.write_size(older)  # older than the one stored: kept out
    assert open_test_store(tmp_path).size_record(fam.entry_id, "cpu", "default", BIG).speedup == 1.5


def test_read_only_cache_without_a_shared_tier_takes_no_size_record(tmp_path):
    store, fam = _family(tmp_path)
    store.local.read_only = "read-only file system"  # what _open finds on a read-only mount
    store.local.close()
    assert store.put_size(make_size_record(fam, BIG)) == []
    store.strict = True
    from llm_inductor.cache.tiered import NotWritable

    with pytest.raises(NotWritable, match="size record"):
        store.put_size(make_size_record(fam, BIG))


def test_memory_store_keeps_records_apart_from_entries():
    store = MemoryStore([make_family_entry()])
    (fam,) = store.entries()
    gen, sizes_gen = store.generation(), store.sizes_generation()
    assert store.put_size(make_size_record(fam, BIG)) == ["memory"]
    assert store.generation() == gen and store.sizes_generation() != sizes_gen
    assert store.size_record(fam.entry_id, "cpu", "default", {"s1": 128256, "s0": 4096}).won
    assert store.size_record(fam.entry_id, "cpu", "max-autotune-no-cudagraphs", BIG) is None
    assert [r.bucket for r, v, t in store.size_records(fam.entry_id)] == ["s0=4096,s1=128256"]


# ---------------------------------------------------------------------------- packs


def test_pack_round_trip_keeps_entry_lines_and_serves_records(tmp_path):
    maker, fam = _family(tmp_path / "maker")
    records = [maker.write_size(make_size_record(fam, BIG, speedup=2.0))[0]]
    records.append(maker.write_size(make_size_record(fam, SMALL, won=False, speedup=0.9))[0])
    plain, with_sizes = tmp_path / "plain.jsonl", tmp_path / "sizes.jsonl.gz"
    write_pack(plain, [fam])
    write_pack(with_sizes, [fam], sizes=records)
    a, b = read_pack(plain), read_pack(with_sizes)
    assert a.entries[0][1] == b.entries[0][1]  # the entry line, its id and signature, are what they were
    assert b.header["version"] == a.header["version"] == 1 and b.header["sizes"] == 2 and not b.bad
    assert sorted(SizeRecord.from_dict(d).key for _, d in b.sizes) == sorted(r.key for r in records)
    consumer = open_test_store(
        tmp_path / "consumer", LLM_INDUCTOR_PACKS=str(with_sizes), LLM_INDUCTOR_TRUSTED_KEYS=_pub(tmp_path / "maker")
    )
    assert consumer.lookup(fam.key).entry_id == fam.entry_id
    hit = consumer.size_record(fam.entry_id, "cpu", "default", BIG)
    assert hit is not None and hit.speedup == 2.0 and hit.signature == records[0].signature
    assert consumer.size_record(fam.entry_id, "cpu", "default", SMALL).won is False
    assert [r["record_key"] for r in _size_rows(consumer)] == sorted(r.key for r in records)  # copied local
    stranger = open_test_store(tmp_path / "stranger", LLM_INDUCTOR_PACKS=str(with_sizes))
    assert stranger.size_record(fam.entry_id, "cpu", "default", BIG) is None
    assert {v.reason for _, v, _ in stranger.size_records()} == {"untrusted_key"}


def _size_rows(store) -> list[dict]:
    with sqlite3.connect(store.local.path) as c:
        cols = ("record_key", "entry_id")
        return [dict(zip(cols, r)) for r in c.execute("SELECT record_key, entry_id FROM size_records ORDER BY 1")]


def test_bad_size_lines_are_skipped_and_the_pack_stays_usable(tmp_path, caplog):
    maker, fam = _family(tmp_path / "maker")
    record = maker.write_size(make_size_record(fam, BIG))[0]
    pack = tmp_path / "p.jsonl"
    write_pack(pack, [fam], sizes=[record])
    with open(pack, "a") as f:
        f.write(json.dumps({"size": {"entry_id": 7}}) + "\n")
    contents = read_pack(pack)
    assert len(contents.sizes) == 1 and len(contents.bad) == 1 and "size record" in contents.bad[0][1]
    with caplog.at_level(logging.WARNING):
        consumer = open_test_store(
            tmp_path / "c", LLM_INDUCTOR_PACKS=str(pack), LLM_INDUCTOR_TRUSTED_KEYS=_pub(tmp_path / "maker")
        )
        assert consumer.size_record(fam.entry_id, "cpu", "default", BIG) is not None
    assert "skipped 1 bad line(s)" in caplog.text


def test_replacing_a_pack_moves_sizes_generation(tmp_path):
    maker, fam = _family(tmp_path / "maker")
    record = maker.write_size(make_size_record(fam, BIG))[0]
    pack = tmp_path / "p.jsonl"
    write_pack(pack, [fam])
    env = dict(LLM_INDUCTOR_PACKS=str(pack), LLM_INDUCTOR_TRUSTED_KEYS=_pub(tmp_path / "maker"))
    consumer = open_test_store(tmp_path / "c", **env)
    token = consumer.sizes_generation()
    assert consumer.size_record(fam.entry_id, "cpu", "default", BIG) is None
    write_pack(pack, [fam], sizes=[record])
    assert consumer.sizes_generation() != token
    assert consumer.size_record(fam.entry_id, "cpu", "default", BIG) is not None


# ---------------------------------------------------------------------------- redis


@pytest.mark.redis
def test_redis_round_trip_with_its_own_counter(tmp_path, redis_server):
    from llm_inductor.cache.redis_store import GENERATION, SIZES, SIZES_GENERATION

    url, _, client = redis_server
    a = open_test_store(tmp_path / "a", LLM_INDUCTOR_REDIS_URL=url)
    fam = a.put(make_family_entry())
    gen_before = int(client.get(GENERATION))
    b = open_test_store(tmp_path / "b", LLM_INDUCTOR_REDIS_URL=url, LLM_INDUCTOR_TRUSTED_KEYS=_pub(tmp_path / "a"))
    token, b_gen = b.sizes_generation(), b.generation()
    assert a.put_size(make_size_record(fam, BIG, speedup=2.39)) == ["local", "redis"]
    assert int(client.get(GENERATION)) == gen_before and int(client.get(SIZES_GENERATION)) == 1
    assert client.hkeys(SIZES + fam.entry_id) == [f"{fam.entry_id}|cpu|default|s0=4096,s1=128256".encode()]
    assert b.generation() == b_gen and b.sizes_generation() != token  # the team's AOTAutograd cache stands
    hit = b.size_record(fam.entry_id, "cpu", "default", BIG)
    assert hit is not None and hit.speedup == 2.39
    assert [r["entry_id"] for r in _size_rows(b)] == [fam.entry_id]  # copied into b's local tier
    assert b.size_record(fam.entry_id, "cpu", "default", SMALL) is None
    ((_, verdict, tiers),) = b.size_records()
    assert verdict.servable and tiers == ["local", "redis"]
    stranger = open_test_store(tmp_path / "c", LLM_INDUCTOR_REDIS_URL=url)
    assert stranger.size_record(fam.entry_id, "cpu", "default", BIG) is None
    a.remove([fam.entry_id], shared=True)  # an entry removed from the team takes its records along
    assert client.exists(SIZES + fam.entry_id) == 0 and int(client.get(SIZES_GENERATION)) == 2


@pytest.mark.redis
def test_redis_down_is_a_warning_and_a_local_answer(tmp_path, redis_server, caplog):
    url, proc, _ = redis_server
    store = open_test_store(tmp_path, LLM_INDUCTOR_REDIS_URL=url)
    fam = store.put(make_family_entry())
    proc.kill()
    proc.wait()
    with caplog.at_level(logging.WARNING):
        assert store.put_size(make_size_record(fam, BIG)) == ["local"]
        assert store.size_record(fam.entry_id, "cpu", "default", BIG) is not None
        assert store.size_record(fam.entry_id, "cpu", "default", SMALL) is None
        assert store.sizes_generation() is not None
    assert sum("shared cache" in r.getMessage() for r in caplog.records) == 1


# ---------------------------------------------------------------------------- the CLI


@pytest.fixture
def family_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
    store = open_test_store(tmp_path / "cache")
    plain = store.put(make_entry("plain"))
    fam = store.put(make_family_entry())
    store.put_size(make_size_record(fam, BIG, speedup=2.39))
    store.put_size(make_size_record(fam, SMALL, won=False, speedup=0.91, why="slower than Inductor"))
    store.put_size(make_size_record(fam, BIG, gpu="NVIDIA H200", versions={**fam.versions, "gpu": "NVIDIA H200"}))
    return tmp_path / "cache", plain, fam


def test_cli_ls_shows_symbols_and_timed_sizes_of_family_entries_only(family_cache, capsys):
    _, plain, fam = family_cache
    rc, out, _ = cache_cli(capsys, "ls")
    assert rc == 0
    lines = out.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith(fam.key16))
    family_line = lines[i + 1]
    assert family_line.startswith("    family s0,s1 · timed: ")
    assert "s0=4096,s1=128256 2.39x won" in family_line and "s0=1024,s1=128256 0.91x lost" in family_line
    assert "(NVIDIA H200: gpu_model)" in family_line  # another model's record: listed, not believed here
    j = next(n for n, line in enumerate(lines) if line.startswith(plain.key16))
    assert j + 1 == len(lines) or not lines[j + 1].startswith("    ")  # a plain entry's row as it always was
    rc, out, _ = cache_cli(capsys, "ls", "--json")
    rows = {r["entry_id"]: r for r in json.loads(out)}
    assert "size_records" not in rows[plain.entry_id] and "symbols" not in rows[plain.entry_id]
    assert rows[fam.entry_id]["symbols"] == ["s0", "s1"]
    docs = rows[fam.entry_id]["size_records"]
    assert sorted((d["bucket"], d["gpu"], d["won"], d["verdict"].split(":")[0]) for d in docs) == [
        ("s0=1024,s1=128256", "cpu", False, "served"),
        ("s0=4096,s1=128256", "NVIDIA H200", True, "gpu_model"),
        ("s0=4096,s1=128256", "cpu", True, "served"),
    ]


def test_cli_show_prints_symbols_verified_sizes_and_every_record(family_cache, capsys):
    _, plain, fam = family_cache
    rc, out, _ = cache_cli(capsys, "show", fam.key16)
    assert rc == 0 and "-- family: symbols s0, s1" in out
    assert "verified at: s0 in {8, 16}; s1 in {33, 66}" in out and "-- size records (3)" in out
    rows = [line for line in out.splitlines() if line.startswith("   s0=")]
    assert any("2.39x  won  mode default  gpu cpu  served  [local]" in r for r in rows)
    assert any("0.91x  lost  mode default  gpu cpu  served  [local]  (slower than Inductor)" in r for r in rows)
    assert any("gpu NVIDIA H200  not served: gpu_model" in r for r in rows)
    assert out.index("-- size records") < out.index("-- kernel source")
    rc, out, _ = cache_cli(capsys, "show", plain.key16)
    assert rc == 0 and "-- family" not in out and "-- size records" not in out
    rc, out, _ = cache_cli(capsys, "show", fam.key16, "--json")
    (doc,) = json.loads(out)
    assert len(doc["size_records"]) == 3 and {d["inductor_mode"] for d in doc["size_records"]} == {"default"}
    rc, out, _ = cache_cli(capsys, "show", plain.key16, "--json")
    assert "size_records" not in json.loads(out)[0]


def test_cli_export_and_import_carry_the_records(family_cache, capsys, tmp_path, monkeypatch):
    cache_dir, _, fam = family_cache
    pack = tmp_path / "team.jsonl"
    rc, out, _ = cache_cli(capsys, "export", str(pack), "--key", fam.key16)
    assert rc == 0 and "wrote 1 entry and 0 revocation(s)" in out and "with 2 size record(s)" in out  # not H200's
    rc, out, _ = cache_cli(capsys, "export", str(tmp_path / "all.jsonl"), "--key", fam.key16, "--all")
    assert rc == 0 and "with 3 size record(s)" in out
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(tmp_path / "other"))
    monkeypatch.setenv("LLM_INDUCTOR_TRUSTED_KEYS", _pub(cache_dir))
    rc, out, err = cache_cli(capsys, "import", str(pack))
    assert rc == 0 and "imported 1 entry (1 served here)" in out and "2 of 2 size record(s)" in out, err
    other = open_test_store(tmp_path / "other", LLM_INDUCTOR_TRUSTED_KEYS=_pub(cache_dir))
    hit = other.size_record(fam.entry_id, "cpu", "default", BIG)
    assert hit is not None and hit.speedup == 2.39
    assert hit.signer == fam.signer  # kept as signed, never re-signed by the importer
    assert other.local.rows() and len(_size_rows(other)) == 2


def test_cli_import_skips_revoked_records(family_cache, capsys, tmp_path, monkeypatch):
    cache_dir, _, fam = family_cache
    store = open_test_store(cache_dir)
    ((record, _, _),) = [r for r in store.size_records(fam.entry_id) if r[0].speedup == 0.91]
    pack = tmp_path / "p.jsonl"
    write_pack(
        pack, [fam], [Revocation(f"hash:{record.content_hash}", "mis-timed").signed_with(store.signer())], [record]
    )
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(tmp_path / "other"))
    monkeypatch.setenv("LLM_INDUCTOR_TRUSTED_KEYS", _pub(cache_dir))
    rc, out, err = cache_cli(capsys, "import", str(pack))
    assert rc == 0 and "0 of 1 size record(s)" in out and "revoked" in err
    assert _size_rows(open_test_store(tmp_path / "other")) == []


def test_a_read_only_database_from_before_serves_entries_and_no_records_quietly(tmp_path, caplog):
    store, fam = _family(tmp_path)
    store.local.close()
    with sqlite3.connect(store.local.path) as c:
        c.execute("DROP TABLE size_records")
        c.execute("DELETE FROM meta WHERE name='sizes_version'")
    from llm_inductor.cache.tiered import TieredStore
    from llm_inductor.config import Config

    reader = TieredStore(Config.load(env={"LLM_INDUCTOR_CACHE_DIR": str(tmp_path)})[0])
    reader.local.read_only = "mounted read-only"  # what _open finds on a read-only mount: it never writes
    reader.trust().policy = lambda src: []
    with caplog.at_level(logging.WARNING):
        assert reader.lookup(fam.key) is not None
        assert reader.size_record(fam.entry_id, "cpu", "default", BIG) is None
        assert reader.size_records() == [] and reader.sizes_generation() is not None
    assert not [r for r in caplog.records if "size" in r.getMessage()]
    with sqlite3.connect(store.local.path) as c:  # nothing was created behind the reader's back
        assert c.execute("SELECT 1 FROM sqlite_master WHERE name='size_records'").fetchone() is None


def test_salvage_restores_size_records(tmp_path):
    store, fam = _family(tmp_path / "old")
    record = store.write_size(make_size_record(fam, BIG))[0]
    store.local.close()
    copy = tmp_path / "damaged.db"
    copy.write_bytes(store.local.path.read_bytes())
    target = open_test_store(tmp_path / "new", LLM_INDUCTOR_TRUSTED_KEYS=_pub(tmp_path / "old"))
    report = target.salvage(copy)
    assert report.size_records == 1 and not report.refused
    assert target.size_record(fam.entry_id, "cpu", "default", BIG).content_hash == record.content_hash


def test_a_record_that_lost_in_its_graph_says_so():
    from llm_inductor.cache.cli import _won

    gate = {"measured": True, "passed": False, "without_ms": 0.36, "with_ms": 0.39}
    assert _won(make_size_record("e:1", SMALL, won=False, speedup=2.49, graph_ab=gate)) == "lost in its graph"
    assert _won(make_size_record("e:1", SMALL, won=False, speedup=0.91)) == "lost"
    assert _won(make_size_record("e:1", SMALL, verified=False, won=False)) == "not verified"
    assert _won(make_size_record("e:1", SMALL)) == "won"


def test_a_range_is_served_only_where_every_size_class_it_admits_won():
    from llm_inductor.cache.sizes import judge_range, parse_range, range_text, size_class

    assert [size_class(n) for n in (1, 2, 3, 4, 7, 8, 16)] == [1, 2, 2, 3, 3, 4, 5]
    ranges = {"s0": (2, 16), "s1": (33, 33)}  # rows in classes 2-3, 4-7, 8-15 and 16-31; 33 columns
    assert parse_range(range_text(ranges)) == ranges
    with pytest.raises(SizeRecordError):
        parse_range("range:s0=16..2")
    store = MemoryStore()
    fam = make_family_entry()

    def judge():
        return judge_range(store, fam.entry_id, "cpu", "default", ranges)

    assert not judge().served and judge().answer == "-"
    for rows in (3, 5, 12):
        store.put_size(make_size_record(fam, {"s0": rows, "s1": 33}))
    assert judge().why == "1 of 4 size classes its guards admit are not timed"
    store.put_size(make_size_record(fam, {"s0": 16, "s1": 33}, gpu="NVIDIA H200"))  # another GPU model's
    store.put_size(make_size_record(fam, {"s0": 16, "s1": 33}, inductor_mode="max-autotune-no-cudagraphs"))
    assert not judge().served
    store.put_size(make_size_record(fam, {"s0": 16, "s1": 33}))
    assert judge().served and judge().why == "won in all 4 size classes its guards admit"
    store.put_size(make_size_record(fam, {"s0": 6, "s1": 33}, won=False, speedup=0.9))  # one loss in a class
    assert not judge().served and judge().why == "not a winner at s0=6,s1=33"
    wide = judge_range(store, fam.entry_id, "cpu", "default", {"s0": (1, 2**40), "s1": (1, 2**40)})
    assert not wide.served and "size classes (at most 64" in wide.why


def test_a_gate_is_host_bound_where_its_host_time_nearly_fills_the_measured_time():
    from llm_inductor.cache.sizes import host_bound

    assert host_bound({"with_ms": 0.266, "with_host_us": 254.7})  # the H200's 2048-row gate, call 1
    assert host_bound({"with_ms": 0.177, "with_host_us": 156.4})  # call 2, another machine
    assert not host_bound({"with_ms": 0.359, "with_host_us": 89.6})  # Inductor's graph: the GPU is the limit
    assert not host_bound({"with_ms": 0.391})  # a record from before host times were measured


def test_a_graph_that_wins_only_on_a_fast_launching_host_is_at_risk():
    """The H200's softmax gate at 2048 rows passed (0.153 -> 0.094 ms, 101 us of host time per call); the user's
    script then ran it host-bound at 144-181 us, slower than Inductor's 0.153 ms. At 8192 rows the GPU is the limit."""
    from llm_inductor.cache.sizes import HOST_VARIANCE, host_risk

    at_2048 = {"with_ms": 0.0944, "with_host_us": 101.1, "without_ms": 0.1534, "without_host_us": 30.7}
    at_8192 = {"with_ms": 0.3555, "with_host_us": 214.3, "without_ms": 0.5767, "without_host_us": 52.1}
    assert HOST_VARIANCE == 2.0 and host_risk(at_2048) and not host_risk(at_8192)
    # Both sides host-bound (a tiny graph): their scaled host times are compared, not the launch-free GPU times.
    tiny = {"with_ms": 0.010, "with_host_us": 39.2, "without_ms": 0.012, "without_host_us": 39.0}
    assert not host_risk(tiny) and host_risk({**tiny, "with_host_us": 45.0})
    assert not host_risk({"with_ms": 0.0944, "without_ms": 0.1534})  # a record from before host times


def test_a_won_record_at_risk_on_a_slower_host_is_not_servable(tmp_path):
    from support.cache_entries import make_family_entry, make_size_record

    entry = make_family_entry()
    gate = {"measured": True, "passed": True, "with_ms": 0.0944, "with_host_us": 101.1, "without_ms": 0.1534}
    risky = make_size_record(entry, {"s0": 12, "s1": 33}, won=True, graph_ab={**gate, "without_host_us": 30.7})
    assert risky.won and not risky.servable_here
    safe = make_size_record(entry, {"s0": 12, "s1": 33}, won=True, graph_ab={**gate, "with_host_us": 60.0})
    assert safe.servable_here


def test_release_signs_trusted_entries_and_records_with_a_key_whose_private_half_is_never_written(
    family_cache, capsys, tmp_path, monkeypatch
):
    cache_dir, plain, fam = family_cache
    store = open_test_store(cache_dir)
    h200 = {**plain.versions, "torch": "2.11.0+cu130", "gpu": "NVIDIA H200"}
    made_elsewhere = store.put(make_entry("h200", versions=h200))  # trusted here, not served here
    foreign = sign.ephemeral("someone else").sign(make_entry("foreign"))
    store.write(foreign, sign_unsigned=False)  # not a trusted signature: never released
    withdrawn = store.put(make_entry("withdrawn"))
    assert cache_cli(capsys, "revoke", withdrawn.key16, "--reason", "bad kernel")[0] == 0
    keys_before = sorted(p.name for p in tmp_path.rglob("*.key"))
    pack, pub = tmp_path / "ship" / "bundled-r1.jsonl", tmp_path / "ship" / "release-r1.pub"
    pub.parent.mkdir()
    rc, out, err = cache_cli(capsys, "release", str(pack), str(pub))
    assert rc == 0, err
    assert "released 3 entries, 3 size record(s) and 1 revocation(s)" in out and "never written" in out
    assert sorted(p.name for p in tmp_path.rglob("*.key")) == keys_before  # no private key file appeared
    assert not any(b"PRIVATE KEY" in p.read_bytes() for p in pack.parent.iterdir())
    release = sign.load_public(pub)
    contents = read_pack(pack)
    released = {d["key"][:16]: d for _, d in contents.entries}
    assert set(released) == {plain.key16, fam.key16, made_elsewhere.key16}  # not the foreign one
    assert all(d["signer"] == release.fingerprint for d in released.values())
    assert {d["content_hash"] for d in released.values()} == {
        e.content_hash for e in (plain, fam, made_elsewhere)
    }  # re-signed, not changed: the same entry ids
    assert len(contents.sizes) == 3 and all(d["signer"] == release.fingerprint for _, d in contents.sizes)
    ((revocation),) = contents.revocations  # re-signed with the release key: honoured by its users
    assert revocation.target == f"key:{withdrawn.key}" and revocation.signer == release.fingerprint

    # a user who trusts only the shipped key (bundled keys and packs are read the same way) is served
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(tmp_path / "user"))
    user = open_test_store(tmp_path / "user", LLM_INDUCTOR_PACKS=str(pack), LLM_INDUCTOR_TRUSTED_KEYS=str(pub))
    assert user.lookup(plain.key).signer == release.fingerprint
    assert user.size_record(fam.entry_id, "cpu", "default", BIG).speedup == 2.39
    assert user.lookup(made_elsewhere.key) is None  # made on an H200 with torch 2.11: judged by the user's machine
    user.write(withdrawn, sign_unsigned=False)  # the withdrawn kernel, from an older pack or a teammate
    assert user.lookup(withdrawn.key) is None and user.judge(withdrawn).reason == "revoked"

    # a release never replaces a shipped key or pack
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(cache_dir))
    rc, _, err = cache_cli(capsys, "release", str(tmp_path / "ship" / "r2.jsonl"), str(pub))
    assert rc == 2 and "never replaces a shipped public key" in err and not (tmp_path / "ship" / "r2.jsonl").exists()
    rc, _, err = cache_cli(capsys, "release", str(tmp_path / "x.jsonl"), str(tmp_path / "x.pub"), "--op", "softmax")
    assert rc == 1 and "nothing to release" in err and not (tmp_path / "x.pub").exists()
