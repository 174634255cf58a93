"""A read-only or full local cache: hits still served, one warning, and CLI writes that exit 2 with the cause.

Two ways to make the cache unwritable: a read-only bind mount (the real thing; needs root
and mount(8), skipped elsewhere), and fault injection (SQLite or the filesystem answering
as a read-only or full disk does), which runs on any CI box. Root ignores permission bits,
so ``chmod`` cannot stand in for either.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from llm_inductor.cache import cli as cache_cli
from llm_inductor.cache.pack import write_pack
from llm_inductor.cache.sqlite import SqliteStore
from llm_inductor.cache.store import PendingRegion
from llm_inductor.cache.trust import forget_reports
from support.cache_entries import cache_cli as _cli
from support.cache_entries import make_entry, open_test_store

READ_ONLY_WARNING = "nothing will be written"


@pytest.fixture(autouse=True)
def _fresh_reports():
    forget_reports()
    SqliteStore.forget_warnings()


def _warnings(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and text in r.getMessage()]


# ---------------------------------------------------------------------------- a read-only bind mount


def _mount_read_only(src: Path, mnt: Path) -> str | None:
    """Bind-mount src read-only on mnt; the reason it cannot be done here, or None."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return "a read-only bind mount needs root and mount(8)"
    mnt.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "--bind", str(src), str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        return f"mount --bind is not allowed here: {done.stderr.strip()}"
    ro = subprocess.run(["mount", "-o", "remount,bind,ro", str(mnt)], capture_output=True, text=True)
    probe = mnt / ".write-probe"
    try:
        probe.write_text("")
    except OSError as e:
        if ro.returncode == 0 and e.errno == errno.EROFS:
            return None
    probe.unlink(missing_ok=True)
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    return f"mount -o remount,bind,ro did not make {mnt} read-only: {ro.stderr.strip()}"


@pytest.fixture
def read_only_mount(tmp_path):
    """(src, mnt): mnt shows src read-only; the test fills src first, then calls mount()."""
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    mounted = []

    def mount() -> Path:
        why = _mount_read_only(src, mnt)
        if why is not None:
            pytest.skip(why)
        mounted.append(mnt)
        return mnt

    yield src, mount
    for m in mounted:  # -l: SQLite may keep a descriptor open until the process exits
        subprocess.run(["umount", "-l", str(m)], capture_output=True)


def _fill_with_wal(src: Path) -> tuple[list, list]:
    """Entries in the main file and entries only in the write-ahead log (-wal and -shm left as a crash leaves them)."""
    live = src.parent / "live"
    store = open_test_store(live)
    checkpointed = [store.put(make_entry(f"main{i}")) for i in range(3)]
    store.local._open().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    in_wal = [store.put(make_entry(f"wal{i}")) for i in range(2)]
    for p in live.iterdir():  # copied while the writer is open: what another machine's live cache looks like
        (shutil.copytree if p.is_dir() else shutil.copy)(p, src / p.name)
    store.local.close()
    return checkpointed, in_wal


@pytest.mark.parametrize("state", ["closed cleanly", "with its write-ahead log", "log without its -shm"])
def test_read_only_mount_serves_every_hit_with_one_warning(read_only_mount, caplog, capsys, monkeypatch, state):
    src, mount = read_only_mount
    if state == "closed cleanly":
        store = open_test_store(src)
        served, unseen = [store.put(make_entry(f"e{i}")) for i in range(3)], []
        store.local.close()
        assert sorted(p.name for p in src.iterdir()) == ["entries-v1.db", "keys"]  # no -shm: mode=ro cannot open it
    else:
        served, unseen = _fill_with_wal(src)
        if state == "with its write-ahead log":
            served = served + unseen
            unseen = []
        else:
            (src / "entries-v1.db-shm").unlink()
    mnt = mount()
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(mnt))
    with caplog.at_level(logging.WARNING):
        stores = [open_test_store(mnt), open_test_store(mnt)]  # two stores in one process: still one warning
        for s in stores:
            assert [s.lookup(e.key).entry_id for e in served] == [e.entry_id for e in served]
            assert all(s.lookup(e.key) is None for e in unseen)
            generation = s.generation()
            assert generation is not None and generation == s.generation()
            s.add_pending(PendingRegion(key="0" * 64, region_path="/r.py", ops=[], est_us=1.0, share=1.0, device="cpu"))
            s.flush()  # a pending record and hit counts: dropped without another warning
        rc, out, _ = _cli(capsys, "ls")
        assert rc == 0 and all(e.key16 in out for e in served)
        rc, out, _ = _cli(capsys, "show", served[0].key16)
        assert rc == 0 and served[0].entry_id in out
        rc, out, _ = _cli(capsys, "stats", "--json")
        assert rc == 0 and json.loads(out)["entries"] == len(served) and json.loads(out)["served"] == len(served)
    assert len(_warnings(caplog, READ_ONLY_WARNING)) == 1, [r.getMessage() for r in caplog.records]
    if unseen:
        assert len(_warnings(caplog, "-shm")) == 1
    assert not any(p.name.endswith(".corrupt") or ".corrupt-" in p.name for p in src.iterdir())


