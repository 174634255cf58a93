"""A region's winner → a cache entry → the store, after the in-graph gate.

The entry carries the kernel and the region file, the verifier's record, speed per
GPU model (standalone and in-graph), and provenance: provider, model, prompt hash,
tokens (real or estimated), cost and time of the whole search. Signing is the
store's business. Only a ``served`` entry resolves the region's pending record.
"""

from __future__ import annotations

import logging
from typing import Any

from llm_inductor.cache.entry import Entry
from llm_inductor.config import Config
from llm_inductor.search.context import RegionContext
from llm_inductor.search.gate import SERVED, in_graph_gate, status_for
from llm_inductor.search.llm.prompts import PROMPT_VERSION
from llm_inductor.search.search_state import SearchState
from llm_inductor.search.similar import add_to_index

log = logging.getLogger(__name__)


def versions(device: str) -> dict[str, Any]:
    """{"torch", "triton", "gpu"} as the store's trust check reads them ("cpu" for CPU entries)."""
    from llm_inductor.cache.trust import current_versions

    return dict(current_versions(device))


def _us(ms: float | None) -> float | None:
    return None if ms is None else 1e3 * ms


def build_entry(
    ctx: RegionContext,
    state: SearchState,
    w: dict[str, Any],
    provider: str,
    model: str,
    device: str,
    gate: dict[str, Any] | None = None,
) -> Entry:
    ver = w.get("verification") or {}
    v = versions(device)
    speed = {  # cache/entry.py's speed record, per GPU model
        "speedup": w.get("speedup"),
        "candidate_us": _us(w.get("candidate_ms")),
        "inductor_us": _us(w.get("inductor_ms")),
        "roofline_pct": w.get("roofline_pct"),
        "floor_us": _us(ctx.floor_ms),
        "graph_ab": gate or {},
        "timings": (ver.get("timings") or {}),
        "inductor_code": ctx.baseline.get("code"),  # shown beside the winner by `llm-inductor report`
    }
    s = state.spend
    meta = ctx.sidecar.to_dict()  # the sidecar as read: the entry's region_meta
    return Entry(
        key=ctx.key,
        key_fields=meta.get("key_fields", {}),
        kernel_source=w["code"],
        region_source=ctx.source,
        region_meta=meta,
        verification=ver,
        speed={v["gpu"]: speed},
        envelope=dict(ver.get("envelope") or {}),
        provenance={
            "provider": provider,
            "model": model,
            "prompt_hash": w["prompt_hash"],
            "prompt_version": PROMPT_VERSION,
            "strategy": state.strategy,
            "custom_id": w["custom_id"],
            "tokens_in": s.tokens_in,
            "tokens_out": s.tokens_out,
            "tokens_estimated": s.tokens_estimated,
            "cost": round(s.dollars, 6),
            "seconds": round(s.seconds, 3),
            "calls": s.calls,
            "rounds": state.round,
        },
        versions=v,
        status="served",
    )


def store_winner(
    ctx: RegionContext, state: SearchState, store: Any, cfg: Config, provider: str, model: str, device: str
) -> dict[str, Any] | None:
    """Gate and store the region's winner; returns {entry_id, status, gate} or None without a winner."""
    w = state.winner()
    if w is None:
        return None
    probe = build_entry(ctx, state, w, provider, model, device)
    gate = in_graph_gate(ctx.key16, probe, cfg, device)
    entry = build_entry(ctx, state, w, provider, model, device, gate)
    entry.status = status_for(gate)
    store.put(entry)
    if entry.status == SERVED:
        store.resolve_pending(ctx.key)
    else:
        log.warning("llm_inductor: region %s winner stored as %s: %s", ctx.key16, entry.status, gate.get("note"))
    add_to_index(entry, cfg)
    return {"entry_id": entry.entry_id, "status": entry.status, "gate": gate}
