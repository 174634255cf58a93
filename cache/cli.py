"""``llm-inductor cache``: list, show, share, check and edit the kernel cache.

Exit codes (DESIGN.md): 0 success; 1 negative (a candidate or an entry failing
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
from pathlib import Path
from typing import Any

from llm_inductor._errors import NegativeResult, UsageError
from llm_inductor.cache import sign
from llm_inductor.cache.entry import Entry, EntryError
from llm_inductor.cache.key import KernelKey
from llm_inductor.cache.pack import read_pack, write_pack
from llm_inductor.cache.tiered import Listing, TieredStore, open_store
from llm_inductor.cache.trust import current_versions, valid_target
from llm_inductor.config import Config

_HEX64 = re.compile(r"[0-9a-f]{64}")


def _store() -> tuple[Config, TieredStore]:
    cfg = Config.load()[0]
    return cfg, open_store(cfg)


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
        "key16": r.entry_id[:16], "entry_id": r.entry_id,
        "ops": ",".join(e.ops) if e else "-", "shapes": " ".join(e.shapes) if e else "-",
        "device": e.device if e else "-", "speedup": e.speedup(e.versions.get("gpu")) if e else None,
        "age": _age(r.added or (e.created if e else None)), "tier": "+".join(r.tiers),
        "served": "served" if r.verdict.servable else f"no: {r.verdict}", "hits": r.hits,
    }


def cmd_ls(args: argparse.Namespace) -> int:
    _, store = _store()
    rows = [_row(r) for r in store.listings(shared=not args.local)]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    cols = (("key16", 16), ("ops", 28), ("shapes", 26), ("device", 10), ("speedup", 7), ("age", 4), ("tier", 14))
    print("  ".join(name.ljust(w) for name, w in cols) + "  served/why-not")
    for row in rows:
        speed = f"{row['speedup']:.2f}x" if row["speedup"] else "-"
        cells = [_clip(speed if name == "speedup" else str(row[name]), w).ljust(w) for name, w in cols]
        print("  ".join(cells) + "  " + row["served"])
    if not rows:
        print("(empty: `llm-inductor cache add` or `llm-inductor tune` put kernels here)", file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    _, store = _store()
    found = _match(store, args.key)
    if args.json:
        docs = [{"entry_id": r.entry_id, "tiers": r.tiers, "verdict": str(r.verdict),
                 **(r.entry.to_dict() if r.entry else {})} for r in found]
        print(json.dumps(docs, indent=1, default=str))
        return 0
    for r in found:
        print(f"== {r.entry_id}  [{'+'.join(r.tiers)}]  {'served' if r.verdict.servable else f'not served: {r.verdict}'}")
        if r.entry is None:
            continue
        d = r.entry.to_dict()
        sources = {k: d.pop(k) for k in ("kernel_source", "region_source")}
        print(json.dumps(d, indent=1, sort_keys=True, default=str))
        try:  # what the key hashes, one line per field (diff two of these to see why keys differ)
            print("-- key\n" + "\n".join(KernelKey.from_dict(r.entry.key_fields).debug_lines()))
        except (KeyError, TypeError, ValueError) as e:
            print(f"-- key fields unreadable: {e}")
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
        from llm_inductor._aot import prune_records

        n = prune_records(cfg.cache_path, args.older_than * 86400, args.dry_run)
        print(f"{n} compile record{'' if n == 1 else 's'} unused for {args.older_than} days "
              f"{'would be ' if args.dry_run else ''}removed")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    _, store = _store()
    if args.list or not args.target:
        for target, reason, tier in store.revocations():
            print(f"{target}  [{tier}]  {reason}")
        return 0
    kind = "hash" if args.hash else "key"
    value = args.target.lower() if args.hash else args.target.lower().split(":", 1)[0]
    if not _HEX64.fullmatch(value):  # a prefix: resolve it against the entries this cache knows
        if args.hash:
            found = {r.entry.content_hash for r in store.listings() if r.entry and r.entry.content_hash.startswith(value)}
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
    print(f"revoked {target} in {', '.join(tiers)}; `llm-inductor cache export` carries it in packs")
    return 0


# ---------------------------------------------------------------------------- export, import, keygen


def cmd_export(args: argparse.Namespace) -> int:
    _, store = _store()
    chosen: list[Entry] = []
    for r in store.listings(packs=args.include_packs):
        e = r.entry
        if e is None or r.verdict.refused or (not args.all and not r.verdict.servable):
            continue
        if args.key and not any(r.entry_id.startswith(k.lower()) for k in args.key):
            continue
        if (args.op and not set(args.op) <= set(e.ops)) or (args.device and e.device != args.device):
            continue
        if args.gpu and e.versions.get("gpu") != args.gpu:
            continue
        chosen.append(e)
    revocations = sorted({(t, reason) for t, reason, _ in store.revocations()})
    if not chosen and not revocations:
        raise NegativeResult("nothing to export: no entry matches (servable ones only unless --all); see `cache ls`")
    n = write_pack(args.pack, chosen, revocations)
    print(f"wrote {n} entr{'y' if n == 1 else 'ies'} and {len(revocations)} revocation(s) to {args.pack}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    _, store = _store()
    pack = read_pack(args.pack)
    if pack.bad:
        print(f"warning: {args.pack}: skipped {pack.bad_summary()}", file=sys.stderr)
    imported, skipped, served = 0, 0, 0
    for lineno, d in pack.entries:
        try:
            entry = Entry.from_dict(d)
        except EntryError as e:
            print(f"warning: line {lineno}: skipped entry {(e.key or '?')[:16]}: {e}", file=sys.stderr)
            skipped += 1
            continue
        verdict = store.judge(entry)
        if verdict.refused:
            print(f"warning: line {lineno}: refused entry {entry.key16}: {verdict}", file=sys.stderr)
            skipped += 1
            continue
        _, tiers = store.write(entry, sign_unsigned=False)
        imported += bool(tiers)
        served += verdict.servable
    for target, reason in pack.revocations:
        store.revoke(target, reason)
    print(f"imported {imported} entr{'y' if imported == 1 else 'ies'} ({served} served here, "
          f"{imported - served} not: `llm-inductor cache verify` checks those on this machine), "
          f"skipped {skipped}, {len(pack.revocations)} revocation(s)")
    if pack.entries and not imported:
        return 1
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    key_path, pub_path = sign.generate(args.dir, args.name, force=args.force)
    fp = sign.load_public(pub_path).fingerprint
    print(f"private key {key_path} (keep it secret: never commit it)\npublic key  {pub_path}  fingerprint {fp}")
    print(f"sign with:   export LLM_INDUCTOR_SIGNING_KEY={key_path}")
    print(f"consumers:   export LLM_INDUCTOR_TRUSTED_KEYS={pub_path}")
    return 0


# ---------------------------------------------------------------------------- add, verify


def _verify(region_source: str, meta: dict[str, Any], kernel_source: str, cfg: Config, device: str) -> Any:
    """Run the verifier on a region (written to a scratch folder with its sidecar) and a kernel."""
    from llm_inductor.verify.engine import verify

    with tempfile.TemporaryDirectory(prefix="llm_inductor-verify-") as tmp:
        region = Path(tmp) / f"region_{str(meta['key'])[:16]}.py"
        region.write_text(region_source)
        region.with_suffix(".json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        return verify(str(region), kernel_source, device=device, config=cfg)


def _entry_from(result: Any, region_source: str, meta: dict[str, Any], kernel_source: str,
                provenance: dict[str, Any], speed: dict[str, Any] | None = None) -> Entry:
    versions = current_versions(str(getattr(result, "device", None) or "cpu"))  # where the verifier ran
    return Entry.from_verification(result, region_source=region_source, region_meta=meta, kernel_source=kernel_source,
                                   provenance=provenance, versions=versions, speed=speed)


def cmd_add(args: argparse.Namespace) -> int:
    cfg, store = _store()
    region, candidate = Path(args.region), Path(args.candidate)
    sidecar = region.with_suffix(".json")
    for path in (region, candidate):
        if not path.is_file():
            raise UsageError(f"No file {path}.")
    try:
        meta = json.loads(sidecar.read_text())
        meta["key"], meta["key_fields"]  # noqa: B018  the fields an entry is keyed by
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{region} needs its sidecar {sidecar.name} with the key fields ({e}); region files written "
                         "by a compile (LLM_INDUCTOR_CACHE_DIR/regions) or `llm-inductor regions` have one.") from None
    result = _verify(region.read_text(), meta, candidate.read_text(), cfg, args.device)
    if not result.accepted:
        raise NegativeResult(f"rejected ({result.reason}): {result.message}")
    provenance = {"provider": "manual", "model": None, "author": getpass.getuser(), "candidate": candidate.name,
                  "prompt_hash": None, "tokens": 0, "cost": 0.0, "time": time.time()}
    entry, tiers = store.write(_entry_from(result, region.read_text(), meta, candidate.read_text(), provenance))
    if not tiers:
        raise RuntimeError(f"the verified entry {entry.entry_id} could not be written (see the warning above)")
    print(f"added {entry.entry_id} to {', '.join(tiers)}, signed by {entry.signer} ({store.signer().source}); "
          f"{'served' if store.judge(entry).servable else f'not served here: {store.judge(entry)}'}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    cfg, store = _store()
    rows = store.listings()
    if args.keys:
        rows = list({r.entry_id: r for k in args.keys for r in _match(store, k, rows)}.values())
    else:
        rows = [r for r in rows if r.verdict.fixable]
    # the same kernel for the same key, already verified and signed here: nothing to do
    done = {(r.entry.key, r.entry.kernel_source): r.entry_id for r in store.listings() if r.entry and r.verdict.servable}
    for r in [r for r in rows if r.entry and (r.entry.key, r.entry.kernel_source) in done and not args.force]:
        print(f"{r.entry_id[:16]}  served already as {done[(r.entry.key, r.entry.kernel_source)]}")
        rows.remove(r)
    if not rows:
        print("nothing to verify: every entry is served here, or cannot be fixed by verifying (see `cache ls`)")
        return 0
    failed = 0
    for r in rows:
        e = r.entry
        if e is None or not (r.verdict.fixable or (args.force and r.verdict.servable)):
            print(f"{r.entry_id[:16]}  {'served already' if r.verdict.servable else f'cannot be verified: {r.verdict}'}")
            failed += not r.verdict.servable
            continue
        result = _verify(e.region_source, e.region_meta, e.kernel_source, cfg, args.device)
        if not result.accepted:
            print(f"{e.key16}  rejected ({result.reason}): {result.message}")
            failed += 1
            continue
        provenance = {**e.provenance, "reverified": {"from": r.entry_id, "signer": e.signer, "was": str(r.verdict),
                                                     "time": time.time()}}
        stored, tiers = store.write(_entry_from(result, e.region_source, e.region_meta, e.kernel_source,
                                                provenance, speed=e.speed))
        if tiers and "local" in r.tiers:
            store.remove([r.entry_id])  # the local copy it replaces; shared and pack copies stay where they are
        print(f"{e.key16}  verified ({r.verdict.reason} before); stored {stored.entry_id} in {', '.join(tiers) or 'no tier'}, "
              f"signed with {store.signer().source}: {'served' if store.judge(stored).servable else store.judge(stored)}")
    return 1 if failed else 0


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
    q.add_argument("--older-than", type=float, metavar="DAYS",
                   help="entries added, and compile records last used, more than DAYS ago")
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
    q = cmd("revoke", cmd_revoke, "never serve a key (or --hash a content hash) again, in every tier")
    q.add_argument("target", nargs="?", help="key (or prefix); with --hash a content hash")
    q.add_argument("--hash", action="store_true")
    q.add_argument("--reason")
    q.add_argument("--list", action="store_true", help="list revocations")
    q = cmd("add", cmd_add, "verify a hand-written kernel for a region file and insert it")
    q.add_argument("region", help="region_<key16>.py (its .json sidecar beside it)")
    q.add_argument("candidate", help="the kernel module: forward(*inputs) and its Triton kernels")
    q.add_argument("--device", default="auto")
