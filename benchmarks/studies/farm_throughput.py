r"""Candidates verified and timed per minute by the tuning farm with 1 GPU and with N GPUs of one host.

    python benchmarks/studies/farm_throughput.py --gpus 1,2 --out results.json [--regions cross_entropy,softmax]
    python benchmarks/studies/farm_throughput.py --gpus 1,2 --device cpu --pairs REGION.py:CANDIDATE.py,... \
        --out smoke.json  # the plumbing, under the interpreter (nothing measured means anything there)

The work is fixed, the same for every GPU count: the candidates of ``verify_throughput.py`` (the batch flow's
answers for four regions of the regions suite, then the tests' hand-written kernels for them), or ``--pairs``.
For each count, a farm of that many workers (``search.farm.Farm.local``: one ``dask worker`` process per GPU,
each with its own ``CUDA_VISIBLE_DEVICES``) takes every candidate at once, as ``tune`` submits a round:
the scheduler runs ``parallel`` of them at a time. The wall seconds from the first submission to the last
verdict give candidates per minute. Verdicts are per candidate, so runs at different counts can be compared:
the same correctness verdicts are expected, and speed verdicts within the margin's noise.

One JSON file: ``{"gpu", "torch", "triton", "commit", "date", "rows": [{"gpus", "candidates", "seconds",
"candidates_per_minute", "parallel", "verdicts"}, ...], "speedup"}``, written after every count.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))


def fixed_work(args: argparse.Namespace, scratch: Path) -> list[tuple[str, Path, str]]:
    """(label, region file, candidate source), in a fixed order."""
    if args.pairs:
        out = []
        for pair in args.pairs.split(","):
            region, candidate = pair.split(":")
            out.append((f"{Path(region).stem}:{Path(candidate).stem}", Path(region), Path(candidate).read_text()))
        return out
    import verify_throughput as vt

    work = vt.unpack_state(args.state, scratch)
    names = args.regions.split(",") if args.regions else list(vt.REGIONS)
    out = []
    for name in names:
        key16, hand = vt.REGIONS[name]
        (region,) = sorted((work / "cache" / "regions").glob(f"region_{key16}*.py"))
        out += [(f"{name}:{label}", region, src) for label, src in vt.candidates(work, key16, hand)]
    return out


def run_count(gpus: int, work: list[tuple[str, Path, str]], device: str) -> dict[str, Any]:
    from llm_inductor.config import Config
    from llm_inductor.search.farm import Farm

    cfg = Config.load()[0]
    with Farm.local(gpus, device=device, stream=sys.stderr) as farm:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=farm.parallel) as pool:
            results = list(pool.map(lambda w: farm(str(w[1]), w[2], cfg), work))
        seconds = time.perf_counter() - t0
        parallel = farm.parallel
    verdicts = [{"candidate": label, "verdict": r.reason} for (label, _, _), r in zip(work, results)]  # in order
    return {
        "gpus": gpus,
        "candidates": len(work),
        "seconds": round(seconds, 1),
        "candidates_per_minute": round(60.0 * len(work) / seconds, 2),
        "parallel": parallel,
        "verdicts": verdicts,
        "harness_failures": sorted(label for (label, _, _), r in zip(work, results) if r.harness_failure),
    }


def main(argv: list[str] | None = None) -> int:
    import verify_throughput as vt

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpus", default="1,2", help="comma-separated GPU counts, each a farm of its own")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: interpreter workers (plumbing)")
    p.add_argument("--state", type=Path, default=vt.STATE, help="the batch flow's state tarball")
    p.add_argument("--regions", help=f"comma-separated subset of {','.join(vt.REGIONS)}")
    p.add_argument("--pairs", help="REGION.py:CANDIDATE.py,... instead of the batch flow's candidates")
    p.add_argument("--out", type=Path, required=True, help="the results JSON, written after every count")
    args = p.parse_args(argv)
    import torch
    import triton

    counts = [int(c) for c in args.gpus.split(",") if c]
    if args.device == "cuda" and max(counts) > torch.cuda.device_count():
        p.error(f"--gpus {args.gpus}: this host has {torch.cuda.device_count()} GPU(s)")
    doc: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else "cpu (interpreter: plumbing only)",
        "torch": torch.__version__,
        "triton": triton.__version__,
        "commit": vt.environment("after").get("commit"),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rows": [],
    }
    with tempfile.TemporaryDirectory(prefix="farm_throughput_") as scratch:
        work = fixed_work(args, Path(scratch))
        print(f"{len(work)} candidates, GPU counts {counts}", file=sys.stderr)
        for n in counts:
            row = run_count(n, work, args.device)
            doc["rows"].append(row)
            by = {r["gpus"]: r["candidates_per_minute"] for r in doc["rows"]}
            if 1 in by and len(by) > 1:
                doc["speedup"] = {str(k): round(v / by[1], 2) for k, v in by.items() if k != 1}
            args.out.write_text(json.dumps(doc, indent=1))
            print(f"{n} GPU(s): {row['candidates_per_minute']} candidates/min ({row['seconds']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
