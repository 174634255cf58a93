"""Process-wide state: the active config, the store, counters and region reports."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from llm_inductor.cache.store import KernelStore, MemoryStore
from llm_inductor.config import Config

_lock = threading.Lock()
_config: Config | None = None
_stores: dict[tuple, KernelStore] = {}
_store_override: KernelStore | None = None

counters: Counter[str] = Counter()
pass_seconds = [0.0]  # wall time spent in the region pass, all graphs (the compile overhead we add)


@dataclass
class RegionRow:
    key16: str
    ops: list[str]
    shapes: list[str]
    anchor: str | None
    est_us: float
    share: float
    hot: bool
    status: str  # hit | miss | pending | cold | bypass: reason | fallback: reason
    region_path: str | None = None
    key: str | None = None  # full digest
    family: str | None = None  # the family key's digest (passes/family.py), where the region has one
    family_lookup: str | None = None  # the size record looked up for its family entry (cache/sizes.record_key)
    family_answer: str | None = None  # what that lookup found: the record's content hash, or "-" (compile/aot.py)
    core: bool = False  # keyed without the views of its inputs (passes/partition.core): key16 and family are the core's


@dataclass
class GraphReport:
    kind: str  # forward | backward | inference
    regions: list[RegionRow] = field(default_factory=list)
    substituted: int = 0


reports: list[GraphReport] = []
export_dir: str | None = None  # `llm-inductor regions --export DIR`: write every keyed region here
# Called as graph_hook(gm, kind, infos) with the graph before any rewrite (tests, tools).
graph_hook: Any = None


@contextmanager
def overridden(**values: Any) -> Iterator[None]:
    """Set ``export_dir`` and/or ``graph_hook`` for the ``with`` block, and restore them after it, however it ends."""
    unknown = set(values) - {"export_dir", "graph_hook"}
    if unknown:
        raise TypeError(f"overridden() sets export_dir and graph_hook only, not {', '.join(sorted(unknown))}")
    glb = globals()
    old = {name: glb[name] for name in values}
    glb.update(values)
    try:
        yield
    finally:
        glb.update(old)


def config() -> Config:
    global _config
    if _config is None:
        _config = Config.load()[0]
    return _config


def set_config(cfg: Config | None) -> None:
    global _config
    _config = cfg


def store(cfg: Config | None = None) -> KernelStore:
    """The store for this config: an override (tests), else the persistent tiers, else memory."""
    if _store_override is not None:
        return _store_override
    cfg = cfg or config()
    ident = (cfg.cache_dir, cfg.redis_url, cfg.packs, cfg.trusted_keys)
    with _lock:
        if ident not in _stores:
            _stores[ident] = _open_store(cfg)
        return _stores[ident]


def _open_store(cfg: Config) -> KernelStore:
    try:
        from llm_inductor.cache.tiered import open_store
    except ImportError:  # the persistent cache is optional at this layer
        return MemoryStore()
    return open_store(cfg)


def set_store(s: KernelStore | None) -> None:
    """Use this store for every lookup in the process (tests, embedding); None restores the default."""
    global _store_override
    _store_override = s


def stats() -> dict[str, int]:
    keys = (
        "graphs",
        "regions",
        "hot",
        "hits",
        "misses",
        "pending",
        "substituted",
        "fallbacks",
        "bypassed",
        "kernel_calls",
        "runtime_fallbacks",
        "tuned",
    )
    return {k: counters.get(k, 0) for k in keys}


def reset() -> None:
    from llm_inductor.passes import region  # the family keys' share of the pass's time, kept beside them

    counters.clear()
    pass_seconds[0] = 0.0
    region.FAMILY_SECONDS[0] = 0.0
    reports.clear()


def bump(name: str, n: int = 1) -> None:
    counters[name] += n


def as_dict(r: GraphReport) -> dict[str, Any]:
    return {"kind": r.kind, "substituted": r.substituted, "regions": [row.__dict__ for row in r.regions]}
