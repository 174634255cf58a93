r"""A DDP training step of the models suite's Llama-style model on every rank: backend="llm" against Inductor.

    torchrun --nproc-per-node 2 benchmarks/studies/ddp_step.py --out ddp.json [--case llama_train] [--tiny]

Each rank builds the case's model on its own GPU (NCCL; gloo on the CPU, where nothing timed counts), wraps it
in ``DistributedDataParallel`` and compiles it, once with ``backend="inductor"`` and once with
``backend="llm"`` (cache mode: only what the cache and the bundled pack serve is substituted), each from a
fresh model (a module is wrapped by one DDP only). The two are then timed in interleaved pairs of steps
(CUDA events, barriers around each step, so the slowest rank sets the time, as in a real job), after
``--warmup`` steps each. Rank 0 writes the JSON: per backend the median step time over ``--pairs`` pairs, the
median of the per-pair ratios with a distribution-free 95% interval (``median_ci``; the "never slower" rule
fails a case whose whole interval lies below 0.99), and the kernels the llm backend substituted on each rank.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def median_ci(xs: list[float], level: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval for the median: the order statistics x_(k), x_(n-k+1), with k the largest
    rank that a Binomial(n, 1/2) leaves below with probability at most (1 - level) / 2 (n = 10: x_(2), x_(9)).
    Under 6 values no such rank exists and the interval is the whole range, covering less than ``level``."""
    from math import comb

    xs, n = sorted(xs), len(xs)
    alpha, below, k = (1.0 - level) / 2.0, 0.0, 0
    while k < n and below + comb(n, k) / 2**n <= alpha:
        below += comb(n, k) / 2**n
        k += 1
    return (xs[0], xs[-1]) if k == 0 else (xs[k - 1], xs[n - k])


def _sync(dev: str) -> None:
    import torch

    if dev == "cuda":
        torch.cuda.synchronize()


def _timed(step: Any, dev: str) -> float:
    import torch.distributed as dist

    dist.barrier()
    _sync(dev)
    t0 = time.perf_counter()
    step.run()
    _sync(dev)
    dist.barrier()  # the slowest rank's step: a collective waits for it
    return (time.perf_counter() - t0) * 1e3


def main(argv: list[str] | None = None) -> int:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    import llm_inductor
    from benchmarks.suites.models import CASES

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", default="llama_train", help="a training case of the models suite")
    p.add_argument("--tiny", action="store_true", help="toy sizes (the CPU: plumbing only)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--pairs", type=int, default=10, help="interleaved llm/Inductor step pairs timed")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    case = next((c for c in CASES if c.name == a.case), None)
    if case is None or case.kind != "train":
        p.error(f"--case {a.case}: not a training case of the models suite")

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    if dev == "cuda":
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if dev == "cuda" else "gloo")
    device = f"cuda:{local}" if dev == "cuda" else "cpu"
    ids = [local] if dev == "cuda" else None

    steps: dict[str, Any] = {}
    substituted: dict[str, int] = {}
    compile_s: dict[str, float] = {}
    for backend in ("inductor", "llm"):
        llm_inductor.compile.state.reset()
        work = case.build(device, a.tiny)  # a fresh model: one DDP per module
        step = work.make_step(lambda m, b=backend: torch.compile(DDP(m, device_ids=ids), backend=b))
        t0 = time.perf_counter()
        for _ in range(a.warmup):
            step.run()  # the first compiles every graph
        _sync(dev)
        compile_s[backend] = round(time.perf_counter() - t0, 1)
        steps[backend] = step
        substituted[backend] = int(llm_inductor.compile.state.stats().get("substituted", 0))

    times: dict[str, list[float]] = {"inductor": [], "llm": []}
    for i in range(a.pairs):
        order = ("llm", "inductor") if i % 2 else ("inductor", "llm")
        for backend in order:
            times[backend].append(_timed(steps[backend], dev))
    ratios = [ind / llm for ind, llm in zip(times["inductor"], times["llm"])]  # > 1: llm faster

    subs = [None] * world
    dist.all_gather_object(subs, substituted["llm"])
    if rank == 0:
        lo, hi = median_ci(ratios)
        doc = {
            "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu (gloo: plumbing only)",
            "gpus": world,
            "torch": torch.__version__,
            "case": a.case,
            "tiny": a.tiny,
            "commit": os.environ.get("BENCH_COMMIT", "unknown"),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "rows": [
                {
                    "backend": b,
                    "gpus": world,
                    "step_ms": round(statistics.median(times[b]), 3),
                    "steps_ms": [round(t, 3) for t in times[b]],
                    "first_steps_s": compile_s[b],
                }
                for b in ("inductor", "llm")
            ],
            "speedup_median": round(statistics.median(ratios), 4),
            "speedup_ci95": [round(lo, 4), round(hi, 4)],
            "llm_kernels_substituted_per_rank": subs,
        }
        a.out.write_text(json.dumps(doc, indent=1))
        print(json.dumps({k: doc[k] for k in ("gpus", "speedup_median", "speedup_ci95")}))
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
