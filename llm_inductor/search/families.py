"""Size families on the tune path: a region's winner becomes its family's kernel, and a family travels by timing.

Two steps, neither of which calls an LLM:

* **promote** — once a region's winner is stored as served, its kernel is verified against the
  region's *family* file (``passes/family.py``: the same computation over size symbols), which
  draws every symbol at 1, an odd size below and one above the size seen. A kernel right at every
  size becomes the family's entry, with one size record (``cache/sizes.py``) at the sizes it was
  tuned at: the winner's own timing and in-graph gate, since the region file there *is* the family
  at those sizes. A kernel right at its own sizes only stays the region's entry, and says why.
* **convert** — an entry made before families (a region's own kernel, served) is promoted the same way,
  once: ``tune --pending`` does it for every such entry whose region has a family, remembering the
  entries a family refused (``regions/families/refused.json``) so that none is verified twice.
* **extend** — a region whose family entry has no record at its sizes is pending with "timing
  needed at this size". ``tune --pending`` verifies the family's kernel against that region's own
  file (the family at those sizes: correctness is never assumed from other sizes), times it there
  against Inductor and gates it in the region's graph, then writes the size record, won or lost.
  Only where the kernel is wrong there does the region go to the LLM as any other miss.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from llm_inductor._errors import UsageError
from llm_inductor._files import atomic_write
from llm_inductor.cache.entry import Entry
from llm_inductor.cache.sizes import TIMING_NEEDED, SizeRecord
from llm_inductor.cache.store import PendingRegion
from llm_inductor.config import Config
from llm_inductor.passes import regionfile
from llm_inductor.search.context import read_region
from llm_inductor.search.gate import SERVED, UNGATED, in_graph_gate
from llm_inductor.search.verdict import HARNESS, Verifier, against, baseline_mode, is_harness, verify_candidate
from llm_inductor.verify.draw_set import region_build_bytes
from llm_inductor.verify.host_budget import HOST

HOST_MEMORY = HARNESS + "host_memory"  # a draw too large for this host: no retry here can build it

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Extension:
    """What ``extend`` did for one pending region, as the tune summary shows it."""

    key16: str  # the region's (exact) key
    family16: str
    sizes: dict[str, int]
    outcome: str  # won | slower | slows_graph | ungated | wrong: <reason> | harness: <what> | no family entry
    speedup: float | None = None
    record: SizeRecord | None = None
    message: str = ""


def _versions(device: str) -> dict[str, str]:
    from llm_inductor.cache.trust import current_versions

    return dict(current_versions(device))


def _put_size(store: Any, record: SizeRecord) -> None:
    put = getattr(store, "put_size", None)
    if put is None:
        raise UsageError("this kernel store keeps no size records, so a family kernel cannot be served by size")
    put(record)


def promote(
    region_path: str | Path, winner: Entry, store: Any, cfg: Config, device: str, verifier: Verifier
) -> dict[str, Any]:
    """Verify a stored winner across its region's family; on success store the family entry and its first record.

    Returns what happened, for the search state (``family`` in the region's result).
    """
    exact = read_region(region_path)
    fam = exact.sidecar.family
    if fam is None:
        return {"promoted": False, "why": "the region has no family"}
    if winner.status != SERVED:
        return {"promoted": False, "why": f"the winner is {winner.status}, not served"}
    fam_path = regionfile.script_path(regionfile.family_dir(Path(region_path).parent), str(fam["key16"]))
    if not fam_path.is_file():
        return {"promoted": False, "why": f"no family region file {fam_path}"}
    existing = store.lookup(str(fam["key"]))
    if existing is not None:
        return {"promoted": False, "why": f"the family already has a kernel ({existing.entry_id[:24]})"}
    mode = baseline_mode(str(region_path))  # what the winner was timed against, at the sizes it was tuned at
    out = verify_candidate(against(verifier, mode), str(fam_path), winner.kernel_source, cfg, None)
    if not out["accepted"]:
        why = f"not right across the family's sizes: {out['outcome']}: {out['message'][:300]}"
        log.info("llm_inductor: region %s's kernel stays its own: %s", exact.sidecar.key16, why)
        return {"promoted": False, "why": why, "harness": is_harness(out["outcome"])}
    family_file = read_region(fam_path)
    meta = family_file.sidecar.to_dict()
    entry = dataclasses.replace(
        winner,
        key=str(fam["key"]),
        key_fields=dict(meta.get("key_fields", {})),
        region_source=family_file.source,
        region_meta=meta,
        verification=dict(out.get("verification") or {}),
        envelope=dict((out.get("verification") or {}).get("envelope") or {}),
        provenance={**winner.provenance, "promoted_from": winner.entry_id},
        signature=None,
        signer=None,
    )
    store.put(entry)
    speed = dict(winner.speed.get(winner.versions.get("gpu", ""), {}) or {})
    won, why = _won_where_tuned(speed, cfg, device)
    record = SizeRecord(
        entry_id=entry.entry_id,
        gpu=winner.versions.get("gpu", _versions(device)["gpu"]),
        inductor_mode=mode,
        sizes={k: int(v) for k, v in dict(fam["symbols"]).items()},
        verified=True,
        won=won,
        speedup=speed.get("speedup"),
        candidate_us=speed.get("candidate_us"),
        inductor_us=speed.get("inductor_us"),
        graph_ab=dict(speed.get("graph_ab") or {}),
        why=why,
        versions=_versions(device),
    )
    _put_size(store, record)
    return {"promoted": True, "entry_id": entry.entry_id, "family16": str(fam["key16"]), "sizes": record.sizes}


def _won_where_tuned(speed: dict[str, Any], cfg: Config, device: str) -> tuple[bool, str]:
    """Whether a region entry's own speed record says it wins at its sizes: timed past the margin, gate passed.

    A tuner's winner always does; an entry added by hand (``cache add``) may not. On the CPU nothing is
    timed, and any verified kernel counts, as everywhere under the interpreter.
    """
    speedup, gate = speed.get("speedup"), dict(speed.get("graph_ab") or {})
    if device != "cuda":
        return True, "the sizes it was tuned at: verified (not timed on the CPU)"
    if not isinstance(speedup, (int, float)):
        return False, "the sizes it was tuned at: never timed there"
    if speedup < 1.0 + cfg.speed_margin:
        return False, f"the sizes it was tuned at: {speedup:.2f}x, under the {cfg.speed_margin:.0%} margin"
    if gate.get("measured") and not gate.get("passed"):
        return False, f"the sizes it was tuned at: {speedup:.2f}x, but {gate.get('note', 'it slows its graph')}"
    return True, f"the sizes it was tuned at: {speedup:.2f}x, its own timing and in-graph gate"


def adopt(store: Any, device: str) -> list[PendingRegion]:
    """Pending regions for the LLM that their family's kernel could serve now: recorded as family pending.

    A region compiled before its family had a kernel (before ``convert`` promoted one, in the same
    ``tune --pending``) was recorded for the LLM. Once the family has an entry, the region is re-recorded
    pending with "timing needed at this size", so ``extend`` verifies and times that kernel there instead
    of asking an LLM for another. Where a record of this GPU says the family's kernel was verified at the
    region's sizes, timing decided, as at a compile: won (served at the next compile) or lost (stays with
    Inductor, nothing to tune), so the region is resolved. Left for the LLM: regions where the kernel was
    wrong. Left as they are: family files, and families of dynamic sizes.
    """
    sized = getattr(store, "size_record", None)
    adopted = []
    for rec in store.pending():
        if rec.family or sized is None or not Path(rec.region_path).is_file():
            continue
        try:
            side = regionfile.read_sidecar(rec.region_path, optional=True)
        except UsageError:
            continue
        fam = side.family or {}
        sizes = fam.get("symbols") or {}
        if (side.key_fields or {}).get("family") or not all(type(v) is int for v in sizes.values()):
            continue
        entry = store.lookup(str(fam.get("key", "")))
        if entry is None or not sizes:
            continue
        mode = baseline_mode(rec.region_path)
        record = sized(entry.entry_id, _versions(device)["gpu"], mode, sizes)
        if record is not None:
            if record.verified:
                store.resolve_pending(rec.key)
            continue
        family = {"key": str(fam["key"]), "entry_id": entry.entry_id, "sizes": dict(sizes), "inductor_mode": mode}
        rec = dataclasses.replace(rec, family={**family, "reason": TIMING_NEEDED})
        store.add_pending(rec)
        adopted.append(rec)
    return adopted


def family_pending(store: Any) -> list[PendingRegion]:
    """Pending regions that a family entry could serve once timed at their sizes, the cheapest first: one
    region at a huge size (minutes of host work per draw) cannot take a run's time from the others."""
    found = [r for r in store.pending() if r.family and Path(r.region_path).is_file()]
    return sorted(found, key=lambda r: (r.est_us, r.key))


