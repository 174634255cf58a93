"""``llm-inductor cache``: list, show, share, check and edit the kernel cache.

Exit codes (docs/contracts.md): 0 success; 1 negative (a candidate or an entry failing
verification, nothing to export or import); 2 bad input (missing file, unknown
key, not a pack); 3 internal error (printed by ``llm_inductor/cli.py``).
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from llm_inductor._errors import HarnessError, NegativeResult, UsageError
from llm_inductor._files import atomic_write
from llm_inductor.cache import sign
from llm_inductor.cache.entry import Entry, EntryError
from llm_inductor.cache.key import KEY_SCHEMA, KernelKey
from llm_inductor.cache.pack import read_pack, write_pack
from llm_inductor.cache.sizes import SizeRecord, SizeRecordError
from llm_inductor.cache.tiered import Listing, TieredStore, open_store
from llm_inductor.cache.trust import (
    FIXABLE,
    Revocation,
    Trust,
    TrustVerdict,
    current_versions,
    load_trusted,
    signature_problem,
    valid_target,
)
from llm_inductor.config import Config
from llm_inductor.passes import regionfile
from llm_inductor.passes.rebuild import KeyGraphError, rebuild, sizes_from
from llm_inductor.passes.region import RegionInfo
from llm_inductor.passes.regionfile import Sidecar

_HEX64 = re.compile(r"[0-9a-f]{64}")


def _store() -> tuple[Config, TieredStore]:
    """The store, strict: a write it cannot make (read-only or full cache) is exit 2 with the cause and the fix."""
    cfg = Config.load()[0]
    return cfg, open_store(cfg, strict=True)


def _match(store: TieredStore, prefix: str, rows: list[Listing] | None = None) -> list[Listing]:
    found = store.find(prefix.lower(), rows)
    if not found:
        raise UsageError(f"No cache entry matches {prefix!r}; `llm-inductor cache ls` lists them.")
    return found


def _age(t: float | None) -> str:
    if not t:
        return "?"
    s = max(time.time() - t, 0.0)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{s / n:.0f}{unit}"
    return f"{s:.0f}s"


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# ---------------------------------------------------------------------------- ls, show, stats


def _row(r: Listing) -> dict[str, Any]:
    e = r.entry
    return {
        "key16": r.entry_id[:16],
        "entry_id": r.entry_id,
        "ops": ",".join(e.ops) if e else "-",
        "shapes": " ".join(e.shapes) if e else "-",
        "device": e.device if e else "-",
        "speedup": e.speedup(e.versions.get("gpu")) if e else None,
        "age": _age(r.added or (e.created if e else None)),
        "tier": "+".join(r.tiers),
        "served": "served" if r.verdict.servable else f"no: {r.verdict}",
        "hits": r.hits,
    }


# A family entry (one kernel for every size of its key) is listed with its symbols and its per-size records.
SizeRow = tuple[SizeRecord, TrustVerdict, list[str]]


def _is_family(e: Entry | None) -> bool:
    return e is not None and bool(e.key_fields.get("family"))


def _symbols(e: Entry) -> list[str]:
    """The family's symbols (s0, s1, ...), from the sidecar, else from the key fields."""
    found = e.region_meta.get("symbols") or e.key_fields.get("symbols") or {}
    names = {str(s) for s in found} if isinstance(found, (dict, list, tuple)) else set()
    return sorted(names, key=lambda s: (int(s[1:]) if s[1:].isdigit() else 1 << 30, s))


def _won(rec: SizeRecord) -> str:
    """won | won, host-bound (not served: a slower host would lose, ``sizes.host_risk``) | lost | lost in its graph
    (faster alone; the in-graph gate measured the graph slower) | not verified."""
    if rec.won:
        return "won" if rec.servable_here else "won, host-bound (not served)"
    if not rec.verified:
        return "not verified"
    gate = rec.graph_ab or {}
    return "lost in its graph" if gate.get("measured") and not gate.get("passed") else "lost"


def _speed(rec: SizeRecord) -> str:
    return f"{rec.speedup:.2f}x" if isinstance(rec.speedup, (int, float)) else "untimed"


def _size_brief(rec: SizeRecord, verdict: TrustVerdict) -> str:
    """``s0=4096,s1=128256 2.39x won``: one record, compact (mode when not the default, why when not believed)."""
    text = f"{rec.bucket} {_speed(rec)} {_won(rec)}"
    if rec.inductor_mode != "default":
        text += f" [{rec.inductor_mode}]"
    if not verdict.servable:
        text += f" ({rec.gpu}: {verdict.reason})"
    return text


def _size_doc(rec: SizeRecord, verdict: TrustVerdict, tiers: list[str]) -> dict[str, Any]:
    return {**rec.to_dict(), "bucket": rec.bucket, "verdict": str(verdict), "tiers": tiers}


