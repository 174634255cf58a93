"""Timers, peak memory and a kernel profile.

On CUDA, a function step is timed with ``triton.testing.do_bench`` (quantiles,
warm-up, the L2 cache zeroed before every run); a training step with CUDA events
around the whole step, optimizer included, with the same L2 flush, because
do_bench sizes its repetitions from a 5-run estimate and would time a 150 ms step
once or twice. On the CPU there is no benchmark, only a smoke run: a few
perf_counter repetitions so the rows have the same fields.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

QUANTILES = (0.5, 0.2, 0.8)
FN_REP_MS = 200.0  # do_bench's repetition time; at least MIN_REPS runs whatever the step takes
MIN_REPS = 20
TRAIN_WARMUP = 3
TRAIN_REPS = (10, 40)  # bounds on timed training steps
TRAIN_TARGET_MS = 3000.0
CPU_REPS = 5

SETTINGS = {
    "fn_timer": f"triton.testing.do_bench(quantiles={list(QUANTILES)}, warmup=max(25 ms, 3 runs), "
    f"rep=max({FN_REP_MS:g} ms, {MIN_REPS} runs)); L2 zeroed before each run by do_bench",
    "train_timer": f"CUDA events around each full step (forward, backward, optimizer.step, zero_grad), "
    f"L2 zeroed (256 MB) before each step, {TRAIN_WARMUP} warm-up steps, {TRAIN_REPS[0]}-{TRAIN_REPS[1]} timed steps",
    "cpu_timer": f"time.perf_counter, {CPU_REPS} runs after one warm-up: a smoke run, not a benchmark",
    "peak_memory": "max_memory_allocated during one step minus memory_allocated before it (weights, "
    "inputs and the check's reference are excluded; identical across modes)",
}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _quantiles(times: list[float]) -> dict[str, Any]:
    qs = statistics.quantiles(times, n=10, method="inclusive") if len(times) > 1 else [times[0]] * 9
    return {"median_ms": statistics.median(times), "p20_ms": qs[1], "p80_ms": qs[7], "reps": len(times)}


def _one_ms(fn: Callable[[], Any]) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end)


def time_fn(fn: Callable[[], Any], device: str) -> dict[str, Any]:
    if device != "cuda":
        return time_cpu(fn)
    from triton.testing import do_bench

    estimate = _one_ms(fn)
    rep = max(FN_REP_MS, MIN_REPS * estimate)
    med, p20, p80 = do_bench(fn, warmup=max(25.0, 3 * estimate), rep=rep, quantiles=list(QUANTILES))
    return {
        "median_ms": med,
        "p20_ms": p20,
        "p80_ms": p80,
        "reps": max(1, int(rep / max(estimate, 1e-3))),
        "timer": "do_bench",
    }


def time_train(step: Callable[[], Any], device: str) -> dict[str, Any]:
    if device != "cuda":
        return time_cpu(step)
    flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")  # larger than the H200's 50 MB L2
    for _ in range(TRAIN_WARMUP):
        step()
    estimate = _one_ms(step)
    reps = int(min(max(TRAIN_TARGET_MS / max(estimate, 1e-3), TRAIN_REPS[0]), TRAIN_REPS[1]))
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    for start, end in events:
        flush.zero_()
        start.record()
        step()
        end.record()
    torch.cuda.synchronize()
    return {**_quantiles([s.elapsed_time(e) for s, e in events]), "timer": "cuda-events"}


def time_cpu(fn: Callable[[], Any]) -> dict[str, Any]:
    fn()
    times = []
    for _ in range(CPU_REPS):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return {**_quantiles(times), "timer": "cpu-perf_counter"}


def step_peak_gib(fn: Callable[[], Any], device: str) -> float | None:
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**30


def top_kernels(fn: Callable[[], Any], steps: int = 3, top: int = 12) -> list[dict[str, Any]]:
    """The GPU kernels that take the time in a step: name, ms per step, share of the step's kernel time."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if _self_device_us(e) > 0]
    total = sum(_self_device_us(e) for e in events) or 1.0
    events.sort(key=lambda e: -_self_device_us(e))
    return [
        {
            "name": e.key[:160],
            "ms_per_step": _self_device_us(e) / 1e3 / steps,
            "share": _self_device_us(e) / total,
            "calls": e.count // steps,
        }
        for e in events[:top]
    ]


def _self_device_us(e: Any) -> float:
    # torch 2.11+ names it self_device_time_total; older builds self_cuda_time_total.
    return float(getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0.0) or 0.0)
