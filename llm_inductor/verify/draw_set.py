"""The draws the candidates of one round share, and their references: built once per region and round.

Per input draw, a verification needs the inputs and three references (float64,
eager, Inductor). At real shapes building them costs more than running a candidate
on them, and none of it depends on the candidate, so the candidates of one round
share it:

* A ``DrawSet`` holds one region's plan (the base draws and the extra sizes, each
  with a secret seed) and, per draw, the parent's ``Expected`` (inputs and
  references, on the host) and the inputs file that workers get a copy of. There
  is one per region, device and Inductor mode within a ``verification_round``; the
  next round makes new ones, with new seeds.
* Seeds never leave the parent: a worker gets a file of tensors, and messages (so
  the LLM's feedback) name a draw without its seed. A value a candidate saw cannot
  help a later round's candidates: their draws are new.
* Every candidate still gets draws of its own (``private``): a fresh seed with a
  distribution it cannot predict, and the draw after timing. They are judged like
  the shared ones and never shared.
* Inductor's compiled function for the region is memoized per region and mode for
  the process (``reference.inductor_fn``): one compile across rounds.

Memory stays bounded by the region's working set: the inputs and the references
live on the host (float64 and eager run there, with every core; a draw's inputs
are kept once, mapped from the file that workers get copies of), and only
Inductor's reference runs on the device, one draw at a time in this process,
inside the GPU gate's shared side (never while a candidate is being timed).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from llm_inductor.verify.checks import Expected
from llm_inductor.verify.compare import floors, spread
from llm_inductor.verify.draws import (
    BASE_DISTS,
    Draw,
    Plan,
    build_inputs,
    fresh_seed,
    load_inputs,
    plan_draws,
    save_inputs,
    to_device,
)
from llm_inductor.verify.gpu_share import GATE
from llm_inductor.verify.host_budget import BYTES_PER_ELEMENT, HOST
from llm_inductor.verify.loaded_region import LoadedRegion, TensorMeta
from llm_inductor.verify.pool import scratch_root
from llm_inductor.verify.reference import eager_reference, fp64_reference, inductor_reference, reference_peaks

# A candidate's own draw takes one of these at random: it cannot know which values it will get.
PRIVATE_DISTS = tuple(d for d in BASE_DISTS if d != "nan_inf")
# Seconds the parent spent per stage of building draws, over the process (benchmarks/studies read it).
SECONDS: defaultdict[str, float] = defaultdict(float)
_device_work = threading.Lock()  # the parent's device work, one draw at a time: its memory is one draw's
# Failures of the machine, never of a region or a size: they propagate (a retry, with less parallelism).
_HARNESS = (MemoryError, torch.OutOfMemoryError, torch.AcceleratorError)


@dataclass(frozen=True)
class PlanInfo:
    plan: Plan
    positive: bool  # finite inputs gave a NaN reference: every draw folds float inputs to |x|
    exact: list[bool]  # per output: nearly constant across draws, judged without a tolerance floor
    working_set: int  # bytes of inputs plus outputs at the largest drawn size
    # Extra sizes the region itself cannot run at (a view whose other sizes are literal), draw label → why:
    # outside the region's domain, so no candidate is judged there. Every kept size is checked as before.
    outside: dict[str, str] = field(default_factory=dict)


class DrawSet:
    """One region's draws and references on one device under one Inductor mode, for one round."""

    def __init__(self, region: LoadedRegion, device: str, mode: str) -> None:
        self.region, self.device, self.mode = region, device, mode
        # Named like a worker's scratch, so that a worker's sandbox leaves it out (sandbox.confine).
        self.dir = Path(tempfile.mkdtemp(prefix="llm_inductor_verify_draws_", dir=scratch_root(device)))
        self.inductor_how: str | None = None
        self._lock = threading.Lock()
        self._pending: dict[Draw, Future[Expected]] = {}
        self._files: dict[Draw, Path] = {}
        self._plan: PlanInfo | None = None
        self._held: dict[Draw, int] = {}  # host bytes each built draw keeps (host_budget.HOST)
        self._plan_lock = threading.Lock()
        self._builder = ThreadPoolExecutor(_builders(device), thread_name_prefix="llm_inductor-draws")
        self._closed = False

    # ------------------------------------------------------------------ plan
    def plan(self) -> PlanInfo:
        """The shared draws, decided once: positive-only where the region needs it, and which outputs are exact."""
        with self._plan_lock:
            if self._plan is None:
                self._plan = self._make_plan()
            return self._plan

    def _make_plan(self) -> PlanInfo:
        plan = plan_draws(self.region.symbols, positive=False, has_float_inputs=True)
        first = self.expect(plan.base[0])
        has_float = any(t.dtype.is_floating_point for t in first.inputs)
        # Positive-only where the op needs it: finite inputs giving a NaN reference (log, sqrt of a negative).
        positive = any(bool(r.isnan().any()) for r in first.ref64 if r.dtype.is_floating_point)
        if positive or not has_float:
            plan = plan_draws(self.region.symbols, positive=positive, has_float_inputs=has_float)
        for d in (*plan.base, *plan.sizes):
            self._start(d)  # built one after another in the background while the first ones are judged
        usual = [self.expect(d) for d in plan.base if d.dist != "nan_inf"]
        exact = []
        for j, spec in enumerate(usual[0].specs):
            if spec.dtype.is_floating_point:
                with GATE.shared(self.device):
                    s = spread([e.ref64[j] for e in usual], self.device)
            else:
                s = float("inf")
            exact.append(s <= floors(spec.dtype)[0])
        for d in plan.base:
            self.expect(d).exact = exact
        kept, outside = [], {}
        for d in plan.sizes:
            try:
                kept.append(self.expect(d))
            except _HARNESS:
                raise
            except Exception as e:  # the reference raised: this size is outside the region's domain
                outside[d.label()] = f"the region's reference fails there: {type(e).__name__}: {e}"[:300]
                self.forget(d)
        if outside:
            plan = Plan(plan.base, [e.draw for e in kept])
        seen = [_peak(r) for r in first.ref64]
        for e in kept:  # an output all zero at an extra size is judged by its scale at the region's own sizes
            e.scales = seen
        working_set = max(_bytes(e) for e in (*usual, *(kept or [first])))
        return PlanInfo(plan, positive, exact, working_set, outside)

    def private_draw(self, name: str = "own") -> Draw:
        """A draw for one candidate only: a fresh seed and a distribution drawn at random, at the region's sizes."""
        info = self.plan()
        dist = PRIVATE_DISTS[secrets.randbelow(len(PRIVATE_DISTS))]
        return Draw(name, fresh_seed(), dist, (), info.positive)

    # ------------------------------------------------------------------ expectations
    def expect(self, draw: Draw) -> Expected:
        """Inputs, specs and references for a draw (built once; Inductor's on first use)."""
        future = self._start(draw)
        try:
            exp = future.result()
        except BaseException:
            with self._lock:  # a failure (the host out of memory) is not kept: a retry builds the draw again
                if self._pending.get(draw) is future:
                    del self._pending[draw]
            raise
        if self._plan is not None and not exp.exact:
            exp.exact = self._plan.exact  # a draw made after the plan (private, seed 0) is judged alike
        return exp

    def _start(self, draw: Draw) -> Future[Expected]:
        with self._lock:
            if self._closed:
                raise RuntimeError("this round's draws are closed")
            if draw not in self._pending:
                self._pending[draw] = self._builder.submit(self._build, draw)
            return self._pending[draw]

    def prefetch(self, *draws: Draw) -> None:
        """Start building these draws now, so that they are ready when judged."""
        for d in draws:
            self._start(d)

    def forget(self, draw: Draw) -> None:
        """Drop a private draw's tensors and file once its candidate is judged."""
        with self._lock:
            self._pending.pop(draw, None)
            path = self._files.pop(draw, None)
            HOST.release(self._held.pop(draw, 0))
        if path is not None:
            path.unlink(missing_ok=True)

    def _build(self, draw: Draw) -> Expected:
        # Host work, but on the gate's shared side all the same: a candidate is timed with the machine quiet
        # (launch latency is host time; busy cores moved a timing 0.9x against 1.4x on the H200).
        # Host memory is admitted first (host_budget): a draw too large for this host is a harness failure.
        with self._lock:
            own = sum(self._held.values())
        with HOST.build(build_bytes(self.region, draw), f"{draw.label()} of region {self.region.name}", own):
            with GATE.shared(self.device):
                exp = self._build_now(draw)
        held = _held_bytes(exp)
        HOST.hold(held)
        with self._lock:
            self._held[draw] = self._held.get(draw, 0) + held
        return exp

    def _build_now(self, draw: Draw) -> Expected:
        t0 = time.perf_counter()
        host = build_inputs(self.region.module.make_inputs, draw, "cpu")
        t1 = time.perf_counter()
        ref64 = fp64_reference(self.region, host)
        t2 = time.perf_counter()
        eager = eager_reference(self.region, host)
        t3 = time.perf_counter()
        specs = self.region.output_specs(host, draw.size_map)
        # The inputs are kept once, in the file that workers get copies of: the parent's own copy maps it.
        path = self._new_file()
        save_inputs(host, path)
        del host
        inputs = load_inputs(path)
        with self._lock:
            self._files[draw] = path
        t4 = time.perf_counter()
        for stage, dt in (("inputs", t1 - t0 + t4 - t3), ("float64", t2 - t1), ("eager", t3 - t2)):
            SECONDS[stage] += dt
        return Expected(draw, inputs, specs, ref64, eager, lambda: self._inductor(inputs), device=self.device)

    def _new_file(self) -> Path:
        return self.dir / f"draw_{secrets.token_hex(6)}.pt"

    def _inductor(self, host: list[torch.Tensor]) -> list[torch.Tensor]:
        """Inductor's outputs for these inputs: computed on the device, kept on the host."""
        with GATE.shared(self.device), _device_work:
            t0 = time.perf_counter()
            on_dev = to_device(host, self.device)
            outs, how = inductor_reference(self.region, on_dev, self.mode)
            outs = [o.to("cpu") for o in outs]
            del on_dev
            SECONDS["inductor"] += time.perf_counter() - t0
        self.inductor_how = how
        return outs

    # ------------------------------------------------------------------ files for workers
    def inputs_file(self, draw: Draw, into: Path) -> Path:
        """A copy, in a worker's own directory, of the draw's inputs (written once, when the draw was built)."""
        self.expect(draw)
        with self._lock:
            src = self._files[draw]
        dst = into / f"inputs_{secrets.token_hex(4)}.pt"
        shutil.copyfile(src, dst)
        return dst

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pending, self._pending, self._files = list(self._pending.values()), {}, {}
        for f in pending:
            f.cancel()
        self._builder.shutdown(wait=True)
        with self._lock:
            HOST.release(sum(self._held.values()))
            self._held = {}
        shutil.rmtree(self.dir, ignore_errors=True)