def _sizes_by_entry(rows: list[SizeRow]) -> dict[str, list[SizeRow]]:
    out: dict[str, list[SizeRow]] = {}
    for row in rows:
        out.setdefault(row[0].entry_id, []).append(row)
    return out


def cmd_ls(args: argparse.Namespace) -> int:
    _, store = _store()
    listings = store.listings(shared=not args.local)
    sizes = _sizes_by_entry(store.size_records(shared=not args.local))
    rows = [_row(r) for r in listings]
    extra: dict[str, str] = {}  # entry id → its family line
    for r, row in zip(listings, rows):
        records = sizes.get(r.entry_id, [])
        if not (_is_family(r.entry) or records):
            continue  # a row as it always was
        symbols = _symbols(r.entry) if r.entry is not None else []
        row["symbols"] = symbols
        row["size_records"] = [_size_doc(*rec) for rec in records]
        timed = "; ".join(_size_brief(rec, v) for rec, v, _ in records) or "none yet"
        extra[r.entry_id] = f"    family {','.join(symbols) or '-'} · timed: {timed}"
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return 0
    cols = (("key16", 16), ("ops", 28), ("shapes", 26), ("device", 10), ("speedup", 7), ("age", 4), ("tier", 14))
    print("  ".join(name.ljust(w) for name, w in cols) + "  served/why-not")
    for row in rows:
        speed = f"{row['speedup']:.2f}x" if row["speedup"] else "-"
        cells = [_clip(speed if name == "speedup" else str(row[name]), w).ljust(w) for name, w in cols]
        print("  ".join(cells) + "  " + row["served"])
        if row["entry_id"] in extra:
            print(extra[row["entry_id"]])
    if not rows:
        print("(empty: `llm-inductor cache add` or `llm-inductor tune` put kernels here)", file=sys.stderr)
    return 0


def _show_family(e: Entry, records: list[SizeRow]) -> None:
    """A family entry's symbols, the sizes it was verified at, and every per-size record of it."""
    symbols = _symbols(e)
    print(f"-- family: symbols {', '.join(symbols) or '-'}")
    verified = e.envelope.get("sizes")
    if isinstance(verified, dict) and verified:
        parts = [
            f"{s} in {{{', '.join(str(v) for v in (vals if isinstance(vals, list) else [vals]))}}}"
            for s, vals in verified.items()
        ]
        print(f"   verified at: {'; '.join(parts)}")
    else:
        print("   verified at: (no sizes recorded)")
    print(f"-- size records ({len(records)})")
    for rec, verdict, tiers in records:
        served = "served" if verdict.servable else f"not served: {verdict}"
        why = f"  ({rec.why})" if rec.why else ""
        print(
            f"   {rec.bucket}  {_speed(rec)}  {_won(rec)}  mode {rec.inductor_mode}  gpu {rec.gpu}  "
            f"{served}  [{'+'.join(tiers)}]{why}"
        )
    if not records:
        print("   (none yet: `llm-inductor tune --pending` times the sizes compiles met)")


def cmd_show(args: argparse.Namespace) -> int:
    _, store = _store()
    found = _match(store, args.key)
    sizes = _sizes_by_entry(store.size_records()) if found else {}
    if args.json:
        docs = []
        for r in found:
            doc = {"entry_id": r.entry_id, "tiers": r.tiers, "verdict": str(r.verdict)}
            doc.update(r.entry.to_dict() if r.entry else {})
            records = sizes.get(r.entry_id, [])
            if _is_family(r.entry) or records:
                doc["size_records"] = [_size_doc(*rec) for rec in records]
            docs.append(doc)
        print(json.dumps(docs, indent=1, default=str))
        return 0
    for r in found:
        print(
            f"== {r.entry_id}  [{'+'.join(r.tiers)}]  {'served' if r.verdict.servable else f'not served: {r.verdict}'}"
        )
        if r.entry is None:
            continue
        d = r.entry.to_dict()
        sources = {k: d.pop(k) for k in ("kernel_source", "region_source")}
        print(json.dumps(d, indent=1, sort_keys=True, default=str))
        try:  # what the key hashes, one line per field (diff two of these to see why keys differ)
            print("-- key\n" + "\n".join(KernelKey.from_dict(r.entry.key_fields).debug_lines()))
        except (KeyError, TypeError, ValueError) as e:
            print(f"-- key fields unreadable: {e}")
        if _is_family(r.entry) or sizes.get(r.entry_id):
            _show_family(r.entry, sizes.get(r.entry_id, []))
        print("-- kernel source\n" + sources["kernel_source"].rstrip())
        print("-- region source\n" + sources["region_source"].rstrip())
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    _, store = _store()
    stats = store.stats()
    stats["served"] = sum(r.verdict.servable for r in store.listings(shared=False, packs=False))
    if args.json:
        print(json.dumps(stats, indent=1))
    else:
        for k, v in stats.items():
            print(f"{k:12} {v}")
    return 0


