"""Signed revocations (issue 11, item 8): who may withdraw a kernel or a key, in packs, Redis and SQLite."""

from __future__ import annotations

import dataclasses
import logging
import tarfile
from pathlib import Path

import pytest

from llm_inductor.cache import sign
from llm_inductor.cache.pack import read_pack, write_pack
from llm_inductor.cache.trust import Revocation, forget_reports
from support.cache_entries import cache_cli as _cli
from support.cache_entries import digest, make_entry, open_test_store
from support.paths import ROOT

TARBALL = ROOT / "benchmarks" / "results" / "batch_flow_state.tgz"


@pytest.fixture(autouse=True)
def _fresh_reports():
    forget_reports()


def test_an_unsigned_revocation_in_a_pack_is_ignored_with_a_warning(tmp_path, caplog):
    maker = open_test_store(tmp_path / "c")
    entry = maker.put(make_entry())
    pack = tmp_path / "p.jsonl"
    write_pack(pack, [], [(f"key:{entry.key}", "says who")])
    with caplog.at_level(logging.WARNING):
        assert open_test_store(tmp_path / "c", LLM_INDUCTOR_PACKS=str(pack)).lookup(entry.key) is not None
    assert f"ignoring a revocation of key:{entry.key} in the pack p.jsonl tier: it is unsigned" in caplog.text


def test_a_revocation_signed_by_an_untrusted_key_is_ignored_and_a_trusted_one_honoured(tmp_path, caplog):
    store = open_test_store(tmp_path / "c")
    entry = store.put(make_entry())
    stranger = sign.load_private(sign.generate(tmp_path / "k", "stranger")[0])
    forged = Revocation(f"key:{entry.key}", "x").signed_with(stranger)
    write_pack(tmp_path / "forged.jsonl", [], [forged])
    write_pack(
        tmp_path / "good.jsonl", [], [Revocation(f"key:{entry.key}", "bad numerics").signed_with(store.signer())]
    )
    with caplog.at_level(logging.WARNING):
        assert open_test_store(tmp_path / "c", LLM_INDUCTOR_PACKS=str(tmp_path / "forged.jsonl")).lookup(entry.key)
    assert f"signed by {stranger.public.fingerprint[:16]}, not a trusted key" in caplog.text
    honoured = open_test_store(tmp_path / "c", LLM_INDUCTOR_PACKS=str(tmp_path / "good.jsonl"))
    assert honoured.lookup(entry.key) is None
    assert str(honoured.judge(entry)) == "revoked: key revoked (bad numerics)"
    # a signature over another reason (an edited line) is not honoured either
    edited = tmp_path / "edited.jsonl"
    edited.write_text((tmp_path / "good.jsonl").read_text().replace("bad numerics", "edited"))
    assert open_test_store(tmp_path / "c", LLM_INDUCTOR_PACKS=str(edited)).lookup(entry.key) is not None


@pytest.mark.redis
def test_an_unsigned_revocation_in_redis_is_ignored_and_a_signed_one_travels(tmp_path, redis_server):
    from llm_inductor.cache.redis_store import PREFIX

    url, _, client = redis_server
    a = open_test_store(tmp_path / "a", LLM_INDUCTOR_REDIS_URL=url)
    entry = a.put(make_entry())
    client.hset(PREFIX + "revoked", f"key:{entry.key}", "anyone with write access")
    b = open_test_store(
        tmp_path / "b", LLM_INDUCTOR_REDIS_URL=url, LLM_INDUCTOR_TRUSTED_KEYS=str(tmp_path / "a" / "keys")
    )
    assert b.lookup(entry.key) is not None
    a.revoke(f"key:{entry.key}", "withdrawn")  # signed with a's local key, which b trusts
    b = open_test_store(
        tmp_path / "b", LLM_INDUCTOR_REDIS_URL=url, LLM_INDUCTOR_TRUSTED_KEYS=str(tmp_path / "a" / "keys")
    )
    assert b.lookup(entry.key) is None and str(b.judge(entry)) == "revoked: key revoked (withdrawn)"


