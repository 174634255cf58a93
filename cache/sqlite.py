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
  * a full disk or an unwritable directory drops the write with one warning.
The file name carries the table schema version, so a newer build's database is
never rebuilt by an older one.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

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
CREATE TABLE IF NOT EXISTS pending (key TEXT PRIMARY KEY, body TEXT NOT NULL, seen INTEGER NOT NULL, updated REAL NOT NULL);
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

T = TypeVar("T")


class SqliteStore:
    name = "local"

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()
        self.path = self.directory / f"entries-v{DB_SCHEMA}.db"
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._warned: set[str] = set()

    # ------------------------------------------------------------ connection
    def _connect(self) -> sqlite3.Connection:
        """Open the database (tests replace this to simulate a full disk)."""
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        return conn

    def _open(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self.directory.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            # quick_check reads every page, so it finds a truncated file at open rather than mid-lookup;
            # past QUICK_CHECK_MAX_BYTES it costs too much per process, and a query meeting a bad page
            # raises "malformed", which quarantines the file just the same.
            if not self.path.exists() or self.path.stat().st_size <= QUICK_CHECK_MAX_BYTES:
                row = conn.execute("PRAGMA quick_check(1)").fetchone()
                if row is None or row[0] != "ok":
                    raise sqlite3.DatabaseError(f"quick_check: {row[0] if row else 'no answer'}")
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")  # persistent in the file; takes a lock once
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: atomic and durable to the last checkpoint
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='counters'").fetchone():
                conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone():
                conn.executescript(f"BEGIN IMMEDIATE; {_META} COMMIT;")
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # ------------------------------------------------------------ failure handling
    def _warn_once(self, what: str, msg: str, *args: Any) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning(msg, *args)

    def _run(self, op: str, default: T, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            quarantined = False
            for attempt in range(RETRIES):
                try:
                    return fn(self._open())
                except sqlite3.OperationalError as e:
                    text = str(e).lower()
                    if "locked" in text or "busy" in text:
                        time.sleep(min(0.05 * 2**attempt, 1.0) * (0.5 + random.random()))
                        continue
                    if "full" in text:
                        self._warn_once("full", "llm_inductor: the local cache %s is full (%s); %s skipped, "
                                        "the compile goes on without it. Free space or run `llm-inductor cache prune`.",
                                        self.path, e, op)
                        return default
                    if "malformed" not in text and "not a database" not in text:
                        self._warn_once(f"op:{text}", "llm_inductor: local cache %s: %s failed (%s); treated as a miss",
                                        self.path, op, e)
                        return default
                    err: sqlite3.DatabaseError = e
                except sqlite3.DatabaseError as e:
                    err = e
                except OSError as e:  # the directory cannot be made or read
                    self._warn_once(f"os:{e.errno}", "llm_inductor: local cache %s unusable (%s); %s skipped",
                                    self.directory, e, op)
                    return default
                if quarantined:
                    break
                self._quarantine(err)
                quarantined = True
            self._warn_once(f"gave-up:{op}", "llm_inductor: local cache %s: %s gave up after %d tries", self.path, op, RETRIES)
            return default

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
                        side = self.path.with_name(self.path.name + suffix)
                        if side.exists():
                            side.replace(aside.with_name(aside.name + suffix))
                    log.warning("llm_inductor: the local cache database %s was corrupt (%s); moved it to %s "
                                "and started an empty one", self.path, err, aside)
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
        return self._run("lookup", [], lambda c: [r[0] for r in c.execute(
            "SELECT body FROM entries WHERE key=? ORDER BY created DESC", (key,))])

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

        return self._run("write", False, w)

    def delete(self, entry_ids: list[str]) -> int:
        def w(c: sqlite3.Connection) -> int:
            with self._write(c):
                n = sum(c.execute("DELETE FROM entries WHERE entry_id=?", (i,)).rowcount for i in entry_ids)
                c.execute(_BUMP)
                return n

        return self._run("delete", 0, w)

    def rows(self) -> list[dict[str, Any]]:
        """Every entry row (body unparsed), newest first."""
        cols = ("entry_id", "key", "content_hash", "created", "added", "size", "hits", "last_hit", "body")
        return self._run("list", [], lambda c: [dict(zip(cols, r)) for r in c.execute(
            f"SELECT {', '.join(cols)} FROM entries ORDER BY added DESC")])

    def record_hits(self, hits: dict[str, int], counters: dict[str, int]) -> None:
        if not hits and not counters:
            return

        def w(c: sqlite3.Connection) -> None:
            now = time.time()
            with self._write(c):
                for entry_id, n in hits.items():
                    c.execute("UPDATE entries SET hits=hits+?, last_hit=? WHERE entry_id=?", (n, now, entry_id))
                for name, n in counters.items():
                    c.execute("INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value=value+?",
                              (name, n, n))

        self._run("hit counters", None, w)

    def compact(self) -> None:
        """Give freed pages back to the filesystem (after prune)."""
        def w(c: sqlite3.Connection) -> None:
            c.execute("VACUUM")
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        self._run("compact", None, w)

    def counters(self) -> dict[str, int]:
        return self._run("counters", {}, lambda c: dict(c.execute("SELECT name, value FROM counters").fetchall()))

    def size_bytes(self) -> int:
        files = [self.path, self.path.with_name(self.path.name + "-wal")]
        return sum(f.stat().st_size for f in files if f.exists())

    def generation(self) -> str | None:
        """"<db id>:<write count>": changes with every write that can change what this tier serves.

        None when the database cannot be read: the caller must then assume anything changed.
        """
        return self._run("generation", None, lambda c: "{db_id}:{version}".format(
            **dict(c.execute("SELECT name, value FROM meta").fetchall())))

    # ------------------------------------------------------------ pending regions
    def add_pending(self, key: str, body: str) -> None:
        def w(c: sqlite3.Connection) -> None:
            with self._write(c):
                c.execute("INSERT INTO pending VALUES (?, ?, 1, ?) ON CONFLICT(key) DO UPDATE SET "
                          "seen=seen+1, updated=excluded.updated", (key, body, time.time()))

        self._run("pending", None, w)

    def pending(self) -> list[tuple[str, int]]:
        """(body, seen) per pending region."""
        return self._run("pending", [], lambda c: c.execute("SELECT body, seen FROM pending").fetchall())

    def resolve_pending(self, key: str) -> None:
        def w(c: sqlite3.Connection) -> None:
            with self._write(c):
                c.execute("DELETE FROM pending WHERE key=?", (key,))

        self._run("pending", None, w)

    # ------------------------------------------------------------ revocations
    def revocations(self) -> list[tuple[str, str]]:
        return self._run("revocations", [], lambda c: c.execute("SELECT target, reason FROM revoked").fetchall())

    def add_revocation(self, target: str, reason: str) -> bool:
        def w(c: sqlite3.Connection) -> bool:
            with self._write(c):
                c.execute("INSERT OR IGNORE INTO revoked VALUES (?, ?, ?)", (target, reason, time.time()))
                c.execute(_BUMP)
            return True

        return self._run("revoke", False, w)
