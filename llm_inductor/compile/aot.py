"""AOTAutograd's cache, kept on and keyed on the kernel set the region pass would serve.

On an AOTAutograd cache hit torch replays the compiled forward and backward without
calling ``inner_compile``, so the region pass does not run. Serving that entry is
right only if the pass would rewrite the graphs exactly as it did when the entry was
saved. The pass's result is a function of the ATen graphs (AOTAutograd's key covers
what they are made from), of our settings and of what the store serves. So a token
made of the settings and the store's generation (``KernelStore.generation``: it
changes with every put, delete and revocation, and with packs and key files on disk)
goes into AOTAutograd's key, and a change to either is a miss.

How the token reaches the key: AOTAutograd hashes the Dynamo graph module by
pickling it, ``__dict__`` included, so an attribute set on it changes AOTAutograd's
key and nothing else. Inductor's FX-graph key is computed on the ATen graphs, which
never carry it, so it still follows only the rewritten graph (``dynamo_backend``).
``tests/compile/test_aot_cache.py`` checks that mechanism on the torch CI runs.

Without a token (a store that cannot name its generation, an unreadable database,
tune mode, ``llm-inductor regions`` exporting, a graph hook) the compile runs with the
cache off, as before. On a hit, the counters and region reports the pass produced
when the entry was saved are replayed from a small record in the cache directory,
so ``llm_inductor.stats()`` counts a hit whichever cache served the graph.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx

import llm_inductor.compile.state as _state
from llm_inductor._files import atomic_write
from llm_inductor.config import Config

log = logging.getLogger(__name__)

ATTR = "_llm_inductor_aot_token"
# Counters the pass bumps at compile time; kernel_calls and runtime_fallbacks happen at run time.
COMPILE_COUNTERS = (
    "graphs",
    "regions",
    "hot",
    "hits",
    "misses",
    "pending",
    "substituted",
    "fallbacks",
    "bypassed",
    "tuned",
)
_MEMORY_RECORDS = 512


def start(cfg: Config, gm: fx.GraphModule, example_inputs: Sequence[Any]) -> Record | None:
    """Key this compile's AOTAutograd cache entry on our token; None: compile with that cache off.

    Never raises: anything unexpected here only costs the cache, as before it existed.
    """
    try:
        path = Record.path_for(cfg, gm, example_inputs)
        store = _state.store(cfg)
        base = base_token(cfg, store)
        if base is None:
            return None
        ranges = _symbol_ranges(gm)
        if ranges:  # a dynamic graph is served by its guards' ranges (region_pass._admitted): never another's
            base = _hash(base, f"ranges {ranges}")
        tok = family_token(base, store, path)
        record = Record(cfg, tok, gm, example_inputs, base)
        setattr(gm, ATTR, tok)
        return record
    except Exception as e:
        log.info("llm_inductor: AOTAutograd cache off for this graph (%s: %s)", type(e).__name__, e)
        return None


def token(cfg: Config, store: Any, record: Path | None = None) -> str | None:
    """The part of AOTAutograd's key that follows our settings and the store; None: no cache.

    ``record``: this graph's compile record, whose size-record lookups the token follows (``family_token``).
    """
    base = base_token(cfg, store)
    return None if base is None else family_token(base, store, record)


def base_token(cfg: Config, store: Any) -> str | None:
    """Settings, versions and the store's generation: everything but the size records."""
    if cfg.mode == "tune" or cfg.tune or _state.export_dir or _state.graph_hook is not None:
        return None  # the pass must run: it tunes, or writes files, or a tool watches it
    generation = getattr(store, "generation", None)
    gen = generation() if generation is not None else None  # start() turns an exception into no cache
    if gen is None:
        return None
    from llm_inductor._version import __version__
    from llm_inductor.cache.key import KEY_SCHEMA

    settings = json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str)
    # Entries are served per GPU model (trust); a team's shared Inductor cache may span several.
    gpu = torch.cuda.get_device_name() if torch.cuda.is_initialized() else "-"
    # A graph compiled under another key schema names entries of that schema: never replay it.
    parts = (gen, settings, __version__, f"key schema {KEY_SCHEMA}", os.environ.get("TRITON_INTERPRET", ""), gpu)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def family_token(base: str, store: Any, record: Path | None) -> str:
    """The token, following the size records (cache/sizes.py) this graph's family entries looked up.

    Size records are not in the store's generation, so that timing a family at one size does not
    invalidate every AOTAutograd entry of a team. The graph's compile record lists the records its
    pass looked up and what it found. While the same lookups would find the same now, under the same
    base, the token is the one that compile used (an AOTAutograd hit); when any answer changed, it is
    a new one (a miss, and a compile that records the new answers). A graph with no record under this
    base follows every size record (``sizes_generation``): its compile cannot know which it will look up.
    """
    sized = getattr(store, "size_record", None)
    if sized is None:
        return base
    generation = getattr(store, "sizes_generation", None)
    sizes = generation() if generation is not None else None  # also drops what the store remembered, if stale
    data = _recall(record) if record is not None else None
    if data is None or data.get("base") != base or not isinstance(data.get("token"), str):
        return _hash(base, f"sizes {sizes or '?'}")
    seen = _family_lookups(data)
    now = {lookup: _answer(store, lookup) for lookup in seen}
    if now == seen:
        return data["token"]
    return _hash(base, "family", *(f"{k} {v}" for k, v in sorted(now.items())))