def test_local_rows_from_before_signing_still_count_and_are_exported_signed(tmp_path, capsys, monkeypatch):
    cache = tmp_path / "c"
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(cache))
    store = open_test_store(cache)
    entry = store.put(make_entry())
    assert store.local.add_revocation(f"key:{entry.key}", "old-style row")  # what an older build wrote
    assert open_test_store(cache).lookup(entry.key) is None
    rc, out, _ = _cli(capsys, "export", str(tmp_path / "p.jsonl"), "--all")
    assert rc == 0
    (rev,) = read_pack(tmp_path / "p.jsonl").revocations
    assert rev.target == f"key:{entry.key}" and rev.reason == "old-style row" and rev.signer == entry.signer
    other = open_test_store(
        tmp_path / "o",
        LLM_INDUCTOR_PACKS=str(tmp_path / "p.jsonl"),
        LLM_INDUCTOR_TRUSTED_KEYS=str(cache / "keys" / "local.pub"),
    )
    assert str(other.judge(entry)).startswith("revoked")


def test_revoking_a_signer_withdraws_its_entries_and_its_revocations(tmp_path, capsys, monkeypatch):
    team_key, team_pub = sign.generate(tmp_path / "team", "team")
    team = sign.load_private(team_key)
    theirs = team.sign(make_entry("theirs"))
    victim = make_entry("victim")
    pack = tmp_path / "team.jsonl"
    write_pack(pack, [theirs], [Revocation(f"key:{victim.key}", "no reason").signed_with(team)])
    cache = tmp_path / "c"
    env = {"LLM_INDUCTOR_TRUSTED_KEYS": str(team_pub), "LLM_INDUCTOR_PACKS": str(pack)}
    for k, v in {"LLM_INDUCTOR_CACHE_DIR": str(cache), **env}.items():
        monkeypatch.setenv(k, v)
    mine = open_test_store(cache).put(victim)
    store = open_test_store(cache, **env)
    assert store.lookup(theirs.key) is not None and store.lookup(mine.key) is None  # the team key's revocation holds

    rc, out, _ = _cli(capsys, "revoke", "--signer", team.public.fingerprint, "--reason", "laptop stolen")
    assert rc == 0 and f"revoked signer:{team.public.fingerprint}" in out
    store = open_test_store(cache, **env)
    verdict = store.judge(theirs)
    assert store.lookup(theirs.key) is None and verdict.reason == "revoked" and not verdict.fixable
    assert str(verdict) == f"revoked: signer {team.public.fingerprint[:16]} revoked (laptop stolen)"
    assert store.lookup(mine.key) is not None  # the revoked key's own revocations are no longer honoured
    rc, out, _ = _cli(capsys, "revoke", "--list")
    assert f"key:{victim.key}" in out and "IGNORED: its signer" not in out  # listing says why per line
    assert _cli(capsys, "revoke", "--signer", "xyz")[0] == 2
    assert _cli(capsys, "revoke", mine.key16, "--signer", team.public.fingerprint)[0] == 2


def test_two_keys_revoking_each_other_are_both_revoked(tmp_path):
    keys = [sign.load_private(sign.generate(tmp_path / "k", n)[0]) for n in ("a", "b")]
    a, b = keys
    pack = tmp_path / "p.jsonl"
    write_pack(
        pack,
        [a.sign(make_entry("a")), b.sign(make_entry("b"))],
        [
            Revocation(f"signer:{b.public.fingerprint}").signed_with(a),
            Revocation(f"signer:{a.public.fingerprint}").signed_with(b),
        ],
    )
    store = open_test_store(tmp_path / "c", LLM_INDUCTOR_PACKS=str(pack), LLM_INDUCTOR_TRUSTED_KEYS=str(tmp_path / "k"))
    assert store.lookup(digest("a")) is None and store.lookup(digest("b")) is None


def _tarball_member(name: str) -> bytes | None:
    with tarfile.open(TARBALL) as tar:
        try:
            member = tar.extractfile(name)
        except KeyError:
            return None
        return member.read() if member else None