def test_read_only_mount_refuses_cli_writes_with_exit_2(read_only_mount, capsys, monkeypatch, tmp_path):
    src, mount = read_only_mount
    store = open_test_store(src)
    a, b = store.put(make_entry("a")), store.put(make_entry("b"))
    store.local.close()
    pack = tmp_path / "p.jsonl"
    write_pack(pack, [make_entry("c")], [])
    damaged = tmp_path / "entries-v1.db.corrupt-1"
    shutil.copy(src / "entries-v1.db", damaged)
    mnt = mount()
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(mnt))
    for argv in (
        ["rm", a.key16],
        ["prune", "--unservable"],
        ["prune", "--older-than", "1"],
        ["revoke", b.key16],
        ["import", str(pack)],
        ["salvage", str(damaged)],
    ):
        rc, _, err = _cli(capsys, *argv)
        assert rc == 2 and "read-only" in err and "LLM_INDUCTOR_CACHE_DIR" in err and "Traceback" not in err, (
            argv,
            err,
        )
    assert sorted(r["entry_id"] for r in open_test_store(mnt).local.rows()) == sorted([a.entry_id, b.entry_id])


# ---------------------------------------------------------------------------- fault injection (any machine)


class _ReadOnlyDisk(sqlite3.Connection):
    """A connection to a database SQLite may only read: every write fails as SQLite reports it."""

    error = "attempt to write a readonly database"

    def execute(self, sql, *args):
        if (
            sql.lstrip()
            .upper()
            .startswith(("INSERT", "UPDATE", "DELETE", "BEGIN IMMEDIATE", "PRAGMA JOURNAL_MODE=", "CREATE", "VACUUM"))
        ):
            raise sqlite3.OperationalError(self.error)
        return super().execute(sql, *args)

    def executescript(self, script):
        raise sqlite3.OperationalError(self.error)


class _FullDisk(_ReadOnlyDisk):
    error = "database or disk is full"


def _faulty(monkeypatch, factory) -> None:
    """Every SqliteStore connects through factory (the CLI opens its own stores)."""

    def connect(self):
        return sqlite3.connect(self.path, timeout=1, isolation_level=None, check_same_thread=False, factory=factory)

    monkeypatch.setattr(SqliteStore, "_connect", connect)


def test_sqlite_refusing_writes_serves_reads_and_warns_once(tmp_path, caplog, monkeypatch):
    store = open_test_store(tmp_path)
    kept = store.put(make_entry("kept"))
    store.local.close()
    _faulty(monkeypatch, _ReadOnlyDisk)
    with caplog.at_level(logging.WARNING):
        ro = open_test_store(tmp_path)
        assert ro.lookup(kept.key).entry_id == kept.entry_id
        gen = ro.generation()
        stored, tiers = ro.write(make_entry("new"))
        ro.write(make_entry("newer"))
        ro.flush()
        assert gen is not None and ro.generation() == gen
        assert ro.lookup(make_entry("new").key) is None
    assert tiers == []
    assert len(_warnings(caplog, READ_ONLY_WARNING)) == 1, [r.getMessage() for r in caplog.records]
    assert ro.local.refusal and "read-only" in ro.local.refusal


