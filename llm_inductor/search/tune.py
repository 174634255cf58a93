"""``tune``: search kernels for region files or the pending regions, and store the winners.

Running a script to find its hot regions is the CLI's (``llm_inductor._script``): it
hands ``tune`` a ``find_regions`` callable, called once the provider is chosen. Three
ways in, one loop: a live provider (OpenAI-compatible or replay) runs every
round now; batch files run one round per ``--export-batch``/``--import-batch``,
with the search state in ``<cache_dir>/search/`` between them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch

import llm_inductor.compile.state as _state
from llm_inductor._errors import UsageError
from llm_inductor.config import Config
from llm_inductor.passes import regionfile
from llm_inductor.search.context import RegionContext, load_context, read_region
from llm_inductor.search.families import Extension, adopt, convert, extend, family_pending, promote
from llm_inductor.search.gate import SERVED
from llm_inductor.search.llm.providers import Provider, select_provider
from llm_inductor.search.loop import Searcher
from llm_inductor.search.progress import ProgressLine, RunTotal, SummaryRow, run_total, summary_row
from llm_inductor.search.search_state import SearchState, load_state, save_state
from llm_inductor.search.verdict import Verifier, default_verifier
from llm_inductor.search.winners import store_winner
from llm_inductor.verify.reference import host_gaps
from llm_inductor.verify.result import REASONS

log = logging.getLogger(__name__)


@dataclass
class TuneReport:
    rows: list[SummaryRow] = field(default_factory=list)
    config: Config | None = None
    provider: str = ""
    device: str = ""
    exported: int = 0  # requests written
    next_batch: str | None = None  # where they were written
    answered: int = 0  # batch answers consumed
    parent_gpu_peak_mib: float | None = None  # this process's GPU peak at the end of the run; None without a GPU
    extensions: list[Extension] = field(default_factory=list)  # family kernels timed at new sizes (no LLM)
    needs_llm: int = 0  # pending regions left untuned: they need an LLM and none is configured

    @property
    def total(self) -> RunTotal:
        """The whole run's verifications per device-minute and peak GPU memory (parent and largest worker)."""
        return run_total(self.rows, self.parent_gpu_peak_mib, self.device)

    @property
    def winners(self) -> int:
        return sum(r.outcome == "winner" for r in self.rows)

    @property
    def waiting(self) -> bool:
        return self.exported > 0


def target_device(cfg: Config) -> str:
    """ "cuda", or "cpu" under interpret mode; refuses otherwise (speed cannot be judged without a GPU)."""
    if torch.cuda.is_available():
        return "cuda"
    if cfg.interpret:
        return "cpu"
    raise UsageError(
        "No GPU on this machine: a kernel's speed cannot be judged here, so tune refuses. Run it on the GPU "
        "machine, or set LLM_INDUCTOR_INTERPRET=1 (and TRITON_INTERPRET=1) to tune for correctness only."
    )


