"""One case in one process: the reference once, then each mode compiled cold and warm, checked, timed.

Per mode:
  cold compile   a fresh Inductor cache (``fresh_cache``: empty on-disk and in-memory caches) and a
                 fresh Dynamo state; the wall time of the first ``outputs()`` call, which compiles
                 every graph the step needs (forward and backward) and runs it once.
  warm compile   ``torch._dynamo.reset()`` and a new ``torch.compile`` in the same cache: Inductor's
                 FX graph cache serves the graphs. This compiled step is the one checked and timed.
  check          its outputs against the float64 reference, relative to eager's error (check.py);
                 an incorrect mode is reported, never timed.
  timing, memory do_bench or CUDA events (timing.py); the step's peak memory.
A failure at any stage becomes a row with the stage and the error; the case goes on.
"""

from __future__ import annotations

import gc
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from benchmarks import check, common, timing
from benchmarks import modes as modes_mod
from benchmarks.common import Case, Workload


class OutOfBudget(BaseException):
    """The run's time budget ends before this mode would; stop here and save.

    A BaseException, like KeyboardInterrupt, because the alarm that raises it can fire
    inside Inductor's autotuning, whose ``except Exception`` would swallow it.
    """


@contextmanager
def _inductor_patches(patches: dict[str, Any]) -> Iterator[None]:
    if not patches:
        yield
        return
    import torch._inductor.config as c

    with c.patch(patches):
        yield


def _fresh_cache():
    from torch._inductor import utils

    return getattr(utils, "fresh_cache", None) or utils.fresh_inductor_cache  # renamed in torch 2.7


def _wall(device: str, fn: Callable[[], Any]) -> tuple[Any, float]:
    timing.sync(device)
    t = time.perf_counter()
    out = fn()
    timing.sync(device)
    return out, time.perf_counter() - t


def _error(row: dict[str, Any], stage: str, e: BaseException) -> dict[str, Any]:
    tb = traceback.format_exception(type(e), e, e.__traceback__)
    row.update(
        status=common.FAILED, stage=stage, error=f"{type(e).__name__}: {str(e)[:600]}", traceback="".join(tb)[-3000:]
    )
    return row


def _free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def roofline(w: Workload, spec: Any) -> dict[str, Any]:
    floor_s = max(w.bytes / spec.bandwidth, (w.flops or 0.0) / spec.flops)
    return {"flops": w.flops, "bytes": w.bytes, "floor_ms": floor_s * 1e3}


def reference(w: Workload) -> tuple[list[Any], str]:
    """float64 outputs; float32 where an op has no float64 kernel (grouped_mm) or float64 runs out of memory."""
    try:
        return w.reference(torch.float64), "float64"
    except (RuntimeError, NotImplementedError) as e:  # torch.OutOfMemoryError is a RuntimeError
        note = f"float32 (float64 failed: {type(e).__name__}: {str(e).splitlines()[0][:200]})"
    _free("cuda" if torch.cuda.is_available() else "cpu")
    return w.reference(torch.float32), note


def _gqa_sdpa_formulas() -> dict[Any, Any]:
    """SDPA FLOP formulas that accept grouped-query attention (fewer K/V heads than Q heads).

    torch.utils.flop_counter asserts equal head counts before torch 2.13, so Llama, Qwen2 and
    Mixtral (GQA) failed to count. Each K/V head serves h_q / h_kv query heads, so the FLOPs
    are those of the same attention with K and V broadcast to h_q heads: torch's own count is
    taken on those shapes (``sdpa_flop_count``: ``sdpa_flop`` itself is shape-wrapped in 2.11).
    """
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten

    def wide(kv: Any, q: Any) -> tuple[int, ...]:
        return (kv[0], q[1], *kv[2:])

    def fwd(q: Any, k: Any, v: Any, *args: Any, **kwargs: Any) -> int:
        return fc.sdpa_flop_count(q, wide(k, q), wide(v, q))

    def bwd(go: Any, q: Any, k: Any, v: Any, *args: Any, **kwargs: Any) -> int:
        return fc.sdpa_backward_flop_count(go, q, wide(k, q), wide(v, q))

    names = ("efficient", "flash", "cudnn")
    ops = {getattr(aten, f"_scaled_dot_product_{n}_attention", None): fwd for n in names}
    ops.update({getattr(aten, f"_scaled_dot_product_{n}_attention_backward", None): bwd for n in names})
    return {op: f for op, f in ops.items() if op is not None}


def count_flops(w: Workload) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    step = w.make_step(lambda f: f)
    with FlopCounterMode(display=False, custom_mapping=_gqa_sdpa_formulas()) as counter:
        step.outputs()
    return float(counter.get_total_flops())