# ---------------------------------------------------------------------------- rm, prune, revoke


def cmd_rm(args: argparse.Namespace) -> int:
    _, store = _store()
    rows = store.listings(shared=args.shared, packs=False)
    ids = sorted({r.entry_id for k in args.keys for r in _match(store, k, rows)})
    keys = {i.split(":")[0] for i in ids}
    if len(keys) > len(args.keys) and not args.all_matching:
        raise UsageError(f"{args.keys} match {len(keys)} keys; give longer prefixes or pass --all-matching.")
    n = store.remove(ids, shared=args.shared)
    print(f"removed {n} entr{'y' if n == 1 else 'ies'}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    if args.older_than is None and args.max_size is None and not args.other_versions and not args.unservable:
        raise UsageError("Say what to prune: --older-than DAYS, --max-size MB, --other-versions or --unservable.")
    cfg, store = _store()
    if not args.dry_run:
        store.require_writable("prune", local=True)
    rows = store.listings(shared=False, packs=False)
    drop: dict[str, str] = {}
    for r in rows:
        if args.older_than is not None and (r.added or 0) < time.time() - args.older_than * 86400:
            drop[r.entry_id] = f"older than {args.older_than} days"
        elif args.other_versions and r.verdict.reason in ("torch_version", "triton_version", "versions_unknown"):
            drop[r.entry_id] = str(r.verdict)
        elif args.unservable and not r.verdict.servable:
            drop[r.entry_id] = str(r.verdict)
    if args.max_size is not None:  # keep the newest entries that fit
        total = 0
        for r in sorted((r for r in rows if r.entry_id not in drop), key=lambda r: -(r.added or 0)):
            total += r.size
            if total > args.max_size * 1e6:
                drop[r.entry_id] = f"over {args.max_size} MB"
    for entry_id, why in drop.items():
        print(f"{'would remove' if args.dry_run else 'remove'} {entry_id[:33]}  ({why})")
    if drop and not args.dry_run:
        store.remove(list(drop))
        store.local.compact()
    print(f"{len(drop)} of {len(rows)} entries {'would be ' if args.dry_run else ''}pruned")
    if args.older_than is not None:  # the region pass's records for AOTAutograd cache hits (counts only)
        from llm_inductor.compile.aot import prune_records

        n = prune_records(cfg.cache_path, args.older_than * 86400, args.dry_run)
        print(
            f"{n} compile record{'' if n == 1 else 's'} unused for {args.older_than} days "
            f"{'would be ' if args.dry_run else ''}removed"
        )
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    _, store = _store()
    if args.list or not (args.target or args.signer):
        trust = store.trust()
        for target, body, tier in store.revocations(sign_own=False):
            rev = Revocation.from_body(target, body)
            problem = signature_problem(rev, trust.keys, local=tier == store.local.name)
            print(f"{rev.describe()}  [{tier}]{f'  IGNORED: {problem}' if problem else ''}")
        return 0
    if args.signer:
        if args.target or args.hash:
            raise UsageError("Give either a key (or --hash a content hash) or --signer FINGERPRINT, not both.")
        value = args.signer.lower()
        if not re.fullmatch(r"[0-9a-f]{32}", value):
            raise UsageError(
                f"{args.signer!r} is not a key fingerprint: 32 hex digits, as `cache keygen` prints "
                "and `cache show` gives as an entry's signer."
            )
        target = f"signer:{value}"
    else:
        kind = "hash" if args.hash else "key"
        value = args.target.lower() if args.hash else args.target.lower().split(":", 1)[0]
        if not _HEX64.fullmatch(value):  # a prefix: resolve it against the entries this cache knows
            if args.hash:
                found = {
                    r.entry.content_hash for r in store.listings() if r.entry and r.entry.content_hash.startswith(value)
                }
            else:
                found = {r.entry_id.split(":", 1)[0] for r in _match(store, value)}
            if len(found) != 1:
                raise UsageError(f"{args.target!r} matches {len(found)} {kind}s; give the full 64-digit {kind}.")
            value = found.pop()
        target = f"{kind}:{value}"
    assert valid_target(target)
    tiers = store.revoke(target, args.reason or f"revoked by {getpass.getuser()} at {time.strftime('%Y-%m-%d %H:%M')}")
    if not tiers:
        raise NegativeResult(f"could not record the revocation of {target} (see the warning above)")
    print(
        f"revoked {target} in {', '.join(tiers)}, signed with {store.signer().source}; "
        "`llm-inductor cache export` carries it in packs"
    )
    return 0


# ---------------------------------------------------------------------------- export, import, keygen


def _matches(args: argparse.Namespace, e: Entry, entry_id: str) -> bool:
    """The filters export and release share: key prefixes, ops, device class and GPU model."""
    if args.key and not any(entry_id.startswith(k.lower()) for k in args.key):
        return False
    if (args.op and not set(args.op) <= set(e.ops)) or (args.device and e.device != args.device):
        return False
    return not (args.gpu and e.versions.get("gpu") != args.gpu)


def cmd_export(args: argparse.Namespace) -> int:
    _, store = _store()
    chosen: list[Entry] = []
    for r in store.listings(packs=args.include_packs):
        e = r.entry
        if e is None or r.verdict.refused or (not args.all and not r.verdict.servable):
            continue
        if _matches(args, e, r.entry_id):
            chosen.append(e)
    revocations = sorted({(t, reason) for t, reason, _ in store.revocations()})
    if not chosen and not revocations:
        raise NegativeResult("nothing to export: no entry matches (servable ones only unless --all); see `cache ls`")
    # the per-size records of those entries, by the same rule: believed here, or with --all any but refused ones
    ids = {e.entry_id for e in chosen}
    sizes = [
        rec
        for rec, verdict, _ in store.size_records(packs=args.include_packs)
        if rec.entry_id in ids
        and not verdict.refused
        and (args.all or verdict.servable)
        and (not args.gpu or rec.gpu == args.gpu)
    ]
    n = write_pack(args.pack, chosen, revocations, sizes)
    with_sizes = f", with {len(sizes)} size record(s) of those entries" if sizes else ""
    print(f"wrote {n} entr{'y' if n == 1 else 'ies'} and {len(revocations)} revocation(s) to {args.pack}{with_sizes}")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    """A pack signed with a new key that exists only in this process: its public half is written, the private never.

    An entry goes in when this machine trusts it as it stands (a trusted signature over intact content,
    not revoked, the current key schema, the static policy), whatever versions and GPU it was made on:
    each user's machine judges those. Its size records go in by the same rule. Both are re-signed with
    the release key; their content, and so their ids and the FX-cache keys of graphs they serve, do not
    change. The revocations this machine honours go in too, signed with the release key, so that users who
    trust only the shipped keys honour them (a later release withdraws an earlier one's kernel this way).
    Shipping is copying the two files into ``llm_inductor/packs/`` and ``llm_inductor/keys/``.
    """
    import dataclasses

    pack, public = Path(args.pack), Path(args.public_key)
    for path, what in ((public, "public key"), (pack, "pack")):
        if path.exists():
            raise UsageError(
                f"{path} exists: a release never replaces a shipped {what}. Name a new one (a later release "
                "signs with a new key; every shipped key stays trusted until `cache revoke --signer`)."
            )
    if not sign.available():
        raise UsageError("a release needs signatures: pip install 'llm-inductor[signing]'")
    _, store = _store()
    judge = dataclasses.replace(store.trust(), versions=False, _memo={})
    chosen = [
        r.entry
        for r in store.listings(packs=args.include_packs)
        if r.entry is not None and _matches(args, r.entry, r.entry_id) and judge.judge(r.entry).servable
    ]
    if not chosen:
        raise NegativeResult("nothing to release: no trusted entry matches; see `cache ls` for why each is not")
    ids = {e.entry_id for e in chosen}
    sizes = [
        rec
        for rec, _, _ in store.size_records(packs=args.include_packs)
        if rec.entry_id in ids and judge.judge_size(rec).servable and (not args.gpu or rec.gpu == args.gpu)
    ]
    trust = store.trust()
    built_in = {f"signer:{fp}" for fp in sign.COMPROMISED}  # every install honours those already
    honoured = sorted(
        (r for t, r in trust.revoked.honoured(trust.keys).items() if t not in built_in), key=lambda r: r.target
    )
    key = sign.ephemeral(f"release key {public.stem}")
    entries, sizes = [key.sign(e) for e in chosen], [key.sign(r) for r in sizes]
    revocations = [(r.target, r.body()) for r in (rev.signed_with(key) for rev in honoured)]
    n = write_pack(pack, entries, revocations, sizes)
    atomic_write(public, key.public.pem())
    fingerprint = key.public.fingerprint
    del key  # the only reference to the private half: it was never written
    released = Trust(load_trusted([str(public)]), versions=False)
    written = [Entry.from_dict(d) for _, d in read_pack(pack).entries]
    bad = [e.key16 for e in written if not released.judge(e).servable]
    if bad:
        raise HarnessError(f"the written pack does not verify under its own key ({', '.join(bad)}); do not ship it")
    print(
        f"released {n} entr{'y' if n == 1 else 'ies'}, {len(sizes)} size record(s) and {len(revocations)} "
        f"revocation(s) to {pack}, signed by the "
        f"new key {fingerprint}; its public half is {public}, its private half was never written.\n"
        f"Ship them: copy {pack.name} to llm_inductor/packs/ and {public.name} to llm_inductor/keys/."
    )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Exit 1 when a pack with entries gave nothing usable here (served, or servable after `cache verify`)."""
    _, store = _store()
    pack = read_pack(args.pack)
    if pack.bad:
        print(f"warning: {args.pack}: skipped {pack.bad_summary()}", file=sys.stderr)
    trust = store.trust()
    revoked = 0
    for rev in pack.revocations:  # first: the entries below are judged with them
        problem = signature_problem(rev, trust.keys)
        if problem is not None:
            print(f"warning: skipped the revocation of {rev.target}: {problem}", file=sys.stderr)
            continue
        revoked += bool(store.add_revocation(rev))
    served, fixable, skipped = 0, 0, 0
    for lineno, d in pack.entries:
        try:
            entry = Entry.from_dict(d)
        except EntryError as e:
            print(f"warning: line {lineno}: skipped entry {(e.key or '?')[:16]}: {e}", file=sys.stderr)
            skipped += 1
            continue
        verdict = store.judge(entry)
        if verdict.refused or not (verdict.servable or verdict.fixable):
            print(f"warning: line {lineno}: skipped entry {entry.key16}: {verdict}", file=sys.stderr)
            skipped += 1
            continue
        _, tiers = store.write(entry, sign_unsigned=False)
        if not tiers:
            print(
                f"warning: line {lineno}: entry {entry.key16} could not be written (see the warning above)",
                file=sys.stderr,
            )
            skipped += 1
            continue
        served += verdict.servable
        fixable += verdict.fixable
    sizes = _import_sizes(store, pack.sizes)
    imported = served + fixable
    not_yet = f", {fixable} not: `llm-inductor cache verify` checks those on this machine" if fixable else ""
    print(
        f"imported {imported} entr{'y' if imported == 1 else 'ies'} ({served} served here{not_yet}), "
        f"skipped {skipped}, {revoked} of {len(pack.revocations)} revocation(s)"
        + (f", {sizes} of {len(pack.sizes)} size record(s)" if pack.sizes else "")
    )
    if pack.entries and not imported:
        return 1
    return 0


def _import_sizes(store: TieredStore, lines: list[tuple[int, dict[str, Any]]]) -> int:
    """Write a pack's size records as they are (never re-signed); refused or unusable ones are skipped."""
    n = 0
    for lineno, d in lines:
        try:
            record = SizeRecord.from_dict(d)
        except SizeRecordError as e:
            print(f"warning: line {lineno}: skipped a size record: {e}", file=sys.stderr)
            continue
        verdict = store.judge_size(record)
        if verdict.refused or not (verdict.servable or verdict.reason in FIXABLE):
            print(f"warning: line {lineno}: skipped the size record {record.key}: {verdict}", file=sys.stderr)
            continue
        n += bool(store.write_size(record, sign_unsigned=False)[1])
    return n


def cmd_keygen(args: argparse.Namespace) -> int:
    key_path, pub_path = sign.generate(args.dir, args.name, force=args.force)
    fp = sign.load_public(pub_path).fingerprint
    print(f"private key {key_path} (keep it secret: never commit it)\npublic key  {pub_path}  fingerprint {fp}")
    print(f"sign with:   export LLM_INDUCTOR_SIGNING_KEY={key_path}")
    print(f"consumers:   export LLM_INDUCTOR_TRUSTED_KEYS={pub_path}")
    return 0


# ---------------------------------------------------------------------------- add, verify


class _Unverifiable(Exception):
    """An entry or region this machine cannot check; ``reason`` is a code for the output."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _key_of(key_fields: Any) -> KernelKey:
    try:
        return KernelKey.from_dict(key_fields)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise _Unverifiable(
            "key_unreadable", f"its key fields do not parse, or do not hash to its digest ({e})"
        ) from None


def _trusted_region(key_fields: Any, symbols: Any) -> RegionInfo:
    """The region a key describes, rebuilt and written by this package, at the sizes given.

    Whatever region file came with a key is another author's Python: it is never read.
    ``passes/rebuild.py`` parses the key's lines under a strict grammar into ATen ops and
    checks that the rebuilt graph hashes to the key's digest.
    """
    try:
        return rebuild(_key_of(key_fields), sizes_from(symbols))
    except KeyGraphError as e:
        raise _Unverifiable(f"key_{e.reason}", str(e)) from None


def _local_regions(cfg: Config, store: TieredStore) -> dict[str, list[Sidecar]]:
    """Sidecars of the regions compiles on this machine recorded, by key digest and by schema-1 digest."""
    paths = {regionfile.sidecar_of(r.region_path) for r in store.pending()}
    paths |= set(regionfile.region_sidecars(cfg.cache_path / "regions"))
    found: dict[str, list[Sidecar]] = {}
    for path in sorted(paths):
        try:
            side = regionfile.read_sidecar(path, require=("key",))
        except UsageError:  # unreadable, or not a sidecar: it records no sizes
            continue
        for digest in {side.key, side.legacy_key} - {None}:
            found.setdefault(str(digest), []).append(side)
    return found


def _regions_for(entry: Entry, local: dict[str, list[Sidecar]]) -> list[RegionInfo]:
    """The regions to verify an entry's kernel against: its key's region, at sizes a local compile saw.

    An entry of key schema 1 named no returned values, so its key may stand for several
    regions (rstd or variance returned): each one recorded here under that schema-1 key is tried.
    """
    key = _key_of(entry.key_fields)
    if key.digest != entry.key:
        raise _Unverifiable("key_unreadable", f"its key fields hash to {key.key16}, not to its key")
    if key.schema not in (1, KEY_SCHEMA):
        raise _Unverifiable(
            "key_schema", f"key schema {key.schema} is unknown to this build (it reads 1 and {KEY_SCHEMA})"
        )
    metas = [m for m in local.get(entry.key, []) if key.schema == KEY_SCHEMA or m.legacy_key == entry.key]
    if not metas:
        raise _Unverifiable(
            "not_recorded",
            f"no compile on this machine recorded region {entry.key16}"
            f"{' (a key of schema 1)' if key.schema == 1 else ''}, so there are no sizes to verify "
            'it at; run the script that uses it once with backend="llm" (that records the region), '
            "then `llm-inductor cache verify` again",
        )
    # schema 2: the entry's own key, checked by the rebuild; schema 1: each local region it may stand for
    return [
        _trusted_region(entry.key_fields if key.schema == KEY_SCHEMA else m.key_fields, dict(m.symbols)) for m in metas
    ]


def _verify(info: RegionInfo, kernel_source: str, cfg: Config, device: str) -> Any:
    """Run the verifier on the region file this package writes for info (in a scratch folder) and a kernel."""
    from llm_inductor.verify.engine import verify

    with tempfile.TemporaryDirectory(prefix="llm_inductor-verify-") as tmp:
        return verify(str(info.write(tmp)), kernel_source, device=device, config=cfg)


def _entry_from(
    result: Any, info: RegionInfo, kernel_source: str, provenance: dict[str, Any], speed: dict[str, Any] | None = None
) -> Entry:
    versions = current_versions(str(getattr(result, "device", None) or "cpu"))  # where the verifier ran
    return Entry.from_verification(
        result,
        region_source=info.source(),
        region_meta=info.sidecar().to_dict(),
        kernel_source=kernel_source,
        provenance=provenance,
        versions=versions,
        speed=speed,
    )


def _read_candidate(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(
            f"{path} is not UTF-8 text ({e.reason} at byte {e.start}): a candidate is a Python "
            "module defining forward(*inputs) and its Triton kernels"
        ) from None


def cmd_add(args: argparse.Namespace) -> int:
    cfg, store = _store()
    region, candidate = Path(args.region), Path(args.candidate)
    sidecar = regionfile.sidecar_of(region)
    for path in (region, candidate):
        if not path.is_file():
            raise UsageError(f"No file {path}.")
    side = regionfile.read_sidecar(region, require=("key", "key_fields"))  # the fields an entry is keyed by
    try:  # the reference is the region the key describes; the .py beside the sidecar is never imported
        info = _trusted_region(side.key_fields, dict(side.symbols))
    except _Unverifiable as e:
        raise UsageError(
            f"{sidecar}: its key does not describe a region this package can rebuild ({e.reason}: {e}); "
            "regenerate the region file with a compile or `llm-inductor regions --export`"
        ) from None
    if info.digest != side.key:
        raise UsageError(f"{sidecar}: its key fields hash to {info.key16}, not to its key {str(side.key)[:16]}")
    if region.read_bytes() != info.source().encode():
        print(
            f"note: {region.name} differs from the region its key describes; the kernel is verified against the "
            "key's region, as this package writes it",
            file=sys.stderr,
        )
    kernel_source = _read_candidate(candidate)
    store.require_writable("add a kernel")  # before verifying: a read-only cache could not keep the result
    result = _verify(info, kernel_source, cfg, args.device)
    if result.harness_failure:
        raise HarnessError(f"the verifier could not run ({result.reason}); nothing was judged", result.message)
    if not result.accepted:
        raise NegativeResult(f"rejected ({result.reason}): {result.message}")
    provenance = {
        "provider": "manual",
        "model": None,
        "author": getpass.getuser(),
        "candidate": candidate.name,
        "prompt_hash": None,
        "tokens": 0,
        "cost": 0.0,
        "time": time.time(),
    }
    # strict: a write no tier takes (a full disk) raises NotWritable, exit 2 with the cause
    entry, tiers = store.write(_entry_from(result, info, kernel_source, provenance))
    print(
        f"added {entry.entry_id} to {', '.join(tiers)}, signed by {entry.signer} ({store.signer().source}); "
        f"{'served' if store.judge(entry).servable else f'not served here: {store.judge(entry)}'}"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    cfg, store = _store()
    rows = store.listings()
    if args.keys:
        rows = list({r.entry_id: r for k in args.keys for r in _match(store, k, rows)}.values())
    else:
        rows = [r for r in rows if r.verdict.fixable]
    # the same kernel for the same key, already verified and signed here: nothing to do
    done = {
        (r.entry.key, r.entry.kernel_source): r.entry_id for r in store.listings() if r.entry and r.verdict.servable
    }
    for r in [r for r in rows if r.entry and (r.entry.key, r.entry.kernel_source) in done and not args.force]:
        print(f"{r.entry_id[:16]}  served already as {done[(r.entry.key, r.entry.kernel_source)]}")
        rows.remove(r)
    if not rows:
        print("nothing to verify: every entry is served here, or cannot be fixed by verifying (see `cache ls`)")
        return 0
    store.require_writable("store re-verified entries")  # before verifying: a read-only cache could not keep them
    failed = 0
    harness: list[str] = []  # results that judged nothing
    local = _local_regions(cfg, store)
    for r in rows:
        e = r.entry
        if e is None or not (r.verdict.fixable or (args.force and r.verdict.servable)):
            print(
                f"{r.entry_id[:16]}  {'served already' if r.verdict.servable else f'cannot be verified: {r.verdict}'}"
            )
            failed += not r.verdict.servable
            continue
        try:
            regions = _regions_for(e, local)
        except _Unverifiable as u:
            print(f"{e.key16}  not verified ({u.reason}): {u}")
            failed += 1
            continue
        stored_any = False
        for info in regions:
            result = _verify(info, e.kernel_source, cfg, args.device)
            if result.harness_failure:
                print(f"{e.key16}  not judged ({result.reason}) for region {info.key16}: {result.message}")
                harness.append(result.message)
                continue
            if not result.accepted:
                print(f"{e.key16}  rejected ({result.reason}) for region {info.key16}: {result.message}")
                continue
            provenance = {
                **e.provenance,
                "reverified": {"from": r.entry_id, "signer": e.signer, "was": str(r.verdict), "time": time.time()},
            }
            stored, tiers = store.write(_entry_from(result, info, e.kernel_source, provenance, speed=e.speed))
            stored_any |= bool(tiers)
            print(
                f"{e.key16}  verified ({r.verdict.reason} before); stored {stored.entry_id} in "
                f"{', '.join(tiers) or 'no tier'}, signed with {store.signer().source}: "
                f"{'served' if store.judge(stored).servable else store.judge(stored)}"
            )
        if stored_any and "local" in r.tiers:
            store.remove([r.entry_id])  # the local copy it replaces; shared and pack copies stay where they are
        failed += not stored_any
    if harness:
        raise HarnessError(
            f"the verifier could not run for {len(harness)} region(s); they were not judged", "\n".join(harness)
        )
    return 1 if failed else 0


# ---------------------------------------------------------------------------- salvage


def cmd_salvage(args: argparse.Namespace) -> int:
    """Exit 0 when an entry came back or was back already, 1 when none could, 2 without a file to read."""
    cfg, store = _store()
    sources = [Path(f) for f in args.files] or store.local.moved_aside()
    for path in sources:
        if not path.is_file():
            raise UsageError(
                f"No file {path}; give a database moved aside as {store.local.path.name}.corrupt-*, "
                "or nothing to salvage every one in the cache directory."
            )
    if not sources:
        raise NegativeResult(f"nothing to salvage: no damaged database was moved aside in {cfg.cache_path}")
    usable = 0
    for path in sources:
        s = store.salvage(path)
        for entry_id, reason, detail in s.refused:
            print(f"warning: {path.name}: refused {entry_id[:33]}: {reason}: {detail}", file=sys.stderr)
        for line in s.lost:
            print(f"warning: {path.name}: unreadable: {line}", file=sys.stderr)
        served = sum(v.servable for _, v in s.restored)
        refused = Counter(reason for _, reason, _ in s.refused)
        print(
            f"{path}: restored {len(s.restored)} entr{'y' if len(s.restored) == 1 else 'ies'} ({served} served here, "
            f"{len(s.restored) - served} not: `llm-inductor cache ls` says why), {s.present} present already, "
            f"refused {len(s.refused)}"
            f"{' (' + ', '.join(f'{k} {n}' for k, n in refused.items()) + ')' if refused else ''}, "
            f"{len(s.lost)} row(s) unreadable, {s.revocations} revocation(s)"
            f"{f', {s.size_records} size record(s)' if s.size_records else ''}; the file stays: delete it when done"
        )
        usable += len(s.restored) + s.present
    return 0 if usable else 1


# ---------------------------------------------------------------------------- parser


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("cache", help="list, share, check and edit the kernel cache")
    sub = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)

    def cmd(name: str, fn: Any, help: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help)
        q.set_defaults(func=fn)
        return q

    q = cmd("ls", cmd_ls, "entries: key, ops, shapes, device, speedup, age, tier, served or why not")
    q.add_argument("--local", action="store_true", help="skip the shared tier")
    q.add_argument("--json", action="store_true")
    q = cmd("show", cmd_show, "everything about the entries of a key, kernel source included")
    q.add_argument("key", help="key or entry id prefix")
    q.add_argument("--json", action="store_true")
    q = cmd("stats", cmd_stats, "entries, hits, misses, size")
    q.add_argument("--json", action="store_true")
    q = cmd("rm", cmd_rm, "remove entries from the local tier")
    q.add_argument("keys", nargs="+", metavar="KEY")
    q.add_argument("--shared", action="store_true", help="remove them from the shared tier too")
    q.add_argument("--all-matching", action="store_true", help="allow a prefix to match several keys")
    q = cmd("prune", cmd_prune, "remove local entries by age, version, size or servability")
    q.add_argument(
        "--older-than",
        type=float,
        metavar="DAYS",
        help="entries added, and compile records last used, more than DAYS ago",
    )
    q.add_argument("--max-size", type=float, metavar="MB", help="keep the newest entries up to this size")
    q.add_argument("--other-versions", action="store_true", help="made with another torch or triton minor version")
    q.add_argument("--unservable", action="store_true", help="not served here, for any reason")
    q.add_argument("--dry-run", action="store_true")
    q = cmd("export", cmd_export, "write entries and revocations to a pack (.jsonl or .jsonl.gz)")
    q.add_argument("pack")
    q.add_argument("--key", action="append", help="key prefix (repeatable)")
    q.add_argument("--op", action="append", help="entries whose region has this op (repeatable: all of them)")
    q.add_argument("--device", help="key device class, e.g. cuda:sm90 or cpu")
    q.add_argument("--gpu", help="GPU model verified on, e.g. 'NVIDIA H200'")
    q.add_argument("--all", action="store_true", help="also entries not served here (never refused ones)")
    q.add_argument("--include-packs", action="store_true", help="also entries from read-only packs")
    q = cmd(
        "release",
        cmd_release,
        "write trusted entries to a pack signed with a new key whose private half is never written",
    )
    q.add_argument("pack", help="the pack to write (.jsonl or .jsonl.gz); never an existing file")
    q.add_argument("public_key", metavar="PUBLIC_KEY", help="where the new key's public half goes (NAME.pub)")
    q.add_argument("--key", action="append", help="key prefix (repeatable)")
    q.add_argument("--op", action="append", help="entries whose region has this op (repeatable: all of them)")
    q.add_argument("--device", help="key device class, e.g. cuda:sm90 or cpu")
    q.add_argument("--gpu", help="GPU model verified on, e.g. 'NVIDIA H200'")
    q.add_argument("--include-packs", action="store_true", help="also entries from read-only packs")
    q = cmd("import", cmd_import, "copy a pack's entries and revocations into the cache")
    q.add_argument("pack")
    q = cmd("verify", cmd_verify, "verify entries not served here on this machine and sign them with the local key")
    q.add_argument("keys", nargs="*", metavar="KEY", help="default: every entry verifying could make servable")
    q.add_argument("--device", default="auto")
    q.add_argument("--force", action="store_true", help="re-verify entries that are already served")
    q = cmd("keygen", cmd_keygen, "make an Ed25519 key pair: NAME.key (private) and NAME.pub")
    q.add_argument("dir")
    q.add_argument("--name", default="llm_inductor")
    q.add_argument("--force", action="store_true", help="replace an existing pair")
    q = cmd(
        "revoke",
        cmd_revoke,
        "never serve a key, a content hash (--hash) or a signer's entries (--signer) again, "
        "in every tier; signed with the signing key",
    )
    q.add_argument("target", nargs="?", help="key (or prefix); with --hash a content hash")
    q.add_argument("--hash", action="store_true")
    q.add_argument(
        "--signer",
        metavar="FINGERPRINT",
        help="revoke a signing key: its entries are no longer served, nor its revocations honoured",
    )
    q.add_argument("--reason")
    q.add_argument("--list", action="store_true", help="list revocations")
    q = cmd("salvage", cmd_salvage, "restore the entries still readable in a damaged database that was moved aside")
    q.add_argument("files", nargs="*", metavar="FILE", help="default: every entries-v1.db.corrupt-* in the cache")
    q = cmd("add", cmd_add, "verify a hand-written kernel for a region file and insert it")
    q.add_argument("region", help="region_<key16>.py (its .json sidecar beside it)")
    q.add_argument("candidate", help="the kernel module: forward(*inputs) and its Triton kernels")
    q.add_argument("--device", default="auto")