def test_read_only_filesystem_error_on_the_directory(tmp_path, caplog, monkeypatch):
    """The directory answers EROFS (as a read-only mount does): served read-only, never quarantined."""
    store = open_test_store(tmp_path)
    kept = store.put(make_entry("kept"))
    store.local.close()
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self == tmp_path:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with caplog.at_level(logging.WARNING):
        ro = open_test_store(tmp_path)
        assert ro.lookup(kept.key).entry_id == kept.entry_id
        assert ro.write(make_entry("new"))[1] == []
    assert len(_warnings(caplog, READ_ONLY_WARNING)) == 1
    assert "Read-only file system" in _warnings(caplog, READ_ONLY_WARNING)[0]


def _accepting_verifier(monkeypatch) -> None:
    result = SimpleNamespace(
        accepted=True,
        reason="ok",
        message="all checks passed",
        timings={},
        envelope={},
        device="cpu",
        harness_failure=False,
        to_dict=lambda: {"accepted": True},
    )
    monkeypatch.setattr(cache_cli, "_verify", lambda *a, **k: result)


def _region(tmp_path: Path) -> tuple[Path, Path]:
    """A real region file (`cache add` rebuilds the region from its key) and a candidate for it."""
    from llm_inductor.compile import state as _state
    from support.util import RMSNorm, regions_of

    with _state.overridden(export_dir=str(tmp_path / "regions")):
        (row,) = regions_of(RMSNorm(33), torch.randn(5, 33))
    candidate = tmp_path / "candidate.py"
    candidate.write_text(make_entry("added").kernel_source)
    return Path(row.region_path), candidate


@pytest.mark.parametrize(
    "disk, cause, fix",
    [(_ReadOnlyDisk, "read-only", "LLM_INDUCTOR_CACHE_DIR"), (_FullDisk, "is full", "llm-inductor cache prune")],
)
def test_cache_add_on_an_unwritable_cache_exits_2_with_the_cause(tmp_path, capsys, monkeypatch, disk, cause, fix):
    cache_dir = tmp_path / "cache"
    open_test_store(cache_dir).put(make_entry("other"))
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(cache_dir))
    _accepting_verifier(monkeypatch)
    region, candidate = _region(tmp_path)
    _faulty(monkeypatch, disk)
    rc, _, err = _cli(capsys, "add", str(region), str(candidate), "--device", "cpu")
    assert rc == 2, err
    assert cause in err and fix in err and "internal error" not in err


@pytest.mark.parametrize("disk, cause", [(_ReadOnlyDisk, "read-only"), (_FullDisk, "is full")])
def test_writing_commands_on_an_unwritable_cache_exit_2(tmp_path, capsys, monkeypatch, disk, cause):
    cache_dir = tmp_path / "cache"
    store = open_test_store(cache_dir)
    a, b = store.put(make_entry("a")), store.put(make_entry("b"))
    pack = tmp_path / "p.jsonl"
    write_pack(pack, [store.put(make_entry("c"))], [])
    store.local.close()
    damaged = tmp_path / "entries-v1.db.corrupt-1"  # holds c, which salvage would restore
    shutil.copy(store.local.path, damaged)
    store.remove([make_entry("c").entry_id])
    store.local.close()
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(cache_dir))
    _faulty(monkeypatch, disk)
    for argv in (
        ["rm", a.key16],
        ["prune", "--unservable", "--other-versions", "--max-size", "0"],
        ["revoke", b.key16],
        ["import", str(pack)],
        ["salvage", str(damaged)],
    ):
        rc, _, err = _cli(capsys, *argv)
        assert rc == 2 and cause in err and "internal error" not in err, (argv, rc, err)
    monkeypatch.undo()
    assert len(open_test_store(cache_dir).local.rows()) == 2


def test_the_compile_path_never_raises_on_a_read_only_cache(tmp_path, monkeypatch):
    """put() from the tuner: a dropped write is a value (no tiers), not an exception, and nothing is signed."""
    _faulty(monkeypatch, _ReadOnlyDisk)
    store = open_test_store(tmp_path / "fresh")  # no database yet, and none can be made
    entry, tiers = store.write(make_entry("x"))
    assert tiers == [] and store.lookup(entry.key) is None and store.generation() is not None
