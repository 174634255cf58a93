"""The shared tier against a real redis-server on 127.0.0.1 (started here on a free port)."""

from __future__ import annotations

import logging
import time

import pytest

from llm_inductor.cache.redis_store import PREFIX
from support.cache_entries import digest, make_entry, open_test_store
from support.ports import free_port

pytestmark = pytest.mark.redis

redis = pytest.importorskip("redis", reason="the redis package is not installed (pip install 'llm-inductor[dev]')")


def _pub(cache_dir) -> str:
    return str(cache_dir / "keys" / "local.pub")


def test_shared_hit_from_a_second_cache_dir_is_copied_local(tmp_path, redis_server):
    url, _, _ = redis_server
    a = open_test_store(tmp_path / "a", LLM_INDUCTOR_REDIS_URL=url)
    stored, tiers = a.write(make_entry())
    assert tiers == ["local", "redis"]
    b = open_test_store(tmp_path / "b", LLM_INDUCTOR_REDIS_URL=url, LLM_INDUCTOR_TRUSTED_KEYS=_pub(tmp_path / "a"))
    assert b.local.rows() == []
    hit = b.lookup(stored.key)
    assert hit is not None and hit.entry_id == stored.entry_id
    assert [r["entry_id"] for r in b.local.rows()] == [stored.entry_id]  # copied into b's local tier
    offline = open_test_store(tmp_path / "b", LLM_INDUCTOR_TRUSTED_KEYS=_pub(tmp_path / "a"))
    assert offline.lookup(stored.key).entry_id == stored.entry_id
    # a machine that does not trust a's key sees the entry but does not serve it
    stranger = open_test_store(tmp_path / "c", LLM_INDUCTOR_REDIS_URL=url)
    assert stranger.lookup(stored.key) is None
    assert [str(r.verdict).split(":")[0] for r in stranger.listings()] == ["untrusted_key"]


def test_redis_killed_mid_run_falls_back_to_local(tmp_path, redis_server, caplog):
    url, proc, _ = redis_server
    store = open_test_store(tmp_path, LLM_INDUCTOR_REDIS_URL=url)
    before = store.put(make_entry("before"))
    proc.kill()
    proc.wait()
    with caplog.at_level(logging.WARNING):
        t0 = time.perf_counter()
        assert store.lookup(digest("never stored")) is None
        after, tiers = store.write(make_entry("after"))
        assert store.lookup(before.key).entry_id == before.entry_id
        for i in range(20):
            store.lookup(digest(f"miss {i}"))
        elapsed = time.perf_counter() - t0
    assert tiers == ["local"]
    assert open_test_store(tmp_path).lookup(after.key).entry_id == after.entry_id
    down = [r.getMessage() for r in caplog.records if "shared cache" in r.getMessage()]
    assert len(down) == 1 and "local cache only" in down[0]
    assert elapsed < 2.0, f"a dead server cost {elapsed:.2f}s: the tier should turn itself off after one timeout"


def test_unreachable_redis_at_start_is_one_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        store = open_test_store(tmp_path, LLM_INDUCTOR_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
        stored, tiers = store.write(make_entry())
        assert store.lookup(stored.key) is not None
    assert tiers == ["local"]
    assert sum("shared cache" in r.getMessage() for r in caplog.records) == 1


def test_garbage_values_are_skipped(tmp_path, redis_server, caplog):
    url, _, client = redis_server
    a = open_test_store(tmp_path / "a", LLM_INDUCTOR_REDIS_URL=url)
    good = a.put(make_entry())
    name = PREFIX + "entry:" + good.key
    client.hset(name, good.key + ":garbage000000001", b"\x00\xffnot json at all")
    client.hset(name, good.key + ":garbage000000002", b'{"schema": 1, "key": 7}')
    client.hset(PREFIX + "entry:" + digest("only garbage"), "x", b"[]")
    b = open_test_store(tmp_path / "b", LLM_INDUCTOR_REDIS_URL=url, LLM_INDUCTOR_TRUSTED_KEYS=_pub(tmp_path / "a"))
    with caplog.at_level(logging.WARNING):
        assert b.lookup(good.key).entry_id == good.entry_id
        assert b.lookup(digest("only garbage")) is None
    skipped = [r.getMessage() for r in caplog.records if "skipped an entry" in r.getMessage()]
    assert len(skipped) == 2  # one line per key
    assert good.key[:16] in skipped[0] and digest("only garbage")[:16] in skipped[1]


def test_revocation_travels_through_redis(tmp_path, redis_server):
    url, _, _ = redis_server
    a = open_test_store(tmp_path / "a", LLM_INDUCTOR_REDIS_URL=url)
    entry = a.put(make_entry())
    b = open_test_store(tmp_path / "b", LLM_INDUCTOR_REDIS_URL=url, LLM_INDUCTOR_TRUSTED_KEYS=_pub(tmp_path / "a"))
    assert b.lookup(entry.key) is not None  # now also in b's local tier
    a.revoke(f"key:{entry.key}", "wrong results on bf16")
    b2 = open_test_store(tmp_path / "b", LLM_INDUCTOR_REDIS_URL=url, LLM_INDUCTOR_TRUSTED_KEYS=_pub(tmp_path / "a"))
    assert b2.lookup(entry.key) is None  # not from redis, and not from the local copy either
    assert str(b2.judge(entry)) == "revoked: key revoked (wrong results on bf16)"


def test_generation_follows_writes_from_any_client_and_says_down(tmp_path, redis_server):
    url, proc, client = redis_server
    store = open_test_store(tmp_path / "a", LLM_INDUCTOR_REDIS_URL=url)
    before = store.shared.generation()
    other = open_test_store(tmp_path / "b", LLM_INDUCTOR_REDIS_URL=url)
    stored = other.put(make_entry())  # another machine's write
    after_put = store.shared.generation()
    assert int(after_put) == int(before) + 1
    other.revoke(f"key:{stored.key}", "test")
    other.remove([stored.entry_id], shared=True)
    assert int(store.shared.generation()) == int(after_put) + 2
    token = store.generation()
    proc.kill()
    proc.wait()
    assert store.shared.generation() == "down"
    assert store.generation() != token  # lookups now skip the shared tier: another kernel set


def test_the_ranks_decisions_live_in_the_shared_tier(tmp_path, redis_server):
    """Ranks on two machines (two cache directories) agree through Redis; a dead server decides nothing."""
    url, proc, client = redis_server
    a = open_test_store(tmp_path / "a", LLM_INDUCTOR_REDIS_URL=url)
    b = open_test_store(tmp_path / "b", LLM_INDUCTOR_REDIS_URL=url)
    assert a.claim("tune:job:k", "rank 0", 60) == "rank 0"
    assert b.claim("tune:job:k", "rank 1", 60) == "rank 0" and b.decision("tune:job:k") == "rank 0"
    assert 0 < client.ttl(PREFIX + "decision:tune:job:k") <= 60
    assert b.local.decision("tune:job:k") is None  # not in the local database: machines do not share it
    proc.kill()
    proc.wait()
    assert a.claim("decision:job:k", "inductor", 60) is None  # no tier to agree in: the caller keeps Inductor
