"""The local tier: one SQLite database in WAL mode under the cache directory.

Many processes may read and write at once: WAL lets readers run beside one
writer, every write is one ``BEGIN IMMEDIATE`` transaction (atomic, and it takes
the write lock up front, so two writers never deadlock upgrading a read lock), a
busy timeout queues writers, and "database is locked" that still escapes it is
retried with backoff. Rows hold entries as JSON text; this layer stores and
returns text and makes no trust decisions.

Failure is a warning and a default value, never an exception on the compile path:
  * a corrupt or truncated database file is moved aside (``entries-v1.db.corrupt-<time>``,
    never deleted) under a file lock and an empty one is built in its place;
    ``read_damaged`` reads back the rows SQLite can still read (``llm-inductor cache salvage``);
  * a read-only directory or database (a team's shared cache mounted read-only) is
    opened read-only: its entries are served, and every write is dropped, with one
    warning per directory and process;
  * a full disk or an unusable directory drops the write with one warning.
A dropped write leaves ``refusal`` saying why and what fixes it (the CLI's exit-2 message).

Per-size records of family entries (``cache/sizes.py``) live in their own table,
``size_records``, keyed by record key (entry id, GPU model, Inductor mode, sizes), and
are counted by their own meta row, ``sizes_version``: timing a size never changes
``generation()``, so it never invalidates AOTAutograd's cache of every graph.
The file name carries the table schema version, so a newer build's database is
never rebuilt by an older one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import random
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from llm_inductor.cache.pack import file_stamp

log = logging.getLogger(__name__)

DB_SCHEMA = 1
BUSY_TIMEOUT_S = 5.0  # a write transaction takes milliseconds; waiting longer means a stuck writer
RETRIES = 4
QUICK_CHECK_MAX_BYTES = 16 << 20  # about 1.5 ms per MB measured on the CPU machine

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    entry_id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    created REAL NOT NULL,
    added REAL NOT NULL,
    size INTEGER NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0,
    last_hit REAL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_key ON entries(key);
CREATE TABLE IF NOT EXISTS pending (key TEXT PRIMARY KEY, body TEXT NOT NULL, \
seen INTEGER NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS revoked (target TEXT PRIMARY KEY, reason TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
# Added after schema 1 shipped, so it is created on open, not only with a new file. ``generation``
# names this database file (a random id, new whenever the file is rebuilt) and counts the writes
# that change what it can serve (entries and revocations; not hit counts or pending records).
_META = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('db_id', lower(hex(randomblob(8))));
INSERT OR IGNORE INTO meta VALUES ('version', '0');
"""
_BUMP = "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'version'"
# Added after schema 1 shipped too, created on open: a family entry's per-size records, and their own
# write count (``sizes_generation``), apart from ``version``.
# What the ranks of one distributed job agree on (compile/ranks.py): made on first use, never in the schema
# that other versions read.
_DECISIONS = "CREATE TABLE IF NOT EXISTS decisions (name TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL)"

_SIZES = """
CREATE TABLE IF NOT EXISTS size_records (
    record_key TEXT PRIMARY KEY,
    entry_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    created REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS size_records_by_entry ON size_records(entry_id);
INSERT OR IGNORE INTO meta VALUES ('sizes_version', '0');
"""
_BUMP_SIZES = (
    "INSERT INTO meta VALUES ('sizes_version', '1') ON CONFLICT(name) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
)

T = TypeVar("T")


_READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_told: set[tuple[Path, str]] = set()  # (directory, what) already warned about in this process


def _says_read_only(e: sqlite3.Error) -> bool:
    """SQLITE_READONLY: this connection may not change the file (the message of every such code)."""
    return "readonly database" in str(e).lower()