def test_the_key_leaked_in_the_benchmark_tarball_is_gone_and_never_trusted(tmp_path):
    keys = ".carry/batch_flow/cache/keys/"
    assert _tarball_member(keys + "local.key") is None
    pub = tmp_path / "leaked.pub"
    pub.write_bytes(_tarball_member(keys + "local.pub"))
    leaked = sign.load_public(pub)
    assert leaked.fingerprint in sign.COMPROMISED
    # even trusted by name, the key's entries are revoked: a signature cannot be checked into service
    entry = dataclasses.replace(make_entry(), signer=leaked.fingerprint, signature="00" * 64)
    store = open_test_store(tmp_path / "c", LLM_INDUCTOR_TRUSTED_KEYS=str(pub))
    verdict = store.judge(entry)
    assert verdict.reason == "revoked" and "compromised" in str(verdict) and not verdict.fixable
    # and a revocation it signed is not honoured
    victim = store.put(make_entry("victim"))
    rev = Revocation(f"key:{victim.key}", "x", leaked.fingerprint, "00" * 64)
    write_pack(tmp_path / "p.jsonl", [], [rev])
    assert (
        open_test_store(
            tmp_path / "c", LLM_INDUCTOR_PACKS=str(tmp_path / "p.jsonl"), LLM_INDUCTOR_TRUSTED_KEYS=str(pub)
        ).lookup(victim.key)
        is not None
    )


def test_signing_with_a_compromised_key_is_refused(tmp_path, monkeypatch):
    key_path, _ = sign.generate(tmp_path, "k")
    monkeypatch.setitem(sign.COMPROMISED, sign.load_private(key_path).public.fingerprint, "a test leak")
    with pytest.raises(sign.UsageError, match="compromised: a test leak. Nothing it signs is trusted. Delete it"):
        sign.load_private(key_path)


# ---------------------------------------------------------------------------- import exit codes (item 7)


def _export_one(tmp_path, capsys, monkeypatch, **changes) -> tuple[Path, object]:
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(tmp_path / "maker"))
    entry = open_test_store(tmp_path / "maker").put(make_entry())
    pack = tmp_path / "p.jsonl"
    write_pack(pack, [dataclasses.replace(entry, **changes)])
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(tmp_path / "importer"))
    return pack, entry


def test_import_of_a_pack_whose_only_entry_has_a_bad_signature_is_exit_1(tmp_path, capsys, monkeypatch):
    pack, entry = _export_one(tmp_path, capsys, monkeypatch, signature="zz")
    rc, out, err = _cli(capsys, "import", str(pack))
    assert rc == 1 and "imported 0 entries" in out and "skipped 1" in out
    assert f"skipped entry {entry.key16}: tampered: the signature is malformed" in err


def test_import_exit_code_and_hint_follow_what_is_usable(tmp_path, capsys, monkeypatch):
    pack, entry = _export_one(tmp_path, capsys, monkeypatch)
    store = open_test_store(tmp_path / "importer")
    store.revoke(f"key:{entry.key}", "withdrawn here")
    rc, out, err = _cli(capsys, "import", str(pack))
    assert rc == 1 and "skipped 1" in out and "cache verify" not in out + err  # verifying cannot lift a revocation
    assert "revoked: key revoked (withdrawn here)" in err
    pack2, entry2 = _export_one(tmp_path, capsys, monkeypatch)  # the same kernel, not revoked on a fresh machine
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(tmp_path / "fresh"))
    rc, out, _ = _cli(capsys, "import", str(pack2))
    assert rc == 0 and "1 not: `llm-inductor cache verify`" in out and "skipped 0" in out


def test_the_compile_time_line_for_a_revoked_kernel_does_not_suggest_cache_verify(tmp_path, caplog):
    store = open_test_store(tmp_path)
    entry = store.put(make_entry())
    store.revoke(f"key:{entry.key}", "bad numerics")
    with caplog.at_level(logging.INFO, logger="llm_inductor"):
        assert open_test_store(tmp_path).lookup(entry.key) is None
    line = next(r.getMessage() for r in caplog.records if entry.key[:16] in r.getMessage())
    assert "revoked" in line and "bad numerics" in line and "cache verify" not in line and "revoke --list" in line