def _symbol_ranges(gm: fx.GraphModule) -> str:
    """The value ranges of the graph's input symbols: one graph compiled under other bounds is another compile."""
    found: set[str] = set()
    for n in gm.graph.find_nodes(op="placeholder"):
        v = n.meta.get("example_value", n.meta.get("val"))
        dims = [*v.shape, *v.stride()] if isinstance(v, torch.Tensor) else [v]
        for d in dims:
            if isinstance(d, torch.SymInt):
                env = d.node.shape_env
                found.update(f"{sym}:{env.var_to_range.get(sym)}" for sym in d.node.expr.free_symbols)
    return ",".join(sorted(found))


def _hash(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _family_lookups(data: dict[str, Any]) -> dict[str, str]:
    """The size records a compile's pass looked up (``RegionRow.family_lookup``) and what it found."""
    return {
        row["family_lookup"]: str(row.get("family_answer") or "-")
        for p in data.get("passes", [])
        for r in p.get("reports", [])
        for row in r.get("regions", [])
        if isinstance(row, dict) and isinstance(row.get("family_lookup"), str)
    }


def _answer(store: Any, lookup: str) -> str:
    from llm_inductor.cache.sizes import RANGE_PREFIX, judge_range, parse_bucket, parse_range

    entry_id, gpu, mode, bucket = lookup.split("|")
    if bucket.startswith(RANGE_PREFIX):  # a graph compiled with dynamic shapes: every record in its range
        return judge_range(store, entry_id, gpu, mode, parse_range(bucket)).answer
    rec = store.size_record(entry_id, gpu, mode, parse_bucket(bucket))
    return "-" if rec is None else rec.content_hash


class Record:
    """What the pass did in one compile: per inner compile, its counter deltas and region reports."""

    def __init__(
        self, cfg: Config, tok: str, gm: fx.GraphModule, example_inputs: Sequence[Any], base: str | None = None
    ) -> None:
        self.token, self.base = tok, base
        self.passes: list[dict[str, Any]] = []
        self.path = self.path_for(cfg, gm, example_inputs)

    @staticmethod
    def path_for(cfg: Config, gm: fx.GraphModule, example_inputs: Sequence[Any]) -> Path:
        return cfg.cache_path / "compiles" / f"{_graph_id(gm, example_inputs, cfg)}.json"

    def add(self, counters: Counter[str], reports: list[_state.GraphReport]) -> None:
        self.passes.append(
            {
                "counters": {k: counters[k] for k in COMPILE_COUNTERS if counters[k]},
                "reports": [_state.as_dict(r) for r in reports],
            }
        )
        _remember(self)

    def replay(self) -> bool:
        """Count what the pass counted when this entry was saved; False when no record matches."""
        data = _recall(self.path)
        try:
            if data is None or data.get("token") != self.token:
                raise LookupError("no record of the region pass for this token")
            counts = [(k, int(v)) for p in data["passes"] for k, v in p["counters"].items() if k in COMPILE_COUNTERS]
            reports = [
                _state.GraphReport(r["kind"], [_state.RegionRow(**row) for row in r["regions"]], r["substituted"])
                for p in data["passes"]
                for r in p["reports"]
            ]
        except (LookupError, TypeError, ValueError, AttributeError) as e:  # a damaged record costs counts only
            log.info("llm_inductor: AOTAutograd cache hit for %s, counters not replayed: %s", self.path.name, e)
            return False
        for k, v in counts:
            _state.bump(k, v)
        _state.reports.extend(reports)
        try:  # a record in use stays young for `cache prune --older-than`
            os.utime(self.path)
        except OSError:
            pass
        return True


def _graph_id(gm: fx.GraphModule, example_inputs: Sequence[Any], cfg: Config) -> str:
    """Names a compile's record: the Dynamo graph, its inputs and the modes it runs under.

    Coarser than AOTAutograd's key; a collision costs a wrong count, never a wrong kernel
    (the record is replayed only when its token matches, and the token guards the kernels).
    """
    h = hashlib.sha256(gm.code.encode())
    for x in example_inputs:
        if isinstance(x, torch.Tensor):
            h.update(f"{x.dtype}{tuple(x.shape)}{x.stride()}{x.device.type}{x.requires_grad}|".encode())
        else:
            h.update(f"{type(x).__name__}:{x}|".encode())
    autocast = [(d, torch.get_autocast_dtype(d)) for d in ("cpu", "cuda") if torch.is_autocast_enabled(d)]
    h.update(f"{torch.is_grad_enabled()}{autocast}{cfg.mode}".encode())
    return h.hexdigest()[:32]


_lock = threading.Lock()
_records: dict[Path, dict[str, Any]] = {}


def _remember(rec: Record) -> None:
    data = {"token": rec.token, "base": rec.base, "passes": rec.passes}
    with _lock:
        if len(_records) >= _MEMORY_RECORDS:
            _records.clear()
        _records[rec.path] = data
    try:
        rec.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(rec.path, json.dumps(data, sort_keys=True))
    except OSError as e:  # counts only: the next process misses AOTAutograd's cache replay, nothing else
        log.info("llm_inductor: could not write %s: %s", rec.path, e)


def _recall(path: Path) -> dict[str, Any] | None:
    with _lock:
        data = _records.get(path)
    if data is not None:
        return data
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def prune_records(cache_path: Path, older_than_s: float, dry_run: bool = False) -> int:
    """Remove compile records not written or replayed for older_than_s seconds; return how many.

    A removed record costs counts only: an AOTAutograd hit on its graph then replays nothing.
    """
    cutoff, n = time.time() - older_than_s, 0
    for path in (cache_path / "compiles").glob("*.json"):
        try:
            if path.stat().st_mtime < cutoff:
                if not dry_run:
                    path.unlink()
                n += 1
        except OSError:  # gone meanwhile, or not ours to remove: leave it
            continue
    return n


def aot_hits() -> int:
    from torch._dynamo.utils import counters

    return counters["aot_autograd"]["autograd_cache_hit"]