def _unwritable(directory: Path) -> str | None:
    """Why this directory cannot take writes, or None; raises OSError when it cannot be used at all."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno not in _READ_ONLY_ERRNOS:
            raise
        return e.strerror or str(e)
    if os.statvfs(directory).f_flag & os.ST_RDONLY:
        return "read-only file system"
    if not os.access(directory, os.W_OK):  # root passes this whatever the mode bits say
        return "no write permission"
    return None


def _empty_database() -> sqlite3.Connection:
    """What a read-only directory without a database serves: nothing, under a generation that never changes."""
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    conn.executescript(
        _SCHEMA + "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('db_id', 'none'), ('version', '0');" + _SIZES
    )
    return conn


class SqliteStore:
    name = "local"

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()
        self.path = self.directory / f"entries-v{DB_SCHEMA}.db"
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._warned: set[str] = set()
        self.read_only: str | None = None  # why this process only reads here (set on first open or failed write)
        self.refusal: str | None = None  # why the last write was dropped, naming the fix; None once one succeeds
        self._immutable_stamps: tuple[str, ...] | None = None  # the files an immutable=1 connection promised fixed

    # ------------------------------------------------------------ connection
    def _connect(self) -> sqlite3.Connection:
        """Open the database (tests replace this to simulate a full disk)."""
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        return conn

    def _open(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        if self.read_only is None and (cause := _unwritable(self.directory)) is not None:
            self._become_read_only(cause)
        conn = None
        if self.read_only is None:
            try:
                conn = self._open_writable()
            except sqlite3.OperationalError as e:
                if not _says_read_only(e):
                    raise
                self._become_read_only(str(e))
        if conn is None:
            conn = self._open_read_only()
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _open_writable(self) -> sqlite3.Connection:
        conn = self._connect()
        try:
            self._check(conn)
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")  # persistent in the file; takes a lock once
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: atomic and durable to the last checkpoint
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='counters'").fetchone():
                conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone():
                conn.executescript(f"BEGIN IMMEDIATE; {_META} COMMIT;")
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='size_records'").fetchone():
                conn.executescript(f"BEGIN IMMEDIATE; {_SIZES} COMMIT;")
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        """A connection that never writes, not even the -shm file.

        ``mode=ro`` reads a live write-ahead log, but needs its -shm file; a WAL database
        closed cleanly has none, and on a read-only filesystem SQLite cannot make one, so
        those open with ``immutable=1``, which reads the main file alone. Immutable also
        means SQLite never looks for changes: ``generation`` checks the file stamps instead.
        """
        if not self.path.exists() or self.path.stat().st_size == 0:
            return _empty_database()
        for flags in ("mode=ro", "immutable=1"):
            conn = sqlite3.connect(
                f"{self.path.as_uri()}?{flags}",
                uri=True,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                self._check(conn)  # mode=ro without a -shm fails here, not at connect
                break
            except sqlite3.OperationalError as e:
                conn.close()
                if flags != "mode=ro" or "unable to open" not in str(e):
                    raise
        if flags == "immutable=1":
            wal = self._side("-wal")
            if wal.exists() and wal.stat().st_size:
                self._tell_once(
                    "wal-unread",
                    "llm_inductor: local cache %s: its write-ahead log %s cannot be read "
                    "without its -shm file; entries written since its last checkpoint are not served",
                    self.path,
                    wal,
                )
            self._immutable_stamps = self._stamps()
        return conn

    def _check(self, conn: sqlite3.Connection) -> None:
        # quick_check reads every page, so it finds a truncated file at open rather than mid-lookup;
        # past QUICK_CHECK_MAX_BYTES it costs too much per process, and a query meeting a bad page
        # raises "malformed", which quarantines the file just the same.
        if not self.path.exists() or self.path.stat().st_size <= QUICK_CHECK_MAX_BYTES:
            row = conn.execute("PRAGMA quick_check(1)").fetchone()
            if row is None or row[0] != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {row[0] if row else 'no answer'}")

    def _side(self, suffix: str) -> Path:
        return self.path.with_name(self.path.name + suffix)

    def _stamps(self) -> tuple[str, ...]:
        return tuple(file_stamp(p) for p in (self.path, self._side("-wal")))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
            self._immutable_stamps = None

    # ------------------------------------------------------------ failure handling
    @staticmethod
    def forget_warnings() -> None:
        """Warn again about what was reported once per process (tests)."""
        _told.clear()

    def _warn_once(self, what: str, msg: str, *args: Any) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning(msg, *args)

    def _tell_once(self, what: str, msg: str, *args: Any) -> None:
        """Warn once per process: every store over this directory would say the same."""
        if (self.directory, what) not in _told:
            _told.add((self.directory, what))
            log.warning(msg, *args)

    def _become_read_only(self, cause: str) -> None:
        """Serve what is here and drop every write from now on: one warning per directory and process."""
        self.close()
        self.read_only = cause
        self._tell_once(
            "read-only",
            "llm_inductor: the local cache %s is read-only (%s); its entries are served, "
            "but nothing will be written there (new kernels, hit counts, pending regions). To keep "
            "them, point LLM_INDUCTOR_CACHE_DIR at a writable directory.",
            self.directory,
            cause,
        )

    def _read_only_refusal(self) -> str:
        return (
            f"the local cache {self.directory} is read-only ({self.read_only}): mount it read-write, "
            "or point LLM_INDUCTOR_CACHE_DIR at a writable directory"
        )

    def _drop(self, writes: bool, what: str, default: T, problem: str, op: str) -> T:
        """Give up on op: one warning per cause, and for a write, ``refusal`` says why."""
        self._warn_once(what, "llm_inductor: %s (%s skipped)", problem, op)
        if writes:
            self.refusal = problem
        return default

    def _run(self, op: str, default: T, fn: Callable[[sqlite3.Connection], T], writes: bool = False) -> T:
        """fn on the open database; any failure is a warning and default, never an exception."""
        with self._lock:
            if writes:
                self.refusal = None
            quarantined = False
            for attempt in range(RETRIES):
                try:
                    conn = self._open()  # finds out whether this directory takes writes at all
                    if writes and self.read_only is not None:  # said once, when it was found out
                        self.refusal = self._read_only_refusal()
                        return default
                    return fn(conn)
                except sqlite3.OperationalError as e:
                    text = str(e).lower()
                    if "locked" in text or "busy" in text:
                        time.sleep(min(0.05 * 2**attempt, 1.0) * (0.5 + random.random()))
                        continue
                    if getattr(e, "sqlite_errorname", "") == "SQLITE_READONLY_DBMOVED":
                        self.close()  # another process moved a corrupt file aside: open the one now in its place
                        continue
                    if _says_read_only(e):
                        self._become_read_only(str(e))
                        if writes:
                            self.refusal = self._read_only_refusal()
                            return default
                        continue  # read again through a read-only connection
                    if "full" in text:
                        return self._drop(
                            writes,
                            "full",
                            default,
                            f"the local cache {self.path} is full ({e}): free space or run `llm-inductor cache prune`",
                            op,
                        )
                    if "malformed" not in text and "not a database" not in text:
                        return self._drop(writes, f"op:{text}", default, f"local cache {self.path}: {e}", op)
                    err: sqlite3.DatabaseError = e
                except sqlite3.DatabaseError as e:
                    err = e
                except OSError as e:  # the directory cannot be made or read
                    return self._drop(writes, f"os:{e.errno}", default, self._os_problem(e), op)
                if self.read_only is not None:  # cannot be moved aside from here
                    return self._drop(
                        writes,
                        "corrupt",
                        default,
                        f"the local cache database {self.path} is damaged ({err}) and read-only, so "
                        "nothing is served from it; `llm-inductor cache salvage FILE` in a writable "
                        "cache directory recovers the entries it can still read",
                        op,
                    )
                if quarantined:
                    break
                try:
                    self._quarantine(err)
                except OSError as e:
                    return self._drop(writes, f"os:{e.errno}", default, self._os_problem(e), op)
                quarantined = True
            return self._drop(
                writes,
                f"gave-up:{op}",
                default,
                f"local cache {self.path}: gave up after {RETRIES} tries (locked or damaged)",
                op,
            )

    def unwritable(self) -> str | None:
        """Why a write here would be dropped, naming the fix; None when nothing is known to stop one."""
        self._run("open", None, lambda c: None, writes=True)
        return self.refusal

    def moved_aside(self) -> list[Path]:
        """The damaged databases ``_quarantine`` moved aside here, oldest first (``read_damaged`` reads them)."""
        found = self.directory.glob(f"{self.path.name}.corrupt-*")
        return sorted(p for p in found if not p.name.endswith(("-wal", "-shm")))

    def _os_problem(self, e: OSError) -> str:
        if e.errno in _FULL_ERRNOS:
            return (
                f"the local cache {self.directory} is full ({e.strerror}): free space or run `llm-inductor cache prune`"
            )
        return f"the local cache {self.directory} is unusable ({e}): fix LLM_INDUCTOR_CACHE_DIR or the directory"

    def _quarantine(self, err: Exception) -> None:
        """Move a corrupt database aside (never delete it) and let the next open build a fresh one."""
        self.close()
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one process moves it; the others then find a fresh file
            try:
                if self._still_corrupt():
                    stamp = time.strftime("%Y%m%d-%H%M%S")
                    aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{os.getpid()}")
                    self.path.replace(aside)
                    for suffix in ("-wal", "-shm"):
                        side = self._side(suffix)
                        if side.exists():
                            side.replace(aside.with_name(aside.name + suffix))
                    log.warning(
                        "llm_inductor: the local cache database %s was corrupt (%s); moved it to %s "
                        "and started an empty one (`llm-inductor cache salvage` restores the entries "
                        "it can still read)",
                        self.path,
                        err,
                        aside,
                    )
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _still_corrupt(self) -> bool:
        if not self.path.exists():
            return False
        try:
            conn = self._connect()
        except sqlite3.DatabaseError:
            return True
        try:
            row = conn.execute("PRAGMA quick_check(1)").fetchone()
            return row is None or row[0] != "ok"
        except sqlite3.OperationalError as e:
            return "malformed" in str(e) or "not a database" in str(e)
        except sqlite3.DatabaseError:
            return True
        finally:
            conn.close()

    @staticmethod
    @contextlib.contextmanager
    def _write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # ------------------------------------------------------------ entries
    def bodies_for_key(self, key: str) -> list[str]:
        return self._run(
            "lookup",
            [],
            lambda c: [r[0] for r in c.execute("SELECT body FROM entries WHERE key=? ORDER BY created DESC", (key,))],
        )

    def body(self, entry_id: str) -> str | None:
        def q(c: sqlite3.Connection) -> str | None:
            row = c.execute("SELECT body FROM entries WHERE entry_id=?", (entry_id,)).fetchone()
            return row[0] if row else None

        return self._run("get", None, q)

    def put(self, entry_id: str, key: str, content_hash: str, created: float, body: str) -> bool:
        def w(c: sqlite3.Connection) -> bool:
            with self._write(c):
                c.execute(
                    "INSERT INTO entries (entry_id, key, content_hash, created, added, size, body) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(entry_id) DO UPDATE SET body=excluded.body, "
                    "created=excluded.created, size=excluded.size",
                    (entry_id, key, content_hash, created, time.time(), len(body), body),
                )
                c.execute("DELETE FROM pending WHERE key=?", (key,))
                c.execute(_BUMP)
            return True

        return self._run("write", False, w, writes=True)

    def delete(self, entry_ids: list[str]) -> int:
        """Remove entries, and their per-size records with them."""

        def w(c: sqlite3.Connection) -> int:
            with self._write(c):
                n = sum(c.execute("DELETE FROM entries WHERE entry_id=?", (i,)).rowcount for i in entry_ids)
                c.execute(_BUMP)
                if _has_sizes(c) and sum(
                    c.execute("DELETE FROM size_records WHERE entry_id=?", (i,)).rowcount for i in entry_ids
                ):
                    c.execute(_BUMP_SIZES)
                return n

        return self._run("delete", 0, w, writes=True)

    def rows(self) -> list[dict[str, Any]]:
        """Every entry row (body unparsed), newest first."""
        cols = ("entry_id", "key", "content_hash", "created", "added", "size", "hits", "last_hit", "body")
        return self._run(
            "list",
            [],
            lambda c: [
                dict(zip(cols, r)) for r in c.execute(f"SELECT {', '.join(cols)} FROM entries ORDER BY added DESC")
            ],
        )

    def record_hits(self, hits: dict[str, int], counters: dict[str, int]) -> None:
        if not hits and not counters:
            return

        def w(c: sqlite3.Connection) -> None:
            now = time.time()
            with self._write(c):
                for entry_id, n in hits.items():
                    c.execute("UPDATE entries SET hits=hits+?, last_hit=? WHERE entry_id=?", (n, now, entry_id))
                for name, n in counters.items():
                    c.execute(
                        "INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value=value+?", (name, n, n)
                    )

        self._run("hit counters", None, w, writes=True)

    def compact(self) -> None:
        """Give freed pages back to the filesystem (after prune)."""

        def w(c: sqlite3.Connection) -> None:
            c.execute("VACUUM")
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        self._run("compact", None, w, writes=True)

    def counters(self) -> dict[str, int]:
        return self._run("counters", {}, lambda c: dict(c.execute("SELECT name, value FROM counters").fetchall()))

    def size_bytes(self) -> int:
        files = [self.path, self.path.with_name(self.path.name + "-wal")]
        return sum(f.stat().st_size for f in files if f.exists())

    def generation(self) -> str | None:
        """ "<db id>:<write count>": changes with every write that can change what this tier serves.

        None when the database cannot be read: the caller must then assume anything changed.
        Read-only, it holds too: nothing here writes, and whoever writes elsewhere bumps the count.
        Per-size records are not counted here (``sizes_generation``).
        """
        return self._meta_token("generation", "version")

    def sizes_generation(self) -> str | None:
        """ "<db id>:<size-record write count>": changes with every write of a per-size record (None: unreadable)."""
        return self._meta_token("sizes generation", "sizes_version")

    def _meta_token(self, op: str, counter: str) -> str | None:
        with self._lock:
            if self._immutable_stamps is not None and self._immutable_stamps != self._stamps():
                self.close()  # an immutable=1 connection never sees another writer's changes: open the files anew

        def q(c: sqlite3.Connection) -> str:
            if self.read_only is not None and not c.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone():
                return "files " + " ".join(self._stamps())  # a database from before meta, and nobody here writes it
            meta = dict(c.execute("SELECT name, value FROM meta").fetchall())
            return f"{meta.get('db_id')}:{meta.get(counter, 'none')}"  # none: a read-only database from before

        return self._run(op, None, q)

    # ------------------------------------------------------------ per-size records
    def put_size(self, record_key: str, entry_id: str, content_hash: str, created: float, body: str) -> bool:
        """Store a record under its key unless the one there is newer or the same; True when the write took."""

        def w(c: sqlite3.Connection) -> bool:
            with self._write(c):
                cur = c.execute(
                    "INSERT INTO size_records (record_key, entry_id, content_hash, created, body) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT(record_key) DO UPDATE SET entry_id=excluded.entry_id, "
                    "content_hash=excluded.content_hash, created=excluded.created, body=excluded.body "
                    "WHERE excluded.created >= size_records.created "
                    "AND (excluded.content_hash != size_records.content_hash OR excluded.body != size_records.body)",
                    (record_key, entry_id, content_hash, created, body),
                )
                if cur.rowcount:
                    c.execute(_BUMP_SIZES)
            return True

        return self._run("size record write", False, w, writes=True)

    def size_bodies(self, record_key: str) -> list[str]:
        """The body stored under this record key (none or one)."""

        def q(c: sqlite3.Connection) -> list[str]:
            if not _has_sizes(c):
                return []
            return [r[0] for r in c.execute("SELECT body FROM size_records WHERE record_key=?", (record_key,))]

        return self._run("size lookup", [], q)

    def size_rows(self, entry_id: str | None = None) -> list[tuple[str, str]]:
        """(record key, body) of every record, or of one entry's, newest first."""

        def q(c: sqlite3.Connection) -> list[tuple[str, str]]:
            if not _has_sizes(c):
                return []
            where, args = ("WHERE entry_id=?", (entry_id,)) if entry_id is not None else ("", ())
            return [
                (str(k), str(b))
                for k, b in c.execute(
                    f"SELECT record_key, body FROM size_records {where} ORDER BY created DESC", args
                ).fetchall()
            ]

        return self._run("size list", [], q)

    # ------------------------------------------------------------ pending regions
    def add_pending(self, key: str, body: str) -> None:
        """Record a pending region, or update it: the newest body (what it is pending for changes: an LLM,
        or timing of a family kernel), the first sighting's ``first_seen``, one more ``seen``."""

        def w(c: sqlite3.Connection) -> None:
            with self._write(c):
                old = c.execute("SELECT body FROM pending WHERE key=?", (key,)).fetchone()
                c.execute(
                    "INSERT INTO pending VALUES (?, ?, 1, ?) ON CONFLICT(key) DO UPDATE SET "
                    "body=excluded.body, seen=seen+1, updated=excluded.updated",
                    (key, _first_seen_kept(old[0], body) if old else body, time.time()),
                )

        self._run("pending", None, w, writes=True)

    def pending(self) -> list[tuple[str, int]]:
        """(body, seen) per pending region."""
        return self._run("pending", [], lambda c: c.execute("SELECT body, seen FROM pending").fetchall())

    def resolve_pending(self, key: str) -> None:
        def w(c: sqlite3.Connection) -> None:
            with self._write(c):
                c.execute("DELETE FROM pending WHERE key=?", (key,))

        self._run("pending", None, w, writes=True)

    # ------------------------------------------------------------ decisions shared by the ranks of one job
    def claim(self, name: str, value: str, ttl_s: float) -> str | None:
        """Set name to value unless it holds an unexpired value; the value it holds after (None: cannot write).

        One transaction (BEGIN IMMEDIATE), so of several processes claiming one name exactly one wins.
        """

        def w(c: sqlite3.Connection) -> str:
            with self._write(c):
                c.execute(_DECISIONS)
                now = time.time()
                c.execute("DELETE FROM decisions WHERE expires < ?", (now,))
                c.execute("INSERT OR IGNORE INTO decisions VALUES (?, ?, ?)", (name, value, now + ttl_s))
                return c.execute("SELECT value FROM decisions WHERE name=?", (name,)).fetchone()[0]

        return self._run("decision", None, w, writes=True)

    def decision(self, name: str) -> str | None:
        def r(c: sqlite3.Connection) -> str | None:
            if not c.execute("SELECT 1 FROM sqlite_master WHERE name='decisions'").fetchone():
                return None
            row = c.execute("SELECT value FROM decisions WHERE name=? AND expires >= ?", (name, time.time()))
            return (row.fetchone() or (None,))[0]

        return self._run("decision", None, r)

    # ------------------------------------------------------------ revocations
    def revocations(self) -> list[tuple[str, str]]:
        return self._run("revocations", [], lambda c: c.execute("SELECT target, reason FROM revoked").fetchall())

    def add_revocation(self, target: str, reason: str) -> bool:
        def w(c: sqlite3.Connection) -> bool:
            with self._write(c):
                c.execute("INSERT OR IGNORE INTO revoked VALUES (?, ?, ?)", (target, reason, time.time()))
                c.execute(_BUMP)
            return True

        return self._run("revoke", False, w, writes=True)