def extend(rec: PendingRegion, store: Any, cfg: Config, device: str, verifier: Verifier) -> Extension:
    """Verify, time and gate a family's kernel at one pending region's sizes; record the outcome (module doc)."""
    fam = dict(rec.family or {})
    sizes = {k: int(v) for k, v in dict(fam.get("sizes") or {}).items()}
    key16, family16 = rec.key[:16], str(fam.get("key", ""))[:16]
    entry = store.lookup(str(fam.get("key", "")))
    if entry is None:  # revoked or removed since: the region is tuned as any other miss
        store.add_pending(dataclasses.replace(rec, family=None))
        return Extension(key16, family16, sizes, "no family entry", message="the family's entry is no longer served")
    mode = str(fam.get("inductor_mode") or baseline_mode(rec.region_path))  # the compile's, per size
    small = fam.get(HOST_MEMORY.removeprefix(HARNESS))
    if (
        small
        and small.get("needed") is not None
        and (HOST.capacity or 0) <= int(small.get("budget") or 0)
        and region_build_bytes(rec.region_path) >= int(small["needed"])
    ):
        # This host once could not build the region's draws; a host no larger cannot either, unless a draw's
        # estimate has shrunk since (a leaner build, or a note from before estimates were kept): no device time
        # spent on it again. Still no verdict: it stays pending, for a host with more memory.
        why = f"skipped on this host (its budget is no larger than the one that failed): {small.get('why', '')}"
        return Extension(key16, family16, sizes, HOST_MEMORY, message=why)
    out = verify_candidate(against(verifier, mode), rec.region_path, entry.kernel_source, cfg, None)
    if is_harness(out["outcome"]):  # judged nothing: the region stays pending, for the next run
        if out["outcome"] == HOST_MEMORY and HOST.capacity:
            note = {"budget": HOST.capacity, "needed": region_build_bytes(rec.region_path), "why": out["message"][:400]}
            store.add_pending(dataclasses.replace(rec, family={**fam, HOST_MEMORY.removeprefix(HARNESS): note}))
        return Extension(key16, family16, sizes, out["outcome"], message=out["message"])
    verified = bool(out["accepted"])
    won = out["outcome"] == "ok"
    gate: dict[str, Any] = {}
    why = "verified and timed at these sizes" if verified else f"{out['outcome']}: {out['message'][:300]}"
    if won:
        gate = in_graph_gate(key16, _as_region_entry(entry, rec.region_path), cfg, device)
        if not gate.get("passed") and not gate.get("measured"):
            # the gate could not run (its child failed, timed out, found no graph): no verdict on the kernel,
            # so no record; the region stays pending and the next run gates it again
            return Extension(key16, family16, sizes, UNGATED, out.get("speedup"), message=str(gate.get("note")))
        won = bool(gate.get("passed"))
        why = f"{why}; in-graph gate: {gate.get('note', '')}"
    elif verified:
        why = f"{why}; slower than Inductor by the margin ({out.get('speedup') or 0:.2f}x)"
    record = SizeRecord(
        entry_id=entry.entry_id,
        gpu=_versions(device)["gpu"],
        inductor_mode=mode,
        sizes=sizes,
        verified=verified,
        won=won,
        speedup=out.get("speedup"),
        candidate_us=None if out.get("candidate_ms") is None else 1e3 * out["candidate_ms"],
        inductor_us=None if out.get("inductor_ms") is None else 1e3 * out["inductor_ms"],
        graph_ab=gate,
        why=why,
        versions=_versions(device),
    )
    _put_size(store, record)
    if verified:  # won or lost, timing settled it
        store.resolve_pending(rec.key)
    else:  # no verified kernel at these sizes: the region goes to the LLM as any other miss
        store.add_pending(dataclasses.replace(rec, family=None))
    return Extension(
        key16, family16, sizes, _outcome(won, verified, out, gate), out.get("speedup"), record, out["message"]
    )