class CaseRun:
    """Runs the modes of one case; ``save(row)`` is called before and after every mode."""

    def __init__(
        self,
        case: Case,
        env: dict[str, Any],
        save: Callable[[dict[str, Any]], None],
        budget: Callable[[Case, str], None],
    ) -> None:
        self.case, self.env, self.save, self.budget = case, env, save, budget
        self.device: str = env["device"]

    def base(self, mode: str) -> dict[str, Any]:
        c = self.case
        return {
            "suite": c.suite,
            "case": c.name,
            "mode": mode,
            "kind": c.kind,
            "shape": c.shape(self.env["tiny"]),
            "run_id": self.env["run_id"],
            "started": time.time(),
            "device": self.device,
        }

    def run(self, pending: list[str]) -> None:
        self.budget(self.case, pending[0])
        w, refs, eager_errs, roof, err = self._prepare()
        if err is not None:
            stage, e = err
            for mode in pending:
                self.save(_error({**self.base(mode), **roof}, stage, e))
            return
        try:
            for mode in pending:
                self.budget(self.case, mode)
                row = {**self.base(mode), **roof, "status": common.RUNNING}
                self.save(row)
                self.save(self._mode(w, modes_mod.MODES[mode], refs, eager_errs, row))
                _free(self.device)
        finally:
            del w, refs
            torch._dynamo.reset()  # Dynamo's guards hold the compiled module, and with it the model's weights
            _free(self.device)

    def _prepare(self) -> tuple[Any, Any, Any, dict[str, Any], tuple[str, BaseException] | None]:
        from llm_inductor.passes.cost import H200, device_spec

        spec = H200 if self.device == "cuda" else device_spec("cpu")
        try:
            w = self.case.build(self.device, self.env["tiny"])
        except Exception as e:
            return None, None, None, {}, ("build", e)
        try:
            if w.flops is None:
                w.flops = count_flops(w)
            roof = roofline(w, spec)
            refs, roof["reference"] = reference(w)
            eager_outs = w.make_step(lambda f: f).outputs()
            eager_errs = [check.errors(o, r) for o, r in zip(eager_outs, refs)]
            del eager_outs
            return w, refs, eager_errs, roof, None
        except Exception as e:
            return None, None, None, {}, ("reference", e)

    def _mode(
        self, w: Workload, mode: modes_mod.Mode, refs: list[Any], eager_errs: list[Any], row: dict[str, Any]
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            if mode.compiled:
                with _inductor_patches(self.env["inductor_config"]), _fresh_cache()():
                    self._compiled(w, mode, refs, eager_errs, row)
            else:
                step = w.make_step(lambda f: f)
                row["check"] = {
                    "ok": True,
                    "outputs": len(refs),
                    "message": "the reference mode",
                    "eager_rmse": [e.rmse for e in eager_errs],
                }
                self._measure(step, row)
        except Exception as e:
            _error(row, row.pop("_stage", "run"), e)
        row.pop("_stage", None)
        row["seconds"] = time.perf_counter() - t0
        if row["status"] == common.OK and row.get("median_ms") and row.get("floor_ms"):
            row["roofline_pct"] = 100.0 * row["floor_ms"] / row["median_ms"]
        return row

    def _compiled(
        self, w: Workload, mode: modes_mod.Mode, refs: list[Any], eager_errs: list[Any], row: dict[str, Any]
    ) -> None:
        wrap = modes_mod.wrapper(mode)
        row["_stage"] = "compile"
        if mode.is_llm:
            modes_mod.reset_llm()
        torch._dynamo.reset()
        step = w.make_step(wrap)
        _, row["compile_cold_s"] = _wall(self.device, step.outputs)
        if mode.is_llm:  # the cold compile's: the warm one may replay AOTAutograd's cache and skip the pass
            row["llm_pass"] = modes_mod.pass_times()
        del step
        torch._dynamo.reset()
        if mode.is_llm:
            modes_mod.reset_llm()
        step = w.make_step(wrap)
        outs, row["compile_warm_s"] = _wall(self.device, step.outputs)
        if mode.is_llm:
            row["llm"] = modes_mod.llm_snapshot()
            row["substituted"] = row["llm"]["stats"].get("substituted", 0)
            row["fallbacks"] = row["llm"]["stats"].get("fallbacks", 0)
        row["_stage"] = "check"
        verdict = check.judge(outs, refs, eager_errs)
        del outs
        row["check"] = verdict
        if not verdict["ok"]:
            row.update(status=common.INCORRECT, error=verdict["message"], stage="check")
            return
        self._measure(step, row)

    def _measure(self, step: common.Step, row: dict[str, Any]) -> None:
        row["_stage"] = "timing"
        timer = timing.time_train if step.train else timing.time_fn
        row.update(timer(step.run, self.device))
        row["_stage"] = "memory"
        row["step_peak_gib"] = timing.step_peak_gib(step.run, self.device)
        if (
            self.device == "cuda"
            and self.case.suite == "models"
            and row["mode"] != "eager"
            and self.env.get("profile", True)
        ):
            row["_stage"] = "profile"
            row["top_kernels"] = timing.top_kernels(step.run)
        row["status"] = common.OK