def _has_sizes(c: sqlite3.Connection) -> bool:
    """Whether this database has the size_records table (a read-only one from before may not)."""
    return c.execute("SELECT 1 FROM sqlite_master WHERE name='size_records'").fetchone() is not None


# ---------------------------------------------------------------------------- salvage


@dataclass
class Damaged:
    """The rows SQLite could still read from a damaged database file."""

    entries: list[tuple[str | None, str]] = field(default_factory=list)  # (the row's entry_id, body)
    revocations: list[tuple[str, str]] = field(default_factory=list)  # (target, stored body)
    size_records: list[tuple[str, str]] = field(default_factory=list)  # (record key, body)
    lost: list[str] = field(default_factory=list)  # what could not be read, one line each


def read_damaged(path: str | Path) -> Damaged:
    """Every entry and revocation row SQLite can still read from path; the file itself is never changed.

    The file and its -wal are copied to a scratch directory, where SQLite may replay the log
    and make a -shm. ``writable_schema`` makes SQLite open a file shorter than its header
    says instead of refusing it whole (what the sqlite3 shell's ``.recover`` relies on; the
    connection is read-only, so nothing is written). Each row is then fetched by rowid on
    its own, the rowids gathered by a scan of the table and of each index, so a bad page
    costs the rows on it, not every row after it. No trust decision is made here.
    """
    path = Path(path)
    found = Damaged()
    with tempfile.TemporaryDirectory(prefix="llm_inductor-salvage-") as tmp:
        copy = Path(tmp) / "damaged.db"
        shutil.copyfile(path, copy)
        wal = path.with_name(path.name + "-wal")
        if wal.exists():
            shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
        conn = sqlite3.connect(f"{copy.as_uri()}?mode=ro", uri=True, isolation_level=None)
        try:
            conn.execute("PRAGMA writable_schema=ON")
            found.entries = _readable_rows(conn, "entries", "entry_id, body", found.lost)
            found.revocations = _readable_rows(conn, "revoked", "target, reason", found.lost)
            try:
                sizes = _has_sizes(conn)
            except sqlite3.DatabaseError:
                sizes = True  # _readable_rows says what it cannot read
            if sizes:  # a database from before per-size records has none to lose
                found.size_records = _readable_rows(conn, "size_records", "record_key, body", found.lost)
        finally:
            conn.close()
    return found