def _outcome(won: bool, verified: bool, out: dict[str, Any], gate: dict[str, Any]) -> str:
    """won | wrong: <reason> | slower (than Inductor by the margin) | slows_graph (the gate measured it).

    A gate that could not run is no outcome of these: ``extend`` keeps the region pending (``UNGATED``).
    """
    if won:
        return "won"
    if not verified:
        return f"wrong: {out['outcome']}"
    return "slower" if out["outcome"] != "ok" else "slows_graph"


def _as_region_entry(entry: Entry, region_path: str | Path) -> Entry:
    """The family kernel keyed as the region it is gated in: the gate finds regions by their exact key."""
    region = read_region(region_path)
    meta = region.sidecar.to_dict()
    return dataclasses.replace(
        entry,
        key=str(meta["key"]),
        key_fields=dict(meta.get("key_fields", {})),
        region_source=region.source,
        region_meta=meta,
    )


def convert(store: Any, cfg: Config, device: str, verifier: Verifier) -> list[dict[str, Any]]:
    """Promote the served region entries that predate families (module doc); returns what each promotion did."""
    from llm_inductor.cache.key import KernelKey
    from llm_inductor.passes.rebuild import KeyGraphError, rebuild

    regions = cfg.cache_path / "regions"
    refused_path = regionfile.family_dir(regions) / "refused.json"
    refused = _read_json(refused_path)
    done = []
    for entry in _served(store):
        if entry.key_fields.get("family") or entry.entry_id in refused:
            continue
        try:
            key = KernelKey.from_dict(entry.key_fields)
            if any(s.startswith("s") for spec in key.inputs for s in spec.shape):
                continue  # compiled with dynamic shapes: its symbols need a recorded region's sizes
            info = rebuild(key, {})  # the key's own text, checked against its digest: never the entry's file
        except (KeyGraphError, ValueError, KeyError, TypeError) as e:
            log.info("llm_inductor: entry %s not converted to a family: %s", entry.entry_id[:24], e)
            continue
        if info.family is None or store.lookup(info.family.digest) is not None:
            continue
        path = regionfile.script_path(regions, info.key16)
        if not path.is_file():
            info.write(regions)
        if not regionfile.script_path(regionfile.family_dir(regions), info.family.key16).is_file():
            info.family.write(regionfile.family_dir(regions))
        result = promote(path, entry, store, cfg, device, verifier)
        done.append({"entry_id": entry.entry_id, **result})
        if not result.get("promoted") and not result.get("harness"):
            refused[entry.entry_id] = result.get("why", "")
            _write_json(refused_path, refused)
    return done


def _served(store: Any) -> list[Entry]:
    listings = getattr(store, "listings", None)
    if listings is not None:
        return [r.entry for r in listings() if r.entry is not None and r.verdict.servable]
    entries = getattr(store, "entries", None)
    return [e for e in entries() if e.status == SERVED] if entries is not None else []


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(data, sort_keys=True, indent=1))
    except OSError as e:  # costs a second verification next time, nothing else
        log.info("llm_inductor: could not write %s: %s", path, e)
