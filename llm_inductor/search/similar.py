"""Retrieval: verified winners for the most similar regions, as worked examples in a prompt.

KernelEvolve-style retrieval-augmented prompting. Similar means the same ops (or
the same anchor) at other shapes or dtypes. Candidates come from the winners index
that ``tune`` appends to (``<cache_dir>/search/winners.jsonl``) and from the store
itself where it can list entries; every example is fetched back through
``store.get``, so only entries the store would serve (trusted, this GPU) are shown.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llm_inductor.config import Config
from llm_inductor.passes.regionfile import Sidecar

MAX_EXAMPLES = 2


def index_path(cfg: Config) -> Path:
    return cfg.cache_path / "search" / "winners.jsonl"


def _shapes(meta: dict[str, Any]) -> str:
    return " ".join(f"{s['dtype'].replace('torch.', '')}[{','.join(s['shape'])}]" for s in meta.get("inputs", []))


def index_row(entry: Any) -> dict[str, Any]:
    meta = entry.region_meta
    speed = next(iter(entry.speed.values()), {}) if entry.speed else {}
    return {
        "key": entry.key,
        "entry_id": entry.entry_id,
        "ops": list(meta.get("ops", [])),
        "anchor": meta.get("anchor"),
        "shapes": _shapes(meta),
        "speedup": speed.get("speedup"),
        "gpu": next(iter(entry.speed), None) if entry.speed else None,
        "status": entry.status,
    }


def add_to_index(entry: Any, cfg: Config) -> None:
    path = index_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(index_row(entry)) + "\n")


def _indexed(cfg: Config) -> list[dict[str, Any]]:
    path = index_path(cfg)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a torn last line from a killed run
    return rows


def similarity(a: dict[str, Any], b: dict[str, Any]) -> float:
    """3: same ops; 2: same anchor; else the Jaccard overlap of the op multisets (0..1)."""
    ca, cb = Counter(a.get("ops", [])), Counter(b.get("ops", []))
    if ca and ca == cb:
        return 3.0
    if a.get("anchor") and a.get("anchor") == b.get("anchor"):
        return 2.0
    union = sum((ca | cb).values())
    return sum((ca & cb).values()) / union if union else 0.0


def similar_winners(side: Sidecar, store: Any, cfg: Config, k: int = MAX_EXAMPLES) -> list[dict[str, Any]]:
    """Served winners for regions like the one in this sidecar, most similar first, with their kernels."""
    me = {"ops": list(side.ops or ()), "anchor": side.anchor}
    rows: Iterable[dict[str, Any]] = _indexed(cfg)
    listing = getattr(store, "entries", None)
    if callable(listing):
        rows = [*rows, *(index_row(e) for e in listing())]
    best: dict[str, tuple[float, dict[str, Any]]] = {}
    for row in rows:
        if row.get("key") == side.key or row.get("status", "served") != "served":
            continue
        score = similarity(me, row)
        if score >= 0.5 and (row["key"] not in best or best[row["key"]][0] < score):
            best[row["key"]] = (score, row)
    ranked = sorted(best.values(), key=lambda sr: (-sr[0], -(sr[1].get("speedup") or 0.0)))
    out = []
    for _, row in ranked:
        entry = store.get(row["entry_id"])
        if entry is None:
            continue  # not servable here (untrusted, other GPU, revoked)
        out.append({**row, "key16": row["key"][:16], "kernel_source": entry.kernel_source})
        if len(out) == k:
            break
    return out
