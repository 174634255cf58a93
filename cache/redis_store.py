"""The shared tier: one Redis server for a team, through ``LLM_INDUCTOR_REDIS_URL``.

Layout (the prefix carries the entry schema, so builds of another schema never meet):
  llm_inductor:v1:entry:<key digest>   hash: entry_id → entry JSON (several kernels per key)
  llm_inductor:v1:revoked              hash: "key:<digest>" | "hash:<content_hash>" | "signer:<fingerprint>"
                                       → {"reason", "signer", "signature"} JSON (``trust.Revocation.body``);
                                       anyone who can write here can write one, so readers honour
                                       only those signed by a key they trust
  llm_inductor:v1:generation           counter: every write of an entry or a revocation adds one
  llm_inductor:v1:size:<entry id>      hash: record key (entry|gpu|mode|sizes) → a family entry's per-size
                                       record JSON (``cache/sizes.py``)
  llm_inductor:v1:sizes_generation     counter: every write of a per-size record adds one (never
                                       ``generation``: timing a size must not invalidate every
                                       AOTAutograd cache entry of the team)
  llm_inductor:v1:decision:<name>      string, expiring: what the ranks of one distributed job agreed on
                                       (which rank tunes a region, and what every rank serves for it)
Short socket timeouts (0.2 s) bound what an unreachable or slow server can cost a
compile. The first failure gives one warning and the tier stays off for the rest
of the process, so a dead server costs one timeout, not one per region. The
``redis`` package is imported only when a URL is configured (the GPU image lacks it).
Values are returned unparsed: garbage is found and skipped by the caller.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

log = logging.getLogger(__name__)

PREFIX = "llm_inductor:v1:"
GENERATION = PREFIX + "generation"
SIZES = PREFIX + "size:"
SIZES_GENERATION = PREFIX + "sizes_generation"
DECISION = PREFIX + "decision:"  # string, with an expiry: what the ranks of one job agreed on (compile/ranks.py)
TIMEOUT_S = 0.2

T = TypeVar("T")


class RedisTier:
    name = "redis"

    def __init__(self, url: str, timeout: float = TIMEOUT_S) -> None:
        self.url = url
        self.timeout = timeout
        self._client: Any = None
        self._errors: tuple[type[BaseException], ...] = (OSError,)
        self._down: str | None = None  # why the tier is off for this process
        self._lock = threading.Lock()

    @property
    def up(self) -> bool:
        return self._down is None

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        try:
            import redis
        except ImportError:
            raise _Off("the 'redis' package is not installed (pip install 'llm-inductor[redis]')") from None
        self._errors = (redis.exceptions.RedisError, OSError)
        try:
            self._client = redis.Redis.from_url(
                self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout, retry_on_timeout=False
            )
        except ValueError as e:
            raise _Off(f"bad LLM_INDUCTOR_REDIS_URL ({e}); expected redis://host:port/db") from None
        return self._client

    def _run(self, op: str, default: T, fn: Callable[[Any], T]) -> T:
        if self._down is not None:
            return default
        try:
            with self._lock:
                return fn(self._connect())
        except _Off as e:
            self._off(str(e))
        except self._errors as e:
            self._off(f"{op}: {type(e).__name__}: {e}")
        return default

    def _off(self, why: str) -> None:
        if self._down is None:
            self._down = why
            log.warning(
                "llm_inductor: shared cache %s is unusable (%s); using the local cache only in this process",
                _redact(self.url),
                why,
            )

    # ------------------------------------------------------------ entries
    def bodies_for_key(self, key: str) -> list[bytes]:
        return self._run("lookup", [], lambda r: list(r.hvals(PREFIX + "entry:" + key)))

    def body(self, entry_id: str) -> bytes | None:
        key = entry_id.split(":", 1)[0]
        return self._run("get", None, lambda r: r.hget(PREFIX + "entry:" + key, entry_id))

    def put(self, entry_id: str, key: str, body: str) -> bool:
        return self._run("write", False, lambda r: _hset_bumping(r, PREFIX + "entry:" + key, entry_id, body))

    def delete(self, entry_ids: list[str]) -> int:
        """Remove entries; their per-size records go with them."""

        def d(r: Any) -> int:
            pipe = r.pipeline()
            for i in entry_ids:
                pipe.hdel(PREFIX + "entry:" + i.split(":", 1)[0], i)
            pipe.incr(GENERATION)
            n = sum(int(n) for n in pipe.execute()[:-1])
            if entry_ids and r.delete(*(SIZES + i for i in entry_ids)):
                r.incr(SIZES_GENERATION)
            return n

        return self._run("delete", 0, d)

    def generation(self) -> str:
        """The server's write counter; "down" while the tier is off (lookups skip it then)."""
        value = self._run("generation", None, lambda r: r.get(GENERATION))
        if self._down is not None:
            return "down"
        return value.decode() if isinstance(value, bytes) else str(value or 0)

    def scan(self) -> Iterator[tuple[str, bytes]]:
        """(entry_id, body) for every entry on the server (for ls and export)."""

        def s(r: Any) -> list[tuple[str, bytes]]:
            out = []
            for name in r.scan_iter(match=PREFIX + "entry:*", count=500):
                for field, body in r.hgetall(name).items():
                    out.append((field.decode("utf-8", "replace"), body))
            return out

        yield from self._run("scan", [], s)

    # ------------------------------------------------------------ decisions shared by the ranks of one job
    def claim(self, name: str, value: str, ttl_s: float) -> str | None:
        """SET NX with an expiry, then GET: the value the name holds after (None: the tier is off)."""

        def c(r: Any) -> str | None:
            r.set(DECISION + name, value, nx=True, ex=max(1, int(ttl_s)))
            got = r.get(DECISION + name)
            return got.decode() if isinstance(got, bytes) else got

        return self._run("decision", None, c)

    def decision(self, name: str) -> str | None:
        got = self._run("decision", None, lambda r: r.get(DECISION + name))
        return got.decode() if isinstance(got, bytes) else got

    # ------------------------------------------------------------ per-size records
    def size_bodies(self, record_key: str) -> list[bytes]:
        entry_id = record_key.split("|", 1)[0]
        body = self._run("size lookup", None, lambda r: r.hget(SIZES + entry_id, record_key))
        return [body] if body is not None else []

    def size_rows(self, entry_id: str | None = None) -> list[tuple[str, bytes]]:
        """(record key, body) of every record on the server, or of one entry's."""

        def q(r: Any) -> list[tuple[str, bytes]]:
            names = [SIZES + entry_id] if entry_id is not None else list(r.scan_iter(match=SIZES + "*", count=500))
            out = []
            for name in names:
                for field, body in r.hgetall(name).items():
                    out.append((field.decode("utf-8", "replace"), body))
            return out

        return self._run("size list", [], q)

    def put_size(self, record_key: str, entry_id: str, body: str) -> bool:
        def w(r: Any) -> bool:
            pipe = r.pipeline()  # MULTI/EXEC, as for entries: the record and its new counter together
            pipe.hset(SIZES + entry_id, record_key, body)
            pipe.incr(SIZES_GENERATION)
            return pipe.execute()[0] is not None

        return self._run("size record write", False, w)

    def sizes_generation(self) -> str:
        """The server's size-record write counter; "down" while the tier is off."""
        value = self._run("sizes generation", None, lambda r: r.get(SIZES_GENERATION))
        if self._down is not None:
            return "down"
        return value.decode() if isinstance(value, bytes) else str(value or 0)

    # ------------------------------------------------------------ revocations
    def revocations(self) -> list[tuple[str, str]]:
        """(target, body) pairs; a value from before revocations were signed is a bare reason."""

        def q(r: Any) -> list[tuple[str, str]]:
            items = r.hgetall(PREFIX + "revoked").items()
            return [(k.decode("utf-8", "replace"), v.decode("utf-8", "replace")) for k, v in items]

        return self._run("revocations", [], q)

    def add_revocation(self, target: str, body: str) -> bool:
        return self._run("revoke", False, lambda r: _hset_bumping(r, PREFIX + "revoked", target, body))


def _hset_bumping(r: Any, name: str, field: str, value: str) -> bool:
    """HSET and the generation's INCR in one MULTI/EXEC: a reader never sees the write without the new generation."""
    pipe = r.pipeline()
    pipe.hset(name, field, value)
    pipe.incr(GENERATION)
    return pipe.execute()[0] is not None


class _Off(Exception):
    pass


def _redact(url: str) -> str:
    """redis://user:secret@host → redis://***@host: never log a password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
