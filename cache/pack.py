"""Packs: a portable, read-only set of entries and revocations in one file.

JSON Lines, gzip-compressed when the name ends in ``.gz`` (recognized by its magic
bytes when read). The first line is a header, every other line one record:
  {"format": "llm_inductor-pack", "version": 1, "created": 1764000000.0, "entries": 3}
  {"entry": {...Entry.to_dict()...}}
  {"revoke": "key:<digest>" | "hash:<content_hash>" | "signer:<fingerprint>", "reason": "...",
   "signer": "<fingerprint>", "signature": "<hex>"}
  {"size": {...SizeRecord.to_dict()...}}    a family entry's per-size record (``cache/sizes.py``)
A line that cannot be read is skipped with one warning per pack, and the rest of
the pack stays usable. Entries, size records and revocations keep their signatures, so
a pack can travel by any channel: the reader checks them against the keys it trusts
(``cache/trust.py``), and an unsigned revocation line is ignored.

Size lines came after version 1 shipped and did not change the version: a build from
before reads such a pack, serves its entries and revocations, and skips each size line
as "neither an entry nor a revocation record" (one warning per pack, naming the count).
Bumping the version instead would make those builds refuse the whole pack. There is no
signature over the pack as a whole, and size records are lines of their own, so adding
one leaves every entry line, and so every entry's id and signature, as it was.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_inductor._errors import UsageError
from llm_inductor._files import atomic_write
from llm_inductor.cache.entry import Entry
from llm_inductor.cache.sizes import SizeRecord, record_key
from llm_inductor.cache.trust import Revocation, valid_target

log = logging.getLogger(__name__)

PACK_FORMAT = "llm_inductor-pack"
PACK_VERSION = 1


class PackError(UsageError):
    """Not a pack this build can read (exit 2 from the CLI)."""


@dataclass
class PackContents:
    path: Path
    header: dict[str, Any]
    entries: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (line number, entry dict)
    revocations: list[Revocation] = field(default_factory=list)
    sizes: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (line number, size record dict)
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)

    def bad_summary(self) -> str:
        shown = "; ".join(f"line {n}: {why}" for n, why in self.bad[:3])
        return f"{len(self.bad)} bad line(s) ({shown}{'; ...' if len(self.bad) > 3 else ''})"


def _lines(path: Path) -> Iterator[tuple[int, str | None, str]]:
    """(line number, text or None, why) per line; a broken compressed stream ends with one bad line."""
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
    stream = gzip.open(path, "rb") if compressed else open(path, "rb")
    n = 0
    with stream:
        try:
            for n, line in enumerate(stream, start=1):
                try:
                    yield n, line.decode("utf-8"), ""
                except UnicodeDecodeError as e:
                    yield n, None, f"not UTF-8 ({e.reason})"
        except (EOFError, OSError, zlib.error) as e:
            yield n + 1, None, f"compressed stream broken ({e})"


def read_pack(path: str | Path) -> PackContents:
    path = Path(path).expanduser()
    if not path.is_file():
        raise PackError(f"No pack at {path}; `llm-inductor cache export PACK` writes one.")
    lines = _lines(path)
    first = next(lines, None)
    header: Any = None
    if first is not None and first[1] is not None:
        try:
            header = json.loads(first[1])
        except json.JSONDecodeError:
            header = None
    if not isinstance(header, dict) or header.get("format") != PACK_FORMAT:
        raise PackError(f"{path} is not an llm_inductor pack (its first line is not a pack header).")
    if header.get("version") != PACK_VERSION:
        raise PackError(
            f"{path} is pack version {header.get('version')!r}; this build reads {PACK_VERSION}. "
            "Upgrade llm_inductor or export the pack again."
        )
    pack = PackContents(path, header)
    for n, text, why in lines:
        if text is None:
            pack.bad.append((n, why))
            continue
        if not text.strip():
            continue
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as e:
            pack.bad.append((n, f"not JSON ({e.msg})"))
            continue
        if isinstance(rec, dict) and isinstance(rec.get("entry"), dict) and isinstance(rec["entry"].get("key"), str):
            pack.entries.append((n, rec["entry"]))
        elif isinstance(rec, dict) and valid_target(rec.get("revoke", "")):
            pack.revocations.append(
                Revocation(rec["revoke"], *(str(rec.get(k) or "") for k in ("reason", "signer", "signature")))
            )
        elif isinstance(rec, dict) and isinstance(rec.get("size"), dict):
            if _size_key(rec["size"]) is None:
                pack.bad.append((n, "a size record without its entry id, GPU, Inductor mode and sizes"))
            else:
                pack.sizes.append((n, rec["size"]))
        else:
            pack.bad.append((n, "neither an entry nor a revocation record"))
    return pack


def _size_key(d: dict[str, Any]) -> str | None:
    """The record key a size record dict is stored under, or None when its fields do not make one."""
    try:
        if not all(isinstance(d.get(k), str) for k in ("entry_id", "gpu", "inductor_mode")):
            return None
        if not isinstance(d.get("sizes"), dict):
            return None
        return record_key(d["entry_id"], d["gpu"], d["inductor_mode"], d["sizes"])
    except (TypeError, ValueError, IndexError, KeyError):
        return None


def write_pack(
    path: str | Path,
    entries: Iterable[Entry],
    revocations: Iterable[Revocation | tuple[str, str]] = (),
    sizes: Iterable[SizeRecord] = (),
) -> int:
    """Write a pack atomically; returns the number of entries written.

    A revocation is a ``Revocation`` or a tier's (target, stored body) pair; ``sizes`` are
    per-size records (of these entries, as ``cache export`` writes them), one line each.
    """
    path = Path(path).expanduser()
    entries = list(entries)
    records = [json.dumps({"entry": e.to_dict()}, sort_keys=True, default=str) for e in entries]
    size_lines = [json.dumps({"size": r.to_dict()}, sort_keys=True, default=str) for r in sizes]
    for r in revocations:
        rev = r if isinstance(r, Revocation) else Revocation.from_body(*r)
        records.append(
            json.dumps(
                {"revoke": rev.target, "reason": rev.reason, "signer": rev.signer, "signature": rev.signature},
                sort_keys=True,
            )
        )
    header = {"format": PACK_FORMAT, "version": PACK_VERSION, "created": time.time(), "entries": len(entries)}
    if size_lines:
        header["sizes"] = len(size_lines)  # a count older readers ignore
    data = ("\n".join([json.dumps(header, sort_keys=True), *records, *size_lines]) + "\n").encode()
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)
    return len(entries)


class PackTier:
    """A read-only tier over one pack, read on first use and indexed by key."""

    def __init__(self, path: str | Path, bundled: bool = False) -> None:
        self.path = Path(path).expanduser()
        self.name = f"{'bundled ' if bundled else ''}pack {self.path.name}"
        self._by_key: dict[str, list[dict[str, Any]]] | None = None
        self._revocations: list[Revocation] = []
        self._sizes: dict[str, list[dict[str, Any]]] = {}  # record key → size record dicts
        self._read_stamp: str | None = None  # the file's stamp when it was read

    def _index(self) -> dict[str, list[dict[str, Any]]]:
        if self._by_key is None:
            self._by_key, self._sizes, self._revocations = {}, {}, []
            self._read_stamp = self.stamp()
            try:
                pack = read_pack(self.path)
            except (PackError, OSError) as e:
                log.warning("llm_inductor: skipping %s: %s", self.name, e)
                return self._by_key
            if pack.bad:
                log.warning("llm_inductor: %s: skipped %s", self.name, pack.bad_summary())
            for _, d in pack.entries:
                self._by_key.setdefault(d["key"], []).append(d)
            for _, d in pack.sizes:
                self._sizes.setdefault(str(_size_key(d)), []).append(d)
            self._revocations = pack.revocations
        return self._by_key

    def bodies_for_key(self, key: str) -> list[dict[str, Any]]:
        return list(self._index().get(key, []))

    def body(self, entry_id: str) -> dict[str, Any] | None:
        key, _, short = entry_id.partition(":")
        for d in self._index().get(key, []):
            if str(d.get("content_hash", ""))[:16] == short:
                return d
        return None

    def scan(self) -> Iterator[tuple[str | None, dict[str, Any]]]:
        for key, items in self._index().items():
            for d in items:
                yield (f"{key}:{str(d['content_hash'])[:16]}" if "content_hash" in d else None), d

    def revocations(self) -> list[tuple[str, str]]:
        """(target, body) pairs, as the SQLite and Redis tiers return them."""
        self._index()
        return [(r.target, r.body()) for r in self._revocations]

    def size_bodies(self, record_key: str) -> list[dict[str, Any]]:
        self._index()
        return list(self._sizes.get(record_key, []))

    def size_rows(self, entry_id: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(record key, record dict) of every size record in the pack, or of one entry's."""
        self._index()
        return [
            (k, d) for k, items in self._sizes.items() for d in items if entry_id is None or d["entry_id"] == entry_id
        ]

    def stamp(self) -> str:
        """Size and mtime of the file: a pack replaced on disk is read again (``refresh``)."""
        return file_stamp(self.path)

    def stale(self) -> bool:
        """Whether the file changed since it was read (never read: False, there is nothing to drop)."""
        return self._by_key is not None and self._read_stamp != self.stamp()

    def refresh(self) -> None:
        self._by_key = None


def file_stamp(path: Path) -> str:
    """Path, size and mtime: changes when the file is replaced, grown or removed."""
    try:
        st = path.stat()
    except OSError:
        return f"{path}:missing"
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"