def _readable_rows(conn: sqlite3.Connection, table: str, columns: str, lost: list[str]) -> list[Any]:
    quote = lambda name: '"' + name.replace('"', '""') + '"'  # noqa: E731  names read from a damaged file
    try:
        indexes = [
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name=?", (table,))
        ]
    except sqlite3.DatabaseError as e:
        lost.append(f"{table}: unreadable ({e})")
        return []
    rowids: set[int] = set()
    failures = []
    for path in ["NOT INDEXED", *(f"INDEXED BY {quote(name)}" for name in indexes)]:
        try:
            rowids.update(r for (r,) in conn.execute(f"SELECT rowid FROM {table} {path}"))
        except sqlite3.DatabaseError as e:  # a scan stops at its first bad page; the other paths go on
            failures.append(f"{path}: {e}")
    if not rowids and failures:
        lost.append(f"{table}: no row could be found ({'; '.join(failures)})")
    rows = []
    for rowid in sorted(rowids):
        try:
            row = conn.execute(f"SELECT {columns} FROM {table} WHERE rowid=?", (rowid,)).fetchone()
        except sqlite3.DatabaseError as e:
            lost.append(f"{table} row {rowid}: {e}")
            continue
        if row is None:
            lost.append(f"{table} row {rowid}: named by an index, gone from the table")
        else:
            rows.append(tuple(row))
    return rows


def _first_seen_kept(old: str, new: str) -> str:
    """``new``, with ``old``'s first sighting (bodies are JSON objects; one that is not is replaced whole)."""
    try:
        first, body = json.loads(old).get("first_seen"), json.loads(new)
    except (ValueError, AttributeError):
        return new
    if first is None or not isinstance(body, dict):
        return new
    return json.dumps({**body, "first_seen": first}, sort_keys=True)
