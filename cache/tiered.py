"""The persistent kernel store: memory → local SQLite → shared Redis → read-only packs.

``lookup`` is on the compile path: the first lookup of a key walks the tiers and
the answer (an entry or a miss) is kept in a dict, so repeated lookups are free;
it never raises. Every entry a tier returns is parsed and judged here
(``cache/trust.py``); only servable entries are returned, and a servable entry
found in Redis or a pack is copied into the local tier. Writes go to local and
shared; an unsigned entry is signed on the way in (``LLM_INDUCTOR_SIGNING_KEY``,
else this cache's local key). Hit counts are written back once, at exit.

Per-size records of family entries (``cache/sizes.py``) go the same way, beside the
entries: ``put_size`` signs and writes them, ``size_record`` returns the newest record
of one entry, GPU model, Inductor mode and sizes that ``Trust.judge_size`` believes,
from any tier (won or lost: the caller reads ``won``), remembered like ``lookup``'s
answers. Their writes are counted by ``sizes_generation``, never by ``generation``.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import threading
import weakref
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from llm_inductor._errors import LLMInductorError, UsageError
from llm_inductor.cache import sign
from llm_inductor.cache.entry import Entry, EntryError
from llm_inductor.cache.pack import PackTier, file_stamp
from llm_inductor.cache.redis_store import RedisTier
from llm_inductor.cache.sizes import SizeRecord, SizeRecordError, record_key
from llm_inductor.cache.sqlite import SqliteStore, read_damaged
from llm_inductor.cache.store import PendingRegion
from llm_inductor.cache.trust import (
    Revocation,
    Revocations,
    Trust,
    TrustVerdict,
    bundled_keys_dir,
    load_trusted,
    report_miss,
    report_size,
    report_unreadable,
)
from llm_inductor.config import Config

log = logging.getLogger(__name__)

_UNSET: Any = object()


class NotWritable(UsageError):
    """A write the user asked for that no tier took: the cache is read-only or full (exit 2, with the fix)."""


class Tier(Protocol):
    name: str

    def bodies_for_key(self, key: str) -> list[Any]: ...

    def body(self, entry_id: str) -> Any: ...

    def size_bodies(self, record_key: str) -> list[Any]: ...

    def size_rows(self, entry_id: str | None = None) -> list[tuple[str, Any]]: ...


@dataclass
class Listing:
    """One entry as the CLI shows it: where it lives and whether it is served here."""

    entry_id: str
    entry: Entry | None  # None: unreadable (verdict says why)
    verdict: TrustVerdict
    tiers: list[str] = field(default_factory=list)
    hits: int = 0
    added: float | None = None
    size: int = 0


def bundled_packs() -> list[Path]:
    from llm_inductor._paths import packs_dir

    folder = packs_dir()
    return sorted([*folder.glob("*.jsonl"), *folder.glob("*.jsonl.gz")])


@dataclass
class Salvage:
    """What ``TieredStore.salvage`` did with one damaged database file."""

    source: Path
    restored: list[tuple[str, TrustVerdict]] = field(default_factory=list)  # entry id, and served here or why not
    present: int = 0  # readable, and in the local tier already
    refused: list[tuple[str, str, str]] = field(default_factory=list)  # entry id (or row), reason code, detail
    revocations: int = 0
    size_records: int = 0  # per-size records restored (or present already)
    lost: list[str] = field(default_factory=list)  # rows SQLite could not read


class TieredStore:
    """strict (the CLI): a write the user asked for that no tier takes raises ``NotWritable``,
    naming why; on the compile path (the default) it is one warning and an empty tier list."""

    def __init__(self, cfg: Config, strict: bool = False) -> None:
        self.cfg = cfg
        self.strict = strict
        self.local = SqliteStore(cfg.cache_path)
        self.shared = RedisTier(cfg.redis_url) if cfg.redis_url else None
        self.packs = [PackTier(p) for p in cfg.packs] + [PackTier(p, bundled=True) for p in bundled_packs()]
        self._lock = threading.RLock()
        self._trust: Trust | None = None
        self._signer: sign.SigningKey | None = None
        self._memo: dict[str, tuple[Entry, str] | None] = {}  # key → (entry, entry_id) or a miss
        self._unserved: dict[str, TrustVerdict] = {}  # key → why its entries were not served (a miss with entries)
        self._size_memo: dict[str, SizeRecord | None] = {}  # record key → the trusted record, or None
        self._hits: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()
        self._generation: str | None = None
        self._sizes_generation: tuple[str, str] | None = None  # (token, what beside the counters it covered)
        _track(self)

    @property
    def tiers(self) -> list[Tier]:
        return [self.local, *([self.shared] if self.shared else []), *self.packs]

    # ------------------------------------------------------------ trust
    def trust(self) -> Trust:
        with self._lock:
            if self._trust is None:
                extra = []
                for load in (lambda: sign.local_public(self.cfg.cache_path), self._configured_public):
                    try:
                        k = load()
                    except Exception as e:  # an unreadable key file must not break the compile
                        log.warning("llm_inductor: skipping a trusted key: %s", e)
                        continue
                    if k is not None:
                        extra.append(k)
                try:
                    keys = load_trusted(self.cfg.trusted_keys, extra)
                except LLMInductorError as e:  # no cryptography: judge() says so per entry
                    log.warning("llm_inductor: no trusted keys: %s", e)
                    keys = {}
                self._trust = Trust(keys)
                self._trust.revoked = self._gather_revocations()
            return self._trust

    def _configured_public(self) -> sign.PublicKey | None:
        return sign.load_private(self.cfg.signing_key).public if self.cfg.signing_key else None

    def _gather_revocations(self) -> Revocations:
        revoked = Revocations()
        for tier in self.tiers:
            revoked.update(tier.revocations(), tier.name, local=tier is self.local)
        return revoked

    def signer(self) -> sign.SigningKey:
        """The key new entries are signed with; its public half is trusted here."""
        with self._lock:
            if self._signer is None:
                if self.cfg.signing_key:
                    self._signer = sign.load_private(self.cfg.signing_key)
                else:
                    try:
                        self._signer = sign.local_key(self.cfg.cache_path)
                    except OSError as e:  # a read-only or full cache directory cannot hold a new key
                        raise NotWritable(
                            f"cannot make this cache's signing key in {self.cfg.cache_path / 'keys'} ({e.strerror}); "
                            "set LLM_INDUCTOR_SIGNING_KEY to a key made with `llm-inductor cache keygen DIR`."
                        ) from None
                trust = self.trust()
                trust.keys.setdefault(self._signer.public.fingerprint, self._signer.public)
                trust._memo.clear()
            return self._signer

    def judge(self, entry: Entry) -> TrustVerdict:
        return self.trust().judge(entry)

    def judge_size(self, record: SizeRecord) -> TrustVerdict:
        return self.trust().judge_size(record)

    # ------------------------------------------------------------ the KernelStore protocol
    def lookup(self, key: str) -> Entry | None:
        """A servable entry for this key digest, or None. Never raises."""
        try:
            hit = self._memo.get(key, _UNSET)
            if hit is _UNSET:
                with self._lock:
                    entry = self._resolve(key)
                    # entry_id hashes the whole entry: computed once here, not on every hit
                    hit = self._memo[key] = (entry, entry.entry_id) if entry is not None else None
            if hit is None:
                self._counts["misses"] += 1
                return None
            self._counts["hits"] += 1
            self._hits[hit[1]] += 1
            return hit[0]
        except Exception as e:
            log.warning(
                "llm_inductor: cache lookup for %s failed (%s: %s); treated as a miss", key[:16], type(e).__name__, e
            )
            return None

    def get(self, entry_id: str) -> Entry | None:
        """The servable entry with this exact id (an FX-cache replay names one), or None."""
        try:
            hit = self.lookup(entry_id.split(":", 1)[0])
            memo = self._memo.get(entry_id.split(":", 1)[0])
            if hit is not None and memo is not None and memo[1] == entry_id:
                return hit
            for tier in self.tiers:
                body = tier.body(entry_id)
                entry = self._parse(body, tier.name, entry_id[:64]) if body is not None else None
                if entry is not None and entry.entry_id == entry_id and self.judge(entry).servable:
                    return entry
        except Exception as e:
            log.warning("llm_inductor: cache get %s failed (%s: %s)", entry_id[:16], type(e).__name__, e)
        return None

    def put(self, entry: Entry) -> Entry:
        """Sign (if unsigned) and write to local and shared; returns the entry as stored."""
        return self.write(entry)[0]

    def write(self, entry: Entry, sign_unsigned: bool = True) -> tuple[Entry, list[str]]:
        """Like put, and also say which tiers took the write.

        ``cache import`` passes sign_unsigned=False: signing is for entries verified in
        this process, never for code that arrived from elsewhere.
        """
        signed = self._signed(entry, sign_unsigned, f"store {entry.entry_id}")
        if signed is None:
            return entry, []
        entry = signed
        body = entry.to_json()
        written = []
        if self.local.put(entry.entry_id, entry.key, entry.content_hash, entry.created, body):
            written.append(self.local.name)
        if self.shared is not None and self.shared.put(entry.entry_id, entry.key, body):
            written.append(self.shared.name)
        self._memo.pop(entry.key, None)
        self._check_written(written, f"store {entry.entry_id}")
        return entry, written

    def _signed(self, item: Any, sign_unsigned: bool, what: str) -> Any:
        """``item`` ready to write (signed here if unsigned and asked), or None where no tier can take it.

        Nothing is signed for a write that cannot land; strict raises ``NotWritable`` with the reason.
        """
        if self.shared is None and (why := self.local.unwritable()) is not None:
            if self.strict:
                raise NotWritable(f"cannot {what}: {why}")
            return None
        return self.signer().sign(item) if not item.signature and sign_unsigned else item

    def _check_written(self, written: list[str], what: str) -> None:
        """Strict: a write no tier took raises NotWritable with the local tier's reason."""
        if self.strict and not written:
            raise NotWritable(f"cannot {what}: {self.local.refusal or 'no tier took it (see the warnings above)'}")

    def require_writable(self, what: str, local: bool = False) -> None:
        """Raise NotWritable before work whose result could not be stored (local: only the local tier would do)."""
        why = self.local.unwritable()
        if why is not None and (local or self.shared is None):
            raise NotWritable(f"cannot {what}: {why}")

    # ------------------------------------------------------------ decisions shared by the ranks of one job
    def claim(self, name: str, value: str, ttl_s: float) -> str | None:
        """Set name to value unless it is set; the value it holds after, or None where it cannot be decided.

        With a shared tier the decision lives there alone (ranks on several machines), else in the local
        database (ranks of one machine share the cache directory). None: that tier could not be written.
        """
        return (self.shared or self.local).claim(name, value, ttl_s)

    def decision(self, name: str) -> str | None:
        return (self.shared or self.local).decision(name)

    # ------------------------------------------------------------ per-size records
    def put_size(self, record: SizeRecord) -> list[str]:
        """Sign (if unsigned) and write a per-size record to local and shared; returns the tiers written."""
        return self.write_size(record)[1]

    def write_size(self, record: SizeRecord, sign_unsigned: bool = True) -> tuple[SizeRecord, list[str]]:
        """Like put_size, and also return the record as stored (``cache import`` keeps its signature)."""
        signed = self._signed(record, sign_unsigned, f"store the size record {record.key}")
        if signed is None:
            return record, []
        record = signed
        body = record.to_json()
        written = []
        if self.local.put_size(record.key, record.entry_id, record.content_hash, record.created, body):
            written.append(self.local.name)
        if self.shared is not None and self.shared.put_size(record.key, record.entry_id, body):
            written.append(self.shared.name)
        self._size_memo.pop(record.key, None)
        self._check_written(written, f"store the size record {record.key}")
        return record, written

    def size_record(self, entry_id: str, gpu: str, inductor_mode: str, sizes: Mapping[str, int]) -> SizeRecord | None:
        """The newest record for exactly this entry, GPU model, Inductor mode and sizes that is trusted here, or None.

        Won or lost: the caller tells "lost at this size" (a record, ``won`` False) from
        "never timed" (None). Remembered like ``lookup``'s answers; never raises.
        """
        try:
            rkey = record_key(entry_id, gpu, inductor_mode, sizes)
            hit = self._size_memo.get(rkey, _UNSET)
            if hit is _UNSET:
                with self._lock:
                    hit = self._size_memo[rkey] = self._resolve_size(rkey)
            return hit
        except Exception as e:
            log.warning(
                "llm_inductor: size-record lookup for %s at %s failed (%s: %s); treated as never timed",
                str(entry_id)[:16],
                dict(sizes) if isinstance(sizes, Mapping) else sizes,
                type(e).__name__,
                e,
            )
            return None

    def _parse_size(self, body: Any, where: str, rkey: str) -> SizeRecord | None:
        try:
            return SizeRecord.from_dict(body) if isinstance(body, dict) else SizeRecord.from_json(body)
        except SizeRecordError as e:
            report_size(rkey, where, TrustVerdict(e.reason, str(e)))
            return None

    def _resolve_size(self, rkey: str) -> SizeRecord | None:
        trust = self.trust()
        best: tuple[SizeRecord, Tier] | None = None
        for tier in self.tiers:
            for body in tier.size_bodies(rkey):
                record = self._parse_size(body, tier.name, rkey)
                if record is None or record.key != rkey:
                    continue
                verdict = trust.judge_size(record)
                if not verdict.servable:
                    report_size(rkey, tier.name, verdict)
                elif best is None or record.created > best[0].created:  # a tie: the nearer tier
                    best = (record, tier)
        if best is None:
            return None
        record, tier = best
        if tier is not self.local:  # as entries are: the next process finds it without the shared tier
            self.local.put_size(record.key, record.entry_id, record.content_hash, record.created, record.to_json())
        return record

    def sizes_generation(self) -> str | None:
        """A token that changes whenever a per-size record changes in any tier; None when it cannot be known.

        It covers the local tier's and the shared tier's size-record counters, the packs and
        the key files trust is built from, and never moves with ``generation()``'s counters:
        timing a size does not invalidate the AOTAutograd cache keyed on that. A change seen
        here drops the remembered ``size_record`` answers (and, when packs or keys changed,
        everything ``refresh`` drops).
        """
        local = self.local.sizes_generation()
        if local is None:
            return None
        counters = [f"local {local}"]
        if self.shared is not None:
            counters.append(f"redis {self.shared.sizes_generation()}")
        ambient = [f"crypto {sign.available()}", *(f"pack {p.stamp()}" for p in self.packs)]
        ambient += [f"key {stamp}" for stamp in _key_stamps(self.cfg)]
        around = hashlib.sha256("\n".join(ambient).encode()).hexdigest()
        token = hashlib.sha256("\n".join([*counters, around]).encode()).hexdigest()[:32]
        with self._lock:
            if self._sizes_generation is None or token != self._sizes_generation[0]:
                if self._sizes_generation is not None and around != self._sizes_generation[1]:
                    self.refresh()  # a pack or a key changed: read and judge everything again
                self._size_memo.clear()
                self._sizes_generation = (token, around)
        return token

    def size_records(
        self, entry_id: str | None = None, shared: bool = True, packs: bool = True
    ) -> list[tuple[SizeRecord, TrustVerdict, list[str]]]:
        """Every per-size record (of one entry, or all) in every tier, believed or not, with its verdict and tiers.

        One row per distinct record (its key, content and signature), ordered by entry, GPU,
        mode and sizes, newest first. Unreadable records are skipped with a warning.
        """
        trust = self.trust()
        rows: dict[tuple[str, str, str | None], tuple[SizeRecord, TrustVerdict, list[str]]] = {}
        tiers: list[Any] = [self.local]
        if shared and self.shared is not None:
            tiers.append(self.shared)
        if packs:
            tiers += self.packs
        for tier in tiers:
            for rkey, body in tier.size_rows(entry_id):
                record = self._parse_size(body, tier.name, rkey)
                if record is None or (entry_id is not None and record.entry_id != entry_id):
                    continue
                ident = (record.key, record.content_hash, record.signature)
                if ident not in rows:
                    rows[ident] = (record, trust.judge_size(record), [])
                rows[ident][2].append(tier.name)
        return sorted(
            rows.values(),
            key=lambda row: (
                row[0].entry_id,
                row[0].gpu,
                row[0].inductor_mode,
                sorted((int(k[1:]), v) for k, v in row[0].sizes.items()),
                -row[0].created,
            ),
        )

    # ------------------------------------------------------------ pending regions
    def add_pending(self, record: PendingRegion) -> None:
        self.local.add_pending(record.key, json.dumps(record.to_dict(), sort_keys=True))

    def pending(self) -> list[PendingRegion]:
        out = []
        for body, seen in self.local.pending():
            try:
                record = PendingRegion.from_dict({**json.loads(body), "seen": seen})
            except (ValueError, TypeError, KeyError) as e:
                log.warning("llm_inductor: skipping an unreadable pending record (%s)", e)
                continue
            out.append(record)
        return sorted(out, key=lambda r: -r.est_us)

    def resolve_pending(self, key: str) -> None:
        self.local.resolve_pending(key)

    def generation(self) -> str | None:
        """A token that changes whenever what ``lookup`` may serve changes; None when it cannot be known.

        It covers the local database's writes, the shared tier's write counter, the packs
        and the key files trust is built from. The compile path keys AOTAutograd's cache on
        it (``llm_inductor.compile.aot``). A change seen here also drops what this process
        remembered (lookups, trust, pack indexes), so the lookups that follow see the store
        the token describes, not the one this process read earlier.
        """
        local = self.local.generation()
        if local is None:
            return None
        parts = [f"local {local}", f"crypto {sign.available()}"]
        if self.shared is not None:
            parts.append(f"redis {self.shared.generation()}")
        parts += [f"pack {p.stamp()}" for p in self.packs]
        parts += [f"key {stamp}" for stamp in _key_stamps(self.cfg)]
        token = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]
        with self._lock:
            if token != self._generation:
                self.refresh()
                self._generation = token
        return token

    def refresh(self) -> None:
        """Forget what this process read: the next lookups read the tiers again."""
        with self._lock:
            self._memo.clear()
            self._unserved.clear()
            self._size_memo.clear()
            self._trust = None
            for p in self.packs:
                p.refresh()

    # ------------------------------------------------------------ resolution
    def _parse(self, body: Any, where: str, key: str) -> Entry | None:
        try:
            return Entry.from_dict(body) if isinstance(body, dict) else Entry.from_json(body)
        except EntryError as e:
            report_unreadable(key, where, e.reason, str(e))
            return None

    def _resolve(self, key: str) -> Entry | None:
        trust = self.trust()
        not_served: tuple[str, TrustVerdict] | None = None
        for tier in self.tiers:
            servable = []
            for body in tier.bodies_for_key(key):
                entry = self._parse(body, tier.name, key)
                if entry is None or entry.key != key:
                    continue
                verdict = trust.judge(entry)
                if verdict.servable:
                    servable.append(entry)
                elif verdict.refused:
                    report_miss(key, tier.name, verdict)
                elif not_served is None:
                    not_served = (tier.name, verdict)
            if servable:
                # servable means verified on this GPU model: rank by the speedup measured on it
                best = max(servable, key=lambda e: (e.speedup(e.versions["gpu"]) or 0.0, e.created))
                if tier is not self.local:
                    self.local.put(best.entry_id, best.key, best.content_hash, best.created, best.to_json())
                return best
        if not_served is not None:
            self._unserved[key] = not_served[1]
            report_miss(key, *not_served)
        return None

    def fixable(self, key: str) -> bool:
        """Whether key's entries are not served here but `llm-inductor cache verify` could make one servable.

        Resolves a key not looked up yet (without counting a hit or miss). Never raises.
        """
        try:
            with self._lock:
                if key not in self._memo:
                    entry = self._resolve(key)
                    self._memo[key] = (entry, entry.entry_id) if entry is not None else None
                verdict = self._unserved.get(key)
            return verdict is not None and verdict.fixable
        except Exception as e:
            log.info(
                "llm_inductor: could not tell whether %s has fixable entries (%s: %s)", key[:16], type(e).__name__, e
            )
            return False

    # ------------------------------------------------------------ for the CLI
    def listings(self, shared: bool = True, packs: bool = True) -> list[Listing]:
        """Every entry in every tier (servable or not), one row per entry id, newest first."""
        rows: dict[str, Listing] = {}

        def add(entry_id: str | None, body: Any, tier: str, **extra: Any) -> None:
            try:
                entry = Entry.from_dict(body) if isinstance(body, dict) else Entry.from_json(body)
                verdict = self.judge(entry)
                entry_id = entry.entry_id
            except EntryError as e:
                entry, verdict = None, TrustVerdict(e.reason, str(e))
                entry_id = entry_id or f"{e.key or '?'}:unreadable"
            row = rows.setdefault(entry_id, Listing(entry_id, entry, verdict))
            row.tiers.append(tier)
            for k, v in extra.items():
                setattr(row, k, v)

        for r in self.local.rows():
            add(r["entry_id"], r["body"], self.local.name, hits=r["hits"], added=r["added"], size=r["size"])
        if shared and self.shared is not None:
            for entry_id, body in self.shared.scan():
                add(entry_id, body, self.shared.name)
        if packs:
            for p in self.packs:
                for entry_id, body in p.scan():
                    add(entry_id, body, p.name)
        return sorted(rows.values(), key=lambda r: -(r.added or (r.entry.created if r.entry else 0.0)))

    def entries(self) -> list[Entry]:
        """Every readable entry in the local tier and the packs (servable or not; ``judge`` says which)."""
        return [r.entry for r in self.listings(shared=False) if r.entry is not None]

    def find(self, prefix: str, listings: Iterable[Listing] | None = None) -> list[Listing]:
        """Listings whose key or entry id starts with prefix."""
        return [r for r in (listings if listings is not None else self.listings()) if r.entry_id.startswith(prefix)]

    def remove(self, entry_ids: list[str], shared: bool = False) -> int:
        n = self.local.delete(entry_ids)
        if self.strict and self.local.refusal is not None:
            raise NotWritable(f"cannot remove entries: {self.local.refusal}")
        if shared and self.shared is not None:
            n = max(n, self.shared.delete(entry_ids))
        self._memo.clear()
        self._size_memo.clear()
        return n

    def revoke(self, target: str, reason: str) -> list[str]:
        """Never serve a key ("key:<digest>"), a content hash ("hash:<sha256>") or what a signer
        ("signer:<fingerprint>") signed again; signed with ``signer()``. Returns the tiers written."""
        return self.add_revocation(Revocation(target, reason).signed_with(self.signer()))

    def add_revocation(self, rev: Revocation) -> list[str]:
        """Write a revocation as it is (``cache import`` keeps its author's signature)."""
        written = [self.local.name] if self.local.add_revocation(rev.target, rev.body()) else []
        if self.shared is not None and self.shared.add_revocation(rev.target, rev.body()):
            written.append(self.shared.name)
        self._check_written(written, f"record the revocation of {rev.target}")
        self.trust().revoked.add(rev, self.local.name, local=True)
        self._memo.clear()
        self._size_memo.clear()
        return written

    def revocations(self, sign_own: bool = True) -> list[tuple[str, str, str]]:
        """(target, body, tier) from every tier (``Revocation.from_body`` reads a body).

        With sign_own, the local tier's unsigned rows (this user's, from before revocations were
        signed) come signed with ``signer()``, so an export carries them in a form others honour.
        """
        out = []
        for tier in self.tiers:
            for target, body in tier.revocations():
                rev = Revocation.from_body(target, body)
                if sign_own and tier is self.local and not rev.signature:
                    try:
                        body = rev.signed_with(self.signer()).body()
                    except (LLMInductorError, OSError) as e:  # no key can be made (a read-only cache), no crypto
                        log.warning("llm_inductor: the revocation of %s stays unsigned: %s", target, e)
                out.append((target, body, tier.name))
        return out

    def salvage(self, path: Path) -> Salvage:
        """Restore into the local tier what SQLite can still read of a damaged database file.

        The file is read from a copy, never changed or deleted. Revocations come back first,
        so an entry revoked there is judged revoked here. Every entry is parsed again (its
        content hash) and judged (signature, policy, revocations) as an entry from a pack is:
        refused ones stay out, the rest are stored as they were, never re-signed, so each is
        served here exactly when it was before.
        """
        self.require_writable("salvage into it", local=True)
        try:
            found = read_damaged(path)
        except OSError as e:
            raise UsageError(
                f"Cannot copy {path} to a scratch directory to read it ({e.strerror}); "
                "set TMPDIR to a directory with room for it."
            ) from None
        report = Salvage(Path(path), lost=found.lost)
        for target, body in found.revocations:
            if not self.local.add_revocation(target, body):
                raise NotWritable(f"cannot restore the revocation of {target}: {self.local.refusal}")
            report.revocations += 1
        self.refresh()  # trust again, with those revocations
        present = {r["entry_id"] for r in self.local.rows()}
        for row_id, body in found.entries:
            try:
                entry = Entry.from_json(body)
            except EntryError as e:
                report.refused.append((row_id or "?", e.reason, str(e)))
                continue
            if row_id is not None and row_id != entry.entry_id:
                report.refused.append((row_id, "tampered", f"the row holds entry {entry.entry_id}"))
                continue
            verdict = self.judge(entry)
            if verdict.refused:
                report.refused.append((entry.entry_id, verdict.reason, verdict.detail))
            elif entry.entry_id in present:
                report.present += 1
            elif self.local.put(entry.entry_id, entry.key, entry.content_hash, entry.created, entry.to_json()):
                present.add(entry.entry_id)
                report.restored.append((entry.entry_id, verdict))
            else:
                raise NotWritable(f"cannot restore {entry.entry_id}: {self.local.refusal}")
        for row_key, body in found.size_records:
            try:
                record = SizeRecord.from_json(body)
            except SizeRecordError as e:
                report.refused.append((row_key or "?", e.reason, str(e)))
                continue
            verdict = self.judge_size(record)
            if row_key != record.key:
                report.refused.append((row_key, "tampered", f"the row holds the size record {record.key}"))
            elif verdict.refused:
                report.refused.append((record.key, verdict.reason, verdict.detail))
            elif self.local.put_size(record.key, record.entry_id, record.content_hash, record.created, body):
                report.size_records += 1
            else:
                raise NotWritable(f"cannot restore the size record {record.key}: {self.local.refusal}")
        self._memo.clear()
        self._size_memo.clear()
        return report

    def stats(self) -> dict[str, Any]:
        self.flush()
        counters = self.local.counters()
        rows = self.local.rows()
        return {
            "entries": len(rows),
            "hits": counters.get("hits", 0),
            "misses": counters.get("misses", 0),
            "size_bytes": self.local.size_bytes(),
            "pending": len(self.local.pending()),
            "revocations": len(self.local.revocations()),
            "database": str(self.local.path),
            "shared": self.cfg.redis_url,
            "packs": [str(p.path) for p in self.packs],
        }

    def flush(self) -> None:
        """Write this process's hit and miss counts to the local tier."""
        with self._lock:
            hits, counts = dict(self._hits), dict(self._counts)
            self._hits.clear()
            self._counts.clear()
        if hits or counts:
            self.local.record_hits(hits, counts)


def _key_stamps(cfg: Config) -> list[str]:
    """Path, size and mtime of every key file trust reads (a key added or replaced changes what is served)."""
    files = [*bundled_keys_dir().glob("*.pub"), *(cfg.cache_path / "keys").glob("*.pub")]
    for p in (*cfg.trusted_keys, *([cfg.signing_key] if cfg.signing_key else [])):
        path = Path(p).expanduser()
        files += sorted(path.glob("*.pub")) if path.is_dir() else [path]
    return [file_stamp(f) for f in files]


_live: weakref.WeakSet[TieredStore] = weakref.WeakSet()
_flush_at_exit: list[bool] = []


def _track(store: TieredStore) -> None:
    """Flush hit counts of the stores still alive at exit (one handler, registered with the first store)."""
    if not _flush_at_exit:
        _flush_at_exit.append(True)
        atexit.register(lambda: [s.flush() for s in list(_live)])
    _live.add(store)


def open_store(cfg: Config, strict: bool = False) -> TieredStore:
    return TieredStore(cfg, strict)
