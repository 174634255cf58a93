"""Timing on the GPU: the candidate against the same region compiled by Inductor.

Worker side (``time_pair``): both run in the same process on the same inputs,
interleaved (candidate, Inductor, then Inductor, candidate; extra Inductor modes
for reports join the same rounds), each timed with
``triton.testing.do_bench``'s median, which zeroes a buffer larger than L2
between repetitions. Two separate measurements; a candidate must win both.
The last timed call's outputs go back to the parent, which checks them: a
kernel that is right when checked and wrong when timed is caught.

Parent side (``judge_speed``): speedup per measurement against the margin,
throughput, and the roofline floor: max(bytes / bandwidth, matmul FLOPs / peak)
with the ceilings measured on this GPU (``passes.cost.device_spec``, FIELD.md).
A time below the floor by more than the measurement margin is impossible
without skipping work, and is rejected as ``suspicious_speed``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from statistics import median
from typing import Any

import torch

# do_bench's median on an H200 varies by a few percent between runs; the floor
# itself is a measured ceiling (4.25 TB/s copy vs 4.8 TB/s spec). A kernel 20%
# under the floor is beyond both.
SUSPICIOUS_BELOW_FLOOR = 0.8


def _as_list(out: Any) -> list[torch.Tensor]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def time_pair(
    candidate: Callable[..., Any],
    forward: Callable[..., Any],
    inputs: Sequence[torch.Tensor],
    req: dict[str, Any],
    before_candidate: Callable[[], None] = lambda: None,
    compiled: dict[str, Callable[..., Any]] | None = None,
) -> tuple[dict[str, Any], list[torch.Tensor]]:
    """Runs in the worker. Returns (report, outputs of the last timed candidate call).

    Everything that is not the candidate (Inductor's compiles) runs first; ``before_candidate`` is
    called after it, before the candidate runs. The bytes, FLOPs and bandwidth come from the parent.
    """
    from triton.testing import do_bench

    mode = req.get("inductor_mode") or "default"
    modes = timed_modes(req)
    compiled = compiled or compile_modes(forward, modes)
    fns: dict[str, Callable[[], Any]] = {m: (lambda fn=fn: fn(*inputs)) for m, fn in compiled.items()}
    report: dict[str, Any] = {"gpu": torch.cuda.get_device_name()}
    with torch.no_grad():
        for f in fns.values():  # compile (max-autotune benchmarks its choices here)
            f()
        torch.cuda.synchronize()
    before_candidate()
    last: list[Any] = [None]

    def run_candidate() -> None:
        last[0] = candidate(*inputs)

    fns = {"candidate": run_candidate, **fns}
    rep = int(req.get("rep_ms", 100))
    with torch.no_grad():
        for _ in range(3):  # the candidate's compile and autotune, warm caches
            for f in fns.values():
                f()
        torch.cuda.synchronize()
        rounds = []
        for order in (list(fns), list(reversed(fns))):  # interleaved, each order once
            rounds.append(
                {name: float(do_bench(fns[name], warmup=25, rep=rep, return_mode="median")) for name in order}
            )
        run_candidate()
        torch.cuda.synchronize()
    report["measurements"] = [{"candidate_ms": r["candidate"], "inductor_ms": r[mode]} for r in rounds]
    report["extra_modes"] = {m: [r[m] for r in rounds] for m in modes[1:]}
    return report, _as_list(last[0])


def timed_modes(req: dict[str, Any]) -> list[str]:
    """The Inductor mode the candidate must beat, then the extra ones timed for reports."""
    mode = req.get("inductor_mode") or "default"
    return [mode, *(m for m in req.get("extra_modes") or () if m != mode)]


def compile_modes(forward: Callable[..., Any], modes: Sequence[str]) -> dict[str, Callable[..., Any]]:
    return {m: torch.compile(forward, backend="inductor", mode=None if m == "default" else m) for m in modes}


def copy_bandwidth(nbytes: int = 256 << 20) -> float:
    """Bytes/s of a device-to-device copy of ``nbytes`` (read + write), do_bench median with L2 flush.

    256 MiB read and 256 MiB written: four times an H200's L2 each, and long enough (0.12 ms)
    that launch overhead stays within the measurement's noise.
    """
    from triton.testing import do_bench

    src = torch.empty(nbytes // 2, dtype=torch.bfloat16, device="cuda")
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), warmup=10, rep=100, return_mode="median")
    return 2 * nbytes / (ms * 1e-3)


_bandwidth: dict[int, float] = {}


def device_bandwidth() -> float:
    """copy_bandwidth of the current GPU, measured once per device and process (the caller holds the GPU)."""
    index = torch.cuda.current_device()
    if index not in _bandwidth:
        _bandwidth[index] = copy_bandwidth()
    return _bandwidth[index]


def work(forward: Callable[..., Any], inputs: Sequence[torch.Tensor]) -> dict[str, float]:
    """Bytes a fused kernel must move (inputs read once, outputs written once) and matmul FLOPs.

    Counted on fake tensors: no memory, no kernel; the same numbers as a real run's.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with FakeTensorMode(allow_non_fake_inputs=False) as mode:
        fakes = [mode.from_tensor(t) for t in inputs]
        with torch.no_grad(), counter:
            outs = _as_list(forward(*fakes))
        moved = sum(t.numel() * t.element_size() for t in (*fakes, *outs) if isinstance(t, torch.Tensor))
    return {"bytes": float(moved), "flops": float(counter.get_total_flops())}


def judge_speed(report: dict[str, Any], margin: float, bandwidth: float, peak_flops: float) -> tuple[str, str, dict]:
    """(reason, message, timings) from a worker's timing report; reason is 'ok', 'slower' or 'suspicious_speed'."""
    ms = report["measurements"]
    bw = report.get("measured_bandwidth") or bandwidth
    floor_ms = max(report["bytes"] / bw, report["flops"] / peak_flops) * 1e3
    cand = median(m["candidate_ms"] for m in ms)
    ind = median(m["inductor_ms"] for m in ms)
    speedups = [m["inductor_ms"] / m["candidate_ms"] for m in ms]
    timings = {
        "measurements": ms,
        "candidate_ms": cand,
        "inductor_ms": ind,
        "speedup": min(speedups),
        "speedups": speedups,
        "floor_ms": floor_ms,
        "bytes": report["bytes"],
        "flops": report["flops"],
        "gbps": report["bytes"] / (cand * 1e-3) / 1e9,
        "tflops": report["flops"] / (cand * 1e-3) / 1e12,
        "pct_of_roofline": 100.0 * floor_ms / cand,
        "inductor_pct_of_roofline": 100.0 * floor_ms / ind,
        "extra_modes": {
            m: {"inductor_ms": median(v), "speedup": median(v) / cand, "pct_of_roofline": 100.0 * floor_ms / median(v)}
            for m, v in (report.get("extra_modes") or {}).items()
        },
        "bandwidth": bw,
        "peak_flops": peak_flops,
        "gpu": report.get("gpu"),
    }
    fastest = min(m["candidate_ms"] for m in ms)
    if fastest < SUSPICIOUS_BELOW_FLOOR * floor_ms:
        return (
            "suspicious_speed",
            f"candidate takes {fastest:.4f} ms but the roofline floor is {floor_ms:.4f} ms "
            f"({report['bytes'] / 1e6:.1f} MB at {bw / 1e12:.2f} TB/s): it cannot have done the work",
            timings,
        )
    if min(speedups) < 1.0 + margin:
        return (
            "slower",
            "speedup over Inductor "
            + " and ".join(f"{s:.3f}x" for s in speedups)
            + f" (needs {1 + margin:.2f}x in both measurements)",
            timings,
        )
    return "ok", f"{min(speedups):.3f}x over Inductor", timings
