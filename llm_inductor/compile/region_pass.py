"""The region pass: one ATen graph → regions → keys → lookups → rewritten graph.

It runs on every forward, backward and inference graph before Inductor computes
its FX-cache key, so the key changes with the set of substituted kernels and the
counters below count on FX-cache hits too. Every stage fails soft: a region that
cannot be handled stays with Inductor, with one warning naming it, the stage and
the reason (or an exception, under ``strict``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx

import llm_inductor.compile.runtime as _runtime
import llm_inductor.compile.state as _state
from llm_inductor._errors import LLMInductorError, RegionBypass, UsageError
from llm_inductor.cache.sizes import (
    HOST_VARIANCE,
    TIMING_NEEDED,
    graph_faster,
    host_bound,
    host_risk,
    judge_range,
    range_text,
)
from llm_inductor.cache.sizes import record_key as size_record_key
from llm_inductor.cache.store import PendingRegion
from llm_inductor.compile.ranks import tune_once
from llm_inductor.config import Config
from llm_inductor.passes import regionfile
from llm_inductor.passes.cost import device_spec, rank
from llm_inductor.passes.partition import Region, core, partition
from llm_inductor.passes.region import RegionInfo, describe
from llm_inductor.passes.rewrite import copy_graph, finish, substitute

log = logging.getLogger(__name__)


class StageFailure(LLMInductorError):
    def __init__(self, stage: str, where: str, cause: BaseException) -> None:
        super().__init__(f"llm_inductor: {where} failed at stage '{stage}': {type(cause).__name__}: {cause}")
        self.stage = stage


def fail(cfg: Config, stage: str, where: str, cause: BaseException) -> None:
    """Record a fallback to Inductor, or raise under strict."""
    _state.bump("fallbacks")
    err = StageFailure(stage, where, cause)
    if cfg.strict:
        raise err from cause
    log.warning("%s; it stays with Inductor", err)


def _where(region: Region, info: RegionInfo | None = None) -> str:
    name = info.key16 if info is not None else f"#{region.index}"
    return f"region {name} ({', '.join(region.ops[:6])}{', ...' if len(region.ops) > 6 else ''})"


_warned_interpreter = False


def _substitutable(device: torch.device, cfg: Config) -> bool:
    global _warned_interpreter
    if device.type == "cuda":
        return True
    if device.type != "cpu" or not cfg.interpret:
        return False  # CPU graphs stay entirely with Inductor: never slower than backend="inductor"
    if _runtime.interpreter_ready():
        return True
    if not _warned_interpreter:
        _warned_interpreter = True
        log.warning(
            "llm_inductor: interpret mode is on but Triton was imported before it could switch to its "
            "interpreter; set TRITON_INTERPRET=1 in the environment too. CPU regions stay with Inductor."
        )
    return False


def _described(region: Region) -> RegionInfo | Exception:
    try:
        return describe(region)
    except Exception as e:  # a bypass, or a failure: the region's row says which (_GraphPass.region)
        return e


def _hot_by_key(ranked: list[tuple[Region, Any, float, bool]], cfg: Config) -> list[tuple]:
    """[(region, cost, share, hot, RegionInfo or the exception describing it raised)], in rank order.

    A region is hot when all its occurrences in the graph together reach the hot threshold: one kernel
    serves every layer of a model, so a region repeated in 12 layers at 4% each is worth 48% of the graph
    (BERT-base's attention). The floor of ``min_region_us`` stays per occurrence: it is about one launch.
    """
    described = [(*row, _described(row[0])) for row in ranked]
    summed: dict[str, float] = {}
    for _, _, share, _, info in described:
        if isinstance(info, RegionInfo):
            summed[info.digest] = summed.get(info.digest, 0.0) + share
    return [
        (region, cost, share, hot or (summed[info.digest] >= cfg.hot_threshold and cost.us >= cfg.min_region_us), info)
        if isinstance(info, RegionInfo)
        else (region, cost, share, hot, info)
        for region, cost, share, hot, info in described
    ]


def run(gm: fx.GraphModule, kind: str, cfg: Config) -> fx.GraphModule | None:
    """Return a rewritten copy of gm, or None to compile gm unchanged."""
    return _GraphPass(gm, kind, cfg).run()


class _GraphPass:
    """One graph through the stages: partition → rank → key → lookup → (pending | online tune) → rewrite."""

    def __init__(self, gm: fx.GraphModule, kind: str, cfg: Config) -> None:
        self.gm, self.kind, self.cfg = gm, kind, cfg
        self.report = _state.GraphReport(kind)
        self.store = _state.store(cfg)
        self.hits: list[tuple[RegionInfo, Any]] = []
        self.infos: list[RegionInfo] = []
        self.hot_misses: list[tuple[RegionInfo, _state.RegionRow]] = []
        self.pending: list[RegionInfo] = []

    def run(self) -> fx.GraphModule | None:
        cfg, kind = self.cfg, self.kind
        _state.reports.append(self.report)
        _state.bump("graphs")
        try:
            regions = partition(self.gm)
        except Exception as e:
            fail(cfg, "partition", f"{kind} graph", e)
            return None
        if not regions:
            return None
        self.device = regions[0].inputs[0].meta["val"].device
        try:
            ranked = rank(regions, device_spec(self.device), cfg.hot_threshold, cfg.min_region_us)
        except Exception as e:
            fail(cfg, "cost", f"{kind} graph", e)
            return None
        for region, cost, share, hot, described in _hot_by_key(ranked, cfg):
            self.region(region, cost, share, hot, described)
        if self.pending:
            try:  # the in-graph gate of a later tuning run times the region inside this graph
                _record_graph(self.gm, self.pending, cfg)
            except OSError as e:
                _cannot_record(cfg, e)
            except Exception as e:
                fail(cfg, "pending", f"{kind} graph file", e)
        if self.hot_misses and wants_tuning(cfg) and _substitutable(self.device, cfg):
            self.hits += _tune_online(self.hot_misses, self.store, cfg)
        if _state.graph_hook is not None:
            _state.graph_hook(self.gm, kind, self.infos)
        return self.rewrite() if self.hits else None

    def region(self, region: Region, cost: Any, share: float, hot: bool, described: RegionInfo | Exception) -> None:
        cfg = self.cfg
        _state.bump("regions")
        _state.bump("hot", hot)
        row = _state.RegionRow(
            "-", region.ops, [_shape(n) for n in region.inputs], region.anchor, cost.us, share, hot, "cold"
        )
        self.report.regions.append(row)
        if isinstance(described, RegionBypass):
            _state.bump("bypassed")
            row.status = f"bypass: {described}"
            return
        if isinstance(described, Exception):
            fail(cfg, "key", _where(region), described)
            row.status = f"fallback: key: {described}"
            return
        info = described
        info.cost = {"flops": cost.flops, "bytes": cost.bytes, "est_us": cost.us, "share": share, "hot": hot}
        row.key16, row.key = info.key16, info.digest
        row.family = info.family.digest if info.family is not None else None
        self.infos.append(info)
        if _state.export_dir:
            row.region_path = str(info.write(_state.export_dir))
        try:
            entry, row.status, family_pending = self.lookup(info, row)
            inner = self.core(region, info) if entry is None and row.status == "miss" else None
            if inner is not None:
                found = self.lookup(inner, row)
                # the core stands in where it is known, or where it is what a pending record will name
                if found[0] is not None or found[1] != "miss" or (hot and cfg.mode in ("cache", "tune")):
                    info = self.use(inner, info, row)
                    entry, row.status, family_pending = found
        except Exception as e:
            fail(cfg, "lookup", _where(region, info), e)
            row.status = f"fallback: lookup: {e}"
            return
        if entry is None and row.status.startswith((SLOWER_HERE, SLOWER_MODE)):  # timed and lost: nothing to tune
            _state.bump("misses")
            return
        if entry is not None:
            _state.bump("hits")
            exact = entry.key == info.digest
            row.status = "hit" if exact else "hit (family)"
            if cfg.mode != "discover" and _substitutable(self.device, cfg):
                # a family's kernel takes the family's canonical inputs, in its own order
                self.hits.append((info if exact or info.family is None else info.family, entry))
            return
        _state.bump("misses")
        row.status = row.status if row.status.startswith(("family", OTHER_MODE)) else "miss"
        if cfg.mode in ("cache", "tune") and _fixable_miss(self.store, info):
            try:  # `cache verify` verifies that entry at the sizes of a region recorded here, never the entry's
                row.region_path = str(_record_region(info, cfg))
            except OSError as e:
                _cannot_record(cfg, e)
        if not hot:
            return
        self.hot_misses.append((info, row))
        if cfg.mode in ("cache", "tune"):
            try:
                row.region_path = _record_pending(self.store, info, share, cfg, family_pending)
                reason = family_pending["reason"] if family_pending is not None else None
                if reason is None and row.status.startswith(DYNAMIC_FAMILY):  # why the family did not serve it
                    reason = row.status.removeprefix("family: ")
                row.status = "pending" if reason is None else f"pending ({reason})"
                self.pending.append(info)
                _state.bump("pending")
            except OSError as e:
                _cannot_record(cfg, e)
            except Exception as e:
                fail(cfg, "pending", _where(region, info), e)

    def lookup(self, info: RegionInfo, row: _state.RegionRow) -> tuple[Any, str, dict[str, Any] | None]:
        """The entry for the region (its exact key, then its family's), the row's status, the family's pending."""
        entry = self.store.lookup(info.digest)
        if entry is not None:
            return self.gated(entry, info, row)
        if info.family is None:
            return None, "miss", None
        return self.family(info, row)

    def gated(self, entry: Any, info: RegionInfo, row: _state.RegionRow) -> tuple[Any, str, dict[str, Any] | None]:
        """An exact entry is served under the Inductor it was gated against; under another, only where a size
        record says it won against that one (a kernel that beats default Inductor can lose to max-autotune's).

        With no record, the region is pending with "timing needed" for this compile's mode: ``tune --pending``
        verifies, times and gates the entry's kernel under it (no LLM call), as for a family's new size.
        """
        mode = inductor_mode()
        if ((entry.region_meta or {}).get("baseline_inductor_mode") or "default") == mode:
            return entry, "miss", None
        if info.symbols:  # compiled with dynamic shapes: no record at one size could cover the graph's sizes
            return None, f"{OTHER_MODE} {mode} (dynamic shapes)", None
        record = self.size_record(entry, mode, {}, row)
        if record is None:
            return (
                None,
                f"{OTHER_MODE} {mode}",
                _timing_needed(info.digest, entry, {}, mode, f"{TIMING_NEEDED}, under {mode}"),
            )
        if record.servable_here:
            return entry, "miss", None
        if record.verified:
            return None, f"{SLOWER_MODE} {mode} ({_speedup_text(record)})", None
        return None, f"{OTHER_MODE} {mode}: wrong under it ({record.why[:80]})", None

    def core(self, region: Region, info: RegionInfo) -> RegionInfo | None:
        """The region described without its inputs' views (``partition.core``), where it has any.

        It is looked up where the region is unknown, and recorded as pending instead of it: its kernel then
        serves both graphs, the one that views its inputs and the one that does not. A core that cannot be
        described leaves the region as it is.
        """
        inner = core(region)
        if inner is None:
            return None
        try:
            described = describe(inner)
        except Exception as e:  # RegionBypass included: the region's own key stands
            log.debug("llm_inductor: %s: its core without input views has no key (%s)", _where(inner, info), e)
            return None
        described.cost = info.cost
        return described

    def use(self, described: RegionInfo, info: RegionInfo, row: _state.RegionRow) -> RegionInfo:
        """The row and the graph's infos name the core from here on."""
        self.infos[self.infos.index(info)] = described
        row.key16, row.key = described.key16, described.digest
        row.family = described.family.digest if described.family is not None else None
        row.ops, row.shapes = described.ops, [_shape(n) for n in described.inputs]
        row.core = True
        return described

    def family(self, info: RegionInfo, row: _state.RegionRow) -> tuple[Any, str, dict[str, Any] | None]:
        """The region's family entry, where a size record says it won at these sizes (cache/sizes.py).

        Returns (entry to serve or None, the row's status, what a pending record says about the family).
        A family entry without a winning record here is a miss: "timing needed at this size" where no
        record exists (``tune --pending`` extends it by verification and timing, with no LLM call), or
        "slower at this size" where one says it lost (nothing to tune again).
        """
        fam = info.family
        entry = self.store.lookup(fam.digest)
        if entry is None:
            return None, "miss", None
        mode = inductor_mode()
        if info.symbols:
            # Compiled with dynamic shapes: the graph runs at every size its guards admit, so it is served only
            # where records cover every size class of those ranges with a win (cache/sizes.judge_range).
            ranges = _admitted(fam)
            if ranges is None:
                return None, f"family: {DYNAMIC_NOT_SERVED}", None
            gpu = _gpu_model(self.device)
            verdict = judge_range(self.store, entry.entry_id, gpu, mode, ranges)
            row.family_lookup = f"{entry.entry_id}|{gpu}|{mode}|{range_text(ranges)}"
            row.family_answer = verdict.answer
            if verdict.served:
                return entry, "hit (family)", None
            return None, f"family: dynamic shapes: {verdict.why}", None
        record = self.size_record(entry, mode, fam.symbols, row)
        if record is None:
            return None, f"family: {TIMING_NEEDED}", _timing_needed(fam.digest, entry, fam.symbols, mode, TIMING_NEEDED)
        if record.servable_here:
            return entry, "hit (family)", None
        if record.verified:
            return None, f"{SLOWER_HERE} ({_speedup_text(record)})", None
        # Wrong at these sizes: no verified kernel exists here, so the region is tuned as any other miss.
        return None, f"family: wrong at this size ({record.why[:80]})", None

    def size_record(self, entry: Any, mode: str, sizes: dict[str, int], row: _state.RegionRow) -> Any:
        """The size record of ``entry`` at ``sizes`` under ``mode`` on this GPU model, or None. The row names the
        lookup and its answer, so that AOTAutograd's cache token follows the record (``aot.family_token``)."""
        gpu = _gpu_model(self.device)
        sized = getattr(self.store, "size_record", None)
        record = sized(entry.entry_id, gpu, mode, sizes) if sized is not None else None
        row.family_lookup = size_record_key(entry.entry_id, gpu, mode, sizes)
        row.family_answer = "-" if record is None else record.content_hash
        return record

    def rewrite(self) -> fx.GraphModule | None:
        try:
            new_gm, val_map = copy_graph(self.gm)
            for info, entry in self.hits:
                substitute(new_gm, val_map, info, _runtime.register(entry))
            finish(new_gm)
        except Exception as e:
            fail(self.cfg, "rewrite", f"{self.kind} graph ({len(self.hits)} region(s))", e)
            return None
        self.report.substituted = len(self.hits)
        _state.bump("substituted", len(self.hits))
        return new_gm


_warned_unrecorded: set[str] = set()


def _cannot_record(cfg: Config, e: OSError) -> None:
    """A region file that cannot be written (full disk, read-only cache) costs tuning, not the compile: say so once."""
    if str(cfg.cache_path) not in _warned_unrecorded:
        _warned_unrecorded.add(str(cfg.cache_path))
        log.warning(
            "llm_inductor: cannot record regions under %s (%s); the compile goes on, but `llm-inductor tune "
            "--pending` and `cache verify` will not see them. Free space, or point LLM_INDUCTOR_CACHE_DIR at "
            "a writable directory.",
            cfg.cache_path,
            e,
        )


def _fixable_miss(store: Any, info: RegionInfo) -> bool:
    """Whether the store holds an entry for this region that `llm-inductor cache verify` could make servable.

    That includes an entry made under key schema 1, found by the region's schema-1 digest:
    resolving it logs the advice to run `cache verify`, which migrates it to the current key.
    """
    fixable = getattr(store, "fixable", None)
    return fixable is not None and (fixable(info.digest) or fixable(info.key.legacy_digest))


def _shape(n: fx.Node) -> str:
    val = n.meta["val"]
    return f"{str(val.dtype).replace('torch.', '')}[{','.join(str(s) for s in val.shape)}]"


def _record_region(info: RegionInfo, cfg: Config) -> Path:
    """The region file (and sidecar) in the cache's regions/, written once: what tuning and `cache verify` read.

    Its family's file goes in regions/families/ (``regionfile.family_dir``): a winner for this region is verified
    against that too, across sizes. Only compiled regions sit in regions/ itself.
    """
    directory = cfg.cache_path / "regions"
    path = regionfile.script_path(directory, info.key16)
    if not path.exists():
        info.write(directory)
    families = regionfile.family_dir(directory)
    if info.family is not None and not regionfile.script_path(families, info.family.key16).exists():
        info.family.write(families)
    return path


def _record_pending(
    store: Any, info: RegionInfo, share: float, cfg: Config, family: dict[str, Any] | None = None
) -> str:
    path = _record_region(info, cfg)
    _raise_baseline(path)
    store.add_pending(
        PendingRegion(
            key=info.digest,
            region_path=str(path),
            ops=info.ops,
            est_us=info.cost["est_us"],
            share=share,
            device=info.key.device,
            family=family,
        )
    )
    return str(path)


def _timing_needed(key: str, entry: Any, sizes: dict[str, int], mode: str, reason: str) -> dict[str, Any]:
    """A pending record's note that the kernel of ``entry`` (looked up by ``key``) needs timing at these sizes
    against ``mode``, this compile's Inductor: ``tune --pending`` does it, with no LLM call."""
    return {"key": key, "entry_id": entry.entry_id, "sizes": dict(sizes), "inductor_mode": mode, "reason": reason}


def inductor_mode() -> str:
    """The Inductor this compile runs under, as size records and baselines name it."""
    import torch._inductor.config as inductor_config

    return MAX_AUTOTUNE if inductor_config.max_autotune else "default"


def _gpu_model(device: torch.device) -> str:
    from llm_inductor.cache.trust import current_versions

    return current_versions(str(device))["gpu"]


def _speedup_text(record: Any) -> str:
    """Why a verified record lost: its speedup, or the graph's times where the kernel won alone (the gate)."""
    gate = record.graph_ab or {}
    if (
        graph_faster(gate) and host_risk(gate) and isinstance(record.speedup, (int, float))
    ):  # faster here, not on a slower host
        return (
            f"{record.speedup:.2f}x alone, its graph {gate['without_ms']:.3f} -> {gate['with_ms']:.3f} ms, but "
            f"host-bound ({gate['with_host_us']:.0f} us per call): slower on a host {HOST_VARIANCE:g}x slower to launch"
        )
    if gate.get("measured") and not gate.get("passed") and isinstance(record.speedup, (int, float)):
        host = gate.get("with_host_us")
        bound = f", host-bound ({host:.0f} us per call)" if host_bound(gate) else ""
        return f"{record.speedup:.2f}x alone, but its graph {gate['without_ms']:.3f} -> {gate['with_ms']:.3f} ms{bound}"
    return f"{record.speedup:.2f}x" if isinstance(record.speedup, (int, float)) else record.why[:80]


def _raise_baseline(region: Path) -> None:
    """Record in the region's sidecar the Inductor its kernels must beat: the strongest seen.

    A region compiled under max-autotune is tuned against max-autotune (a kernel that only
    beats default Inductor would slow that user down); ``search.verdict`` reads it.
    """
    import torch._inductor.config as inductor_config

    if not inductor_config.max_autotune:
        return
    try:
        side = regionfile.read_sidecar(region)
        if side.baseline_inductor_mode != MAX_AUTOTUNE:
            regionfile.write_sidecar(region, side.with_fields(baseline_inductor_mode=MAX_AUTOTUNE))
    except (OSError, UsageError) as e:  # the region stays tunable, against default Inductor
        log.info("llm_inductor: could not record the baseline in %s: %s", regionfile.sidecar_of(region), e)


MAX_AUTOTUNE = "max-autotune-no-cudagraphs"
SLOWER_HERE = "family: slower at this size"
OTHER_MODE = "gated against another Inductor mode than this compile's,"
SLOWER_MODE = "slower than the Inductor of this compile's mode,"
DYNAMIC_FAMILY = "family: dynamic shapes"
DYNAMIC_NOT_SERVED = (
    "dynamic shapes: the sizes its guards admit are unbounded (bound them with torch._dynamo.mark_dynamic(x, dim, "
    "min=, max=) to be served where every size class in between was timed to win)"
)


def _admitted(fam: RegionInfo) -> dict[str, tuple[int, int]] | None:
    """Each family symbol's range of sizes that the graph's guards admit, or None where one is unbounded.

    A symbol stands for an input dim (``fam.bindings``): a static dim admits its size alone, a dynamic one the
    range its ShapeEnv keeps for that symbol. A dim that is an expression of symbols is not judged.
    """
    import sympy

    out: dict[str, tuple[int, int]] = {}
    for name in fam.symbols:
        if name not in fam.bindings:
            return None
        i, d = fam.bindings[name]
        dim = fam.inputs[i].meta["val"].shape[d]
        if isinstance(dim, int):
            out[name] = (dim, dim)
            continue
        expr = dim.node.expr
        if not isinstance(expr, sympy.Symbol):
            return None
        vr = dim.node.shape_env.var_to_range.get(expr)
        try:
            lo, hi = int(vr.lower), int(vr.upper)
        except (AttributeError, TypeError, ValueError, OverflowError):
            return None  # no range, or Dynamo's default upper bound int_oo (which calls itself finite): unbounded
        out[name] = (max(lo, 1), hi)
    return out


@dataclass(frozen=True)
class TunePath:
    """What the tune path (``llm_inductor.search``, a layer above this one) asks of the region pass.

    The tune path registers it on import (``search/register.py``; ``import llm_inductor``
    loads it), so this layer never imports that one.
    """

    record_graph: Callable[
        [fx.GraphModule, list[RegionInfo], Config], None
    ]  # pending regions: graph files for the gate
    tune_misses: Callable[[list[RegionInfo], Config], int]  # online mode: winners stored as served
    check: Callable[[Config], None]  # online mode: a setting tuning cannot use raises UsageError (backend construction)


_tune_path: TunePath | None = None


def register_tune_path(hooks: TunePath | None) -> None:
    global _tune_path
    _tune_path = hooks


def wants_tuning(cfg: Config) -> bool:
    return bool(cfg.tune or cfg.mode == "tune")


def check_tuning(cfg: Config) -> None:
    """A setting that online tuning cannot use fails when the backend is made, not in the middle of a compile."""
    if wants_tuning(cfg) and _tune_path is not None:
        _tune_path.check(cfg)


def _tune_online(misses: list[tuple[RegionInfo, Any]], store: Any, cfg: Config) -> list[tuple[RegionInfo, Any]]:
    """Online mode: tune this graph's hot misses now (within budget), then serve the winners."""
    if _tune_path is None:
        log.warning(
            "llm_inductor: online tuning is unavailable (llm_inductor.search is not loaded); "
            "the regions stay with Inductor"
        )
        return []
    tune_path = _tune_path
    decided = tune_once(
        [info for info, _ in misses], store, lambda infos: tune_path.tune_misses(infos, cfg), cfg.rank_wait
    )
    won = []
    for info, row in misses:
        entry_id = decided.get(info.digest)
        entry = store.get(entry_id) if entry_id is not None else None
        if entry_id is not None and entry is None:  # decided by the ranks, and not readable on this one
            log.warning(
                "llm_inductor: region %s: this job's ranks serve kernel %s, which this process cannot read from "
                "its cache; it runs Inductor's code there, so its numerics may differ from the other ranks'",
                info.key16,
                entry_id[:16],
            )
        if entry is not None:
            _state.bump("tuned")
            row.status = "hit (tuned now)"
            won.append((info, entry))
    return won


def _record_graph(gm: fx.GraphModule, infos: list[RegionInfo], cfg: Config) -> None:
    """Hand the pending regions' graph to the tune path, which writes it once for the in-graph gate."""
    if _tune_path is not None:
        _tune_path.record_graph(gm, infos, cfg)
