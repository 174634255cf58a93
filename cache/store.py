"""The kernel-store interface the compile path talks to, and an in-memory store.

The compile path needs three things from a store: ``lookup`` a servable kernel by
key digest, ``put`` a verified entry, and keep ``pending`` records of hot regions
that missed. Trust decisions (signatures, versions, GPU model) live behind
``lookup``: whatever it returns may be imported in the user's process.

A store that serves family entries also keeps their per-size records
(``cache/sizes.py``): ``put_size``, ``size_record`` (the trusted record for one entry,
GPU model, Inductor mode and sizes, won or lost, or None), ``size_records`` (every one,
for listings) and ``sizes_generation`` (a token apart from ``generation``, so that
timing a size never invalidates AOTAutograd's cache of every graph).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from llm_inductor.cache.entry import Entry
from llm_inductor.cache.sizes import SizeRecord, record_key
from llm_inductor.cache.trust import TrustVerdict


@dataclass
class PendingRegion:
    """A hot region that missed: where its region file is, and why it matters."""

    key: str  # full digest
    region_path: str  # region_<key16>.py; the sidecar sits beside it
    ops: list[str]
    est_us: float
    share: float
    device: str
    first_seen: float = field(default_factory=time.time)
    seen: int = 1
    # A region whose family entry (cache/sizes.py) has no record at its sizes: {"key" (the family digest),
    # "entry_id", "sizes", "reason"}. ``tune --pending`` extends that entry by verification and timing alone.
    family: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PendingRegion:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@runtime_checkable
class KernelStore(Protocol):
    def lookup(self, key: str) -> Entry | None:
        """A servable entry for this key digest, or None (a miss)."""

    def get(self, entry_id: str) -> Entry | None:
        """The servable entry whose ``Entry.entry_id`` is this, or None."""

    def put(self, entry: Entry) -> None: ...

    def add_pending(self, record: PendingRegion) -> None: ...

    def pending(self) -> list[PendingRegion]: ...

    def resolve_pending(self, key: str) -> None: ...

    # Optional: ``generation() -> str | None``, a token that changes whenever what lookup may
    # return changes (None: unknown). With it, the backend keeps AOTAutograd's cache on,
    # keyed on the token (``llm_inductor.compile.aot``); a store without it compiles without that cache.
    # Optional, for family entries: ``put_size(record)``, ``size_record(entry_id, gpu, inductor_mode, sizes)``,
    # ``size_records(entry_id=None)`` and ``sizes_generation()`` (``MemoryStore`` and ``TieredStore`` have them).


class MemoryStore:
    """An in-process store: used by tests and as the first tier of the persistent cache."""

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}
        self._pending: dict[str, PendingRegion] = {}
        self._sizes: dict[str, SizeRecord] = {}  # record key → the newest record
        self._decisions: dict[str, tuple[str, float]] = {}  # name → (value, expires)
        self._id, self._version, self._sizes_version = uuid.uuid4().hex[:16], 0, 0
        for e in entries:
            self.put(e)

    def lookup(self, key: str) -> Entry | None:
        with self._lock:
            entry = self._entries.get(key)
        return entry if entry is not None and entry.status == "served" else None

    def get(self, entry_id: str) -> Entry | None:
        entry = self.lookup(entry_id.split(":", 1)[0])
        return entry if entry is not None and entry.entry_id == entry_id else None

    def put(self, entry: Entry) -> None:
        with self._lock:
            self._entries[entry.key] = entry
            self._pending.pop(entry.key, None)
            self._version += 1

    def remove(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)
            self._version += 1

    def generation(self) -> str:
        """This store's identity and write count: it lives and dies with the process."""
        return f"memory:{self._id}:{self._version}"

    # ------------------------------------------------------------ per-size records (trusted as they come)
    def put_size(self, record: SizeRecord) -> list[str]:
        with self._lock:
            old = self._sizes.get(record.key)
            if old is None or record.created >= old.created:
                self._sizes[record.key] = record
                self._sizes_version += 1
        return ["memory"]

    def size_record(self, entry_id: str, gpu: str, inductor_mode: str, sizes: Mapping[str, int]) -> SizeRecord | None:
        with self._lock:
            return self._sizes.get(record_key(entry_id, gpu, inductor_mode, sizes))

    def size_records(self, entry_id: str | None = None) -> list[tuple[SizeRecord, TrustVerdict, list[str]]]:
        with self._lock:
            found = [r for r in self._sizes.values() if entry_id is None or r.entry_id == entry_id]
        return [(r, TrustVerdict("served"), ["memory"]) for r in sorted(found, key=lambda r: (r.key, -r.created))]

    def sizes_generation(self) -> str:
        return f"memory:{self._id}:{self._sizes_version}"

    # ------------------------------------------------------------ decisions shared by the ranks of one job
    def claim(self, name: str, value: str, ttl_s: float) -> str | None:
        with self._lock:
            now = time.time()
            held = self._decisions.get(name)
            if held is None or held[1] < now:
                self._decisions[name] = (value, now + ttl_s)
            return self._decisions[name][0]

    def decision(self, name: str) -> str | None:
        with self._lock:
            held = self._decisions.get(name)
        return held[0] if held is not None and held[1] >= time.time() else None

    # ------------------------------------------------------------ pending regions
    def add_pending(self, record: PendingRegion) -> None:
        with self._lock:
            old = self._pending.get(record.key)
            if old is not None:
                record.seen = old.seen + 1
                record.first_seen = old.first_seen
            self._pending[record.key] = record

    def pending(self) -> list[PendingRegion]:
        with self._lock:
            return sorted(self._pending.values(), key=lambda r: -r.est_us)

    def resolve_pending(self, key: str) -> None:
        with self._lock:
            self._pending.pop(key, None)

    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)