def parent_gpu_peak_mib() -> float | None:
    """This process's ``torch.cuda.max_memory_allocated`` in MiB (0 where it never initialized CUDA); None
    without a GPU. The references are computed here, so it belongs next to the workers' peaks."""
    if not torch.cuda.is_available():
        return None
    if not torch.cuda.is_initialized():
        return 0.0
    return torch.cuda.max_memory_allocated() / 2**20


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """asyncio.run, also from code that already runs inside an event loop (notebooks, online mode)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _key16(path: Path) -> str:
    return read_region(path).sidecar.key16 or ""


def pending_regions(cfg: Config, store: Any) -> list[Path]:
    """Region files of hot misses for the LLM: the store's pending records, then region files no entry covers.

    Left out: regions a family entry covers (``extend_families`` times them, with no LLM call) and
    family files themselves (a region's winner is verified against its family's file when promoted).
    """
    paths: dict[str, Path] = {}
    for rec in store.pending():
        p = Path(rec.region_path)
        if p.is_file() and not rec.family and store.lookup(rec.key) is None:
            paths.setdefault(rec.key[:16], p)
    for p in regionfile.region_scripts(cfg.cache_path / "regions"):
        key16 = regionfile.key16_of(p)
        if key16 not in paths and regionfile.is_region_file(p):
            try:
                side = read_region(p).sidecar
            except UsageError:
                continue
            if (side.key_fields or {}).get("family") or store.lookup(side.key) is not None:
                continue
            if side.family is not None and store.lookup(str(side.family["key"])) is not None:
                continue
            paths[key16] = p
    return list(paths.values())


def extend_families(
    cfg: Config,
    device: str,
    store: Any,
    verifier: Verifier,
    only: set[str | None] | None = None,
    stream: TextIO | None = None,
) -> list[Extension]:
    """Time the family kernels at every pending region's sizes that one could serve (``families.extend``);
    ``only``: just these regions' (their exact keys). ``stream`` gets a line as each one starts and ends:
    at large sizes one takes minutes."""
    todo = [rec for rec in family_pending(store) if only is None or rec.key in only]
    done = []
    for i, rec in enumerate(todo, 1):
        fam = rec.family or {}
        where = ", ".join(f"{k}={v}" for k, v in sorted((fam.get("sizes") or {}).items()))
        head = f"[{rec.key[:16]}] family {str(fam.get('key', ''))[:16]} at {where} ({i} of {len(todo)})"
        if stream is not None:
            print(f"{head}: verifying, timing and gating its kernel here", file=stream, flush=True)
        start = time.monotonic()
        ext = extend(rec, store, cfg, device, verifier)
        log.info("llm_inductor: region %s, family %s at %s: %s", ext.key16, ext.family16, ext.sizes, ext.outcome)
        if stream is not None:
            speed = f" {ext.speedup:.2f}x alone," if isinstance(ext.speedup, (int, float)) else ""
            print(f"{head}: {ext.outcome},{speed} in {time.monotonic() - start:.0f} s", file=stream, flush=True)
        done.append(ext)
    return done


class _TuneRun:
    def __init__(
        self, cfg: Config, provider: Provider, device: str, store: Any, verifier: Verifier, progress: bool, fresh: bool
    ) -> None:
        self.cfg, self.provider, self.device, self.store = cfg, provider, device, store
        self.line = ProgressLine() if progress else None
        self.searcher = Searcher(cfg, provider, device, verifier, self.line)
        self.verifier = verifier
        self.fresh = fresh
        self.contexts: dict[str, RegionContext] = {}

    def context(self, path: Path) -> RegionContext:
        key16 = _key16(path)
        if key16 not in self.contexts:
            self.contexts[key16] = load_context(path, self.cfg, self.store, self.device)
        return self.contexts[key16]

    def open(self, path: Path) -> tuple[SearchState, RegionContext]:
        ctx = self.context(path)
        state = None if self.fresh else load_state(self.cfg, ctx.key16)
        if state is None:
            state = SearchState(ctx.key, str(path), self.cfg.strategy)
            save_state(self.cfg, state)
        if not state.done and (gaps := host_gaps(ctx.source)):  # no LLM call for what cannot be verified
            state.done = f"no_host_reference: {REASONS['no_host_reference']} ({', '.join(gaps)})"
            state.outstanding.clear()
            save_state(self.cfg, state)
        return state, ctx

    def finish(self, state: SearchState, ctx: RegionContext) -> SummaryRow:
        if state.done and state.result is None and state.winner() is not None:
            state.result = store_winner(
                ctx, state, self.store, self.cfg, self.provider.name, self.provider.model, self.device
            )
            save_state(self.cfg, state)
            self.promote(state, ctx)
        if self.line is not None:
            self.line.end()
        return summary_row(state, ctx)

    def promote(self, state: SearchState, ctx: RegionContext) -> None:
        """A served winner becomes its family's kernel where it is right across the family's sizes."""
        result = state.result or {}
        if result.get("status") != SERVED or "family" in result:
            return
        winner = self.store.lookup(ctx.key)
        if winner is None or winner.entry_id != result.get("entry_id"):
            return
        if self.line is not None:
            self.line(state, ctx, "verifying the winner across its family's sizes")
        result["family"] = promote(ctx.path, winner, self.store, self.cfg, self.device, self.verifier)
        save_state(self.cfg, state)
        if self.line is not None:
            self.line.end()
        return summary_row(state, ctx)


def tune(
    regions: Sequence[str | Path] = (),
    *,
    find_regions: Callable[[Config], Sequence[Path]] | None = None,
    pending: bool = False,
    export_batch: str | Path | None = None,
    import_batch: str | Path | None = None,
    config: Config | None = None,
    verifier: Verifier | None = None,
    store: Any = None,
    progress: bool = True,
    fresh: bool = False,
    farm: Any = None,
) -> TuneReport:
    """Tune region files, the ones ``find_regions(cfg)`` returns, the pending regions, or a batch round (module doc).

    ``farm`` (``search.farm.Farm``, or a callable of no arguments that starts one when the first verification
    needs it) verifies on a Dask cluster, as many candidates at once as it has slots; the caller closes it."""
    cfg = config or _state.config()
    device = target_device(cfg)
    files = bool(export_batch or import_batch)
    store = store if store is not None else _state.store(cfg)
    for token in ("generation", "sizes_generation"):  # a change since this process last looked drops its memo
        getattr(store, token, lambda: None)()
    if farm is not None and verifier is None:
        verifier = farm
    verifier = verifier or default_verifier
    stream = sys.stderr if progress else None  # a line per family extension: at large sizes each takes minutes
    extensions: list[Extension] = []
    paths_left: list[Path] = []
    if pending and not import_batch:  # families first: verification and timing alone, no provider needed
        for done in convert(store, cfg, device, verifier):
            log.warning(
                "llm_inductor: entry %s %s",
                done["entry_id"][:24],
                "is now its family's kernel" if done.get("promoted") else f"stays its region's: {done.get('why')}",
            )
        for rec in adopt(store, device):
            log.info("llm_inductor: region %s: its family has a kernel now; timing it there", rec.key[:16])
        extensions = extend_families(cfg, device, store, verifier, stream=stream)
        paths_left = pending_regions(cfg, store)
        if not regions and find_regions is None and not paths_left:
            return TuneReport(config=cfg, device=device, extensions=extensions)
    try:
        provider = select_provider(cfg, "batch") if files else select_provider(cfg)
    except UsageError as e:
        if not extensions:
            raise
        # The families were extended with no LLM; what is left needs one. Say so, and keep what was done.
        log.warning("llm_inductor: %d region(s) still need an LLM, and none is configured: %s", len(paths_left), e)
        return TuneReport(config=cfg, device=device, extensions=extensions, needs_llm=len(paths_left))
    if not files and not provider.live:
        raise UsageError("LLM_INDUCTOR_PROVIDER=batch answers through files: pass --export-batch or --import-batch.")
    run = _TuneRun(cfg, provider, device, store, verifier, progress, fresh)
    if farm is not None:
        run.searcher.parallel = max(run.searcher.parallel, int(getattr(farm, "parallel", 1)))
    report = TuneReport(config=cfg, provider=provider.name, device=device, extensions=extensions)

    if import_batch:
        paths = _import(run, Path(import_batch), report)
    else:
        paths = [Path(p) for p in regions]
        if find_regions is not None:
            paths += find_regions(cfg)
            if not pending:  # the script's regions that a family could serve: timed now, with no LLM call
                mine = {row.key for r in _state.reports for row in r.regions if row.status.startswith("pending (")}
                report.extensions += extend_families(cfg, device, store, verifier, only=mine, stream=stream)
        if pending:
            paths += pending_regions(cfg, store)
    paths = list({_key16(p): p for p in paths}.values())

    if files:
        _export(run, paths, report, export_batch, import_batch)
    else:
        run_async(_live(run, paths, report))
    report.parent_gpu_peak_mib = parent_gpu_peak_mib()
    return report


async def _live(run: _TuneRun, paths: list[Path], report: TuneReport) -> None:
    try:
        for path in paths:
            state, ctx = run.open(path)
            if not state.done:
                await run.searcher.run_region(state, ctx)
            report.rows.append(run.finish(state, ctx))
    finally:
        await run.provider.close()


def _import(run: _TuneRun, path: Path, report: TuneReport) -> list[Path]:
    """Consume a Batch output file; returns the region files whose searches it advanced."""
    from llm_inductor.search.search_state import all_states

    waiting = {s.key16: s for s in all_states(run.cfg) if s.outstanding}
    requests = {cid: r for s in waiting.values() for cid, r in ((r.custom_id, r) for r in s.requests())}
    answers = run.provider.read_answers(path, requests)  # type: ignore[attr-defined]
    unknown = sorted(cid for cid in answers if cid not in requests)
    if unknown:
        log.warning(
            "llm_inductor: %d answer(s) match no outstanding request (already imported?): %s",
            len(unknown),
            ", ".join(unknown[:5]),
        )
    touched = []
    # Regions in the order their answers come in the file: an import cut short (a call's time limit) has done
    # the ones its user put first; the rest stay outstanding for the next import of the same file.
    order = {key16: i for i, key16 in enumerate(dict.fromkeys(cid.split("-")[0] for cid in answers))}
    for key16, state in sorted(waiting.items(), key=lambda kv: order.get(kv[0], len(order))):
        mine = {cid: c for cid, c in answers.items() if cid.startswith(key16 + "-")}
        if not mine:
            continue
        ctx = run.context(Path(state.region_path))
        report.answered += run.searcher.consume_batch(state, ctx, mine)
        touched.append(Path(state.region_path))
    # Searches whose round is fully answered but whose next round was never planned: an earlier
    # import was cut short between consuming answers and exporting. They go on with this one.
    stranded = [
        Path(s.region_path)
        for s in all_states(run.cfg)
        if not s.done and not s.outstanding and Path(s.region_path) not in touched
    ]
    if not touched and not stranded:
        raise UsageError(f"{path}: no answer matches an outstanding request under {run.cfg.cache_path / 'search'}.")
    if stranded:
        log.warning(
            "llm_inductor: planning the next round of %d search(es) an earlier import left unplanned", len(stranded)
        )
    return touched + stranded


def _export(
    run: _TuneRun, paths: list[Path], report: TuneReport, export: str | Path | None, imported: str | Path | None
) -> None:
    requests = []
    for path in paths:
        state, ctx = run.open(path)
        reqs = run.searcher.plan(state, ctx, run.searcher.region_meter(state))
        requests += reqs
        save_state(run.cfg, state)
        report.rows.append(run.finish(state, ctx))
    if not requests:
        return
    if export is None:
        export = run.cfg.cache_path / "search" / "batches" / f"requests-{run.searcher.run_id}.jsonl"
    report.exported = run.provider.write_requests(export, requests)  # type: ignore[attr-defined]
    report.next_batch = str(export)