def _builders(device: str) -> int:
    """Draws built at once: make_inputs' generator runs on one core, so a GPU host's cores build several."""
    return 1 if device != "cuda" else max(1, min(4, (os.cpu_count() or 1) // 4))


def build_bytes(region: LoadedRegion, draw: Draw) -> int:
    """Host bytes a draw's build may take at its sizes (host_budget): 0 where the sidecar gives no specs.

    The draw's inputs, plus the largest of its stages: the inputs' generation and transform, and the float64
    and eager references, whose peaks a run on the meta device measures (``reference.reference_peaks``),
    with a margin for what an op allocates inside. A region the meta device cannot run gets the flat
    ``BYTES_PER_ELEMENT`` estimate.
    """
    try:
        inputs, outputs = region.declared("inputs", draw.size_map), region.declared("outputs", draw.size_map)
    except (ValueError, TypeError, KeyError, ZeroDivisionError):
        return 0
    if not inputs:
        return 0
    kept = sum(m.storage_numel * m.dtype.itemsize for m in inputs)
    floats = sum(m.storage_numel for m in inputs if m.dtype.is_floating_point)
    peaks = _peaks(region, inputs)
    if peaks is None:
        return BYTES_PER_ELEMENT * sum(math.prod(m.shape) for m in (*inputs, *outputs))
    peak64, peak_eager, out64 = peaks
    return kept + int(MARGIN * max(TRANSFORM_BYTES * floats, peak64, out64 + peak_eager))


def region_build_bytes(path: str | Path) -> int:
    """Host bytes that one draw of a region file at its own sizes takes to build (0: unknown, or no region)."""
    from llm_inductor.verify.loaded_region import load_region

    try:
        return build_bytes(load_region(path, check=False), Draw("estimate", 1))
    except Exception:  # noqa: BLE001 - an estimate only: the verification names what is wrong with the file
        return 0


# Host bytes per float input element while ``build_inputs`` makes it, beside the kept inputs: make_inputs'
# float32 draw and its cast (6), and the transformed copy (2 for bf16; the transform itself works in chunks).
TRANSFORM_BYTES = 8
MARGIN = 1.2  # what an op allocates inside (a reduction's buffers), which the meta device does not show
_peak_memo: dict[tuple[str, tuple[TensorMeta, ...]], tuple[int, int, int] | None] = {}


def _peaks(region: LoadedRegion, inputs: list[TensorMeta]) -> tuple[int, int, int] | None:
    key = (region.digest, tuple(inputs))
    if key not in _peak_memo:
        _peak_memo[key] = reference_peaks(region, inputs)
    return _peak_memo[key]


def _held_bytes(exp: Expected) -> int:
    """What a built draw keeps on the host: its inputs, and the float64 and eager references."""
    return sum(t.numel() * t.element_size() for t in (*exp.inputs, *exp.ref64, *exp.eager))


def _peak(r: torch.Tensor) -> float:
    """The largest finite magnitude of a float reference (0.0 for others, or none)."""
    if not r.dtype.is_floating_point or r.numel() == 0:
        return 0.0
    finite = r[torch.isfinite(r)]
    return float(finite.abs().max()) if finite.numel() else 0.0


def _bytes(exp: Expected) -> int:
    inputs = sum(t.untyped_storage().nbytes() for t in exp.inputs)
    outputs = 0
    for s in exp.specs:
        numel = 1
        for dim in s.shape:
            numel *= dim
        outputs += numel * s.dtype.itemsize
    return inputs + outputs


# ---------------------------------------------------------------------- rounds
class _Round:
    def __init__(self) -> None:
        self.sets: dict[tuple[str, str, str], DrawSet] = {}
        self.lock = threading.Lock()


_current: contextvars.ContextVar[_Round | None] = contextvars.ContextVar("llm_inductor_round", default=None)


@contextlib.contextmanager
def verification_round() -> Iterator[None]:
    """Candidates verified inside share their regions' draws and references; the next round gets new ones.

    Nested rounds join the outer one. Threads started with the context copied (``asyncio.to_thread``,
    ``contextvars.copy_context().run``) share it too.
    """
    if _current.get() is not None:
        yield
        return
    rnd = _Round()
    token = _current.set(rnd)
    try:
        yield
    finally:
        _current.reset(token)
        for s in rnd.sets.values():
            s.close()


@contextlib.contextmanager
def draws_for(region: LoadedRegion, device: str, mode: str) -> Iterator[DrawSet]:
    """The round's DrawSet for this region, or, outside a round, one of this verification's own."""
    rnd = _current.get()
    if rnd is None:
        own = DrawSet(region, device, mode)
        try:
            yield own
        finally:
            own.close()
        return
    key = (region.digest, device, mode)
    with rnd.lock:
        if key not in rnd.sets:
            rnd.sets[key] = DrawSet(region, device, mode)
        shared = rnd.sets[key]
    yield shared
