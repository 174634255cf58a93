"""Compile-time overhead of backend="llm" over backend="inductor", on a miss and on a hit.

Each (model, backend) pair is compiled in a fresh subprocess with a fresh Inductor
cache, so the first number is a cold compile; the median of --reps runs is reported.
Then the same process compiles the model again after ``torch._dynamo.reset()``: a
warm recompile, which Inductor serves from its caches (AOTAutograd's and the FX
graph cache). backend="llm" keeps AOTAutograd's cache on with a key that follows the
kernel set (``llm_inductor/compile/aot.py``), so its warm recompile should cost what
Inductor's does.
"miss": an empty kernel store (every hot region is recorded pending). "hit": a store
holding an entry for every region of the model, so the pass also rewrites the graph.
The hit entries serve each region's own reference code as the kernel, which is enough
to time the compile path (the kernel body never changes how the graph compiles).

    python benchmarks/studies/compile_overhead.py --out benchmarks/results/compile_overhead-<device>.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, os, sys, time
import torch
sys.path.insert(0, os.environ["BENCH_STUDIES"])
import llm_inductor
from llm_inductor.compile import state as _state
from llm_inductor.cache.entry import Entry
from llm_inductor.cache.store import MemoryStore
from llm_inductor.passes.regionfile import read_sidecar, region_scripts
from llm_inductor.passes.region import FAMILY_SECONDS
from bench_models import build

name, backend, store_mode, device = sys.argv[1:5]
model, inputs = build(name, device)
store = MemoryStore()
if store_mode == "hit":
    for py in region_scripts(os.environ["BENCH_REGIONS"]):
        meta = read_sidecar(py).to_dict()
        src = py.read_text()
        store.put(
            Entry(
                key=meta["key"],
                key_fields=meta["key_fields"],
                kernel_source=src,
                region_source=src,
                region_meta=meta,
            )
        )
_state.set_store(store)
# The clock starts before torch.compile(): backend="inductor" imports Inductor there, the llm
# backend at its first call, and a user pays both. (Timing only the first call charged ~0.9 s of
# Inductor's own import to llm.)
t0 = time.perf_counter()
if backend == "llm":
    backend = llm_inductor.backend(min_region_us=0, interpret=(device == "cpu"))
compiled = torch.compile(model, backend=backend)
with torch.no_grad():
    compiled(*inputs)
if device == "cuda":
    torch.cuda.synchronize()
cold = time.perf_counter() - t0
stats, pass_s, family_s = llm_inductor.stats(), _state.pass_seconds[0], FAMILY_SECONDS[0]
torch._dynamo.reset()
t0 = time.perf_counter()
with torch.no_grad():
    torch.compile(model, backend=backend)(*inputs)
if device == "cuda":
    torch.cuda.synchronize()
print(json.dumps({"seconds": cold, "warm_s": time.perf_counter() - t0, "pass_s": pass_s, "family_s": family_s,
                  "stats": stats}))
"""

MODELS = ("mlp", "cnn", "block", "gru", "llama")


def run_child(name: str, backend: str, store: str, device: str, regions: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(
            os.environ,
            TORCHINDUCTOR_CACHE_DIR=str(Path(tmp) / "inductor"),
            LLM_INDUCTOR_CACHE_DIR=str(Path(tmp) / "llm"),
            BENCH_STUDIES=str(Path(__file__).parent),
            BENCH_REGIONS=str(regions),
        )
        if device == "cpu":  # hits are served on the CPU only under the Triton interpreter
            env["LLM_INDUCTOR_INTERPRET"] = "1"
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, name, backend, store, device], env=env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{name}/{backend}/{store}: {proc.stderr[-2000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def export_regions(name: str, device: str, directory: Path) -> None:
    code = (
        "import sys, os, torch; sys.path.insert(0, os.environ['BENCH_STUDIES']); import llm_inductor; "
        "from llm_inductor.compile import state as _state; from bench_models import build; "
        f"_state.export_dir = {str(directory)!r}; m, i = build({name!r}, {device!r}); "
        "c = torch.compile(m, backend=llm_inductor.backend(mode='discover', min_region_us=0))\n"
        "with torch.no_grad(): c(*i)"  # as timed: grad mode changes the graph, so the keys
    )
    env = dict(os.environ, BENCH_STUDIES=str(Path(__file__).parent))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if _cuda() else "cpu")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", required=True)
    ap.add_argument(
        "--git-commit", help="the commit under test, where the checkout has no usable git metadata (device copies)"
    )
    args = ap.parse_args()
    rows: list[dict] = []
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as regions:
            export_regions(name, args.device, Path(regions))
            row = {"model": name}
            for label, backend, store in (
                ("inductor", "inductor", "miss"),
                ("llm_miss", "llm", "miss"),
                ("llm_hit", "llm", "hit"),
            ):
                runs = [run_child(name, backend, store, args.device, Path(regions)) for _ in range(args.reps)]
                row[label] = statistics.median(r["seconds"] for r in runs)
                row[f"{label}_pass_s"] = statistics.median(r["pass_s"] for r in runs)
                row[f"{label}_family_s"] = statistics.median(r["family_s"] for r in runs)  # part of the pass's
                row[f"{label}_warm"] = statistics.median(r["warm_s"] for r in runs)
                row[f"{label}_stats"] = runs[-1]["stats"]
            row["overhead_miss"] = row["llm_miss"] / row["inductor"] - 1
            row["overhead_hit"] = row["llm_hit"] / row["inductor"] - 1
            # The pass's own time over Inductor's compile: the overhead without run-to-run noise.
            row["pass_share_miss"] = row["llm_miss_pass_s"] / row["inductor"]
            row["pass_share_hit"] = row["llm_hit_pass_s"] / row["inductor"]
            row["overhead_warm_miss"] = row["llm_miss_warm"] / row["inductor_warm"] - 1
            row["overhead_warm_hit"] = row["llm_hit_warm"] / row["inductor_warm"] - 1
            hit = row["llm_hit_stats"]
            if hit["substituted"] < hit["regions"]:
                print(
                    f"warning: {name}: the hit compile served {hit['substituted']} of {hit['regions']} regions "
                    f"({hit['pending']} pending, {hit['fallbacks']} fallbacks), so its column times a partial hit",
                    file=sys.stderr,
                )
            rows.append(row)
            write(args, rows)
            print(
                f"{name:8} inductor {row['inductor']:.2f}s  "
                f"llm miss {row['llm_miss']:.2f}s ({row['overhead_miss']:+.1%})"
                f"  llm hit {row['llm_hit']:.2f}s "
                f"({row['overhead_hit']:+.1%}, {row['llm_hit_stats']['substituted']} substituted)"
                f"  pass {row['llm_miss_pass_s']:.3f}s / {row['llm_hit_pass_s']:.3f}s"
                f"  | warm: inductor {row['inductor_warm']:.2f}s  llm miss {row['llm_miss_warm']:.2f}s "
                f"({row['overhead_warm_miss']:+.1%})  "
                f"llm hit {row['llm_hit_warm']:.2f}s ({row['overhead_warm_hit']:+.1%})",
                flush=True,
            )
    print(write(args, rows))


def write(args: argparse.Namespace, rows: list[dict]) -> str:
    """Write the JSON and the table (after every model: a run cut short keeps what it measured)."""
    import torch
    import triton

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    result = {
        "benchmark": "compile_overhead",
        "device": device_name,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "git_commit": args.git_commit
        or subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "reps": args.reps,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    lines = [
        f'# Compile overhead of backend="llm" ({device_name}, torch {torch.__version__}, {result["date"]})',
        "",
        "| model | inductor s | llm miss s | overhead | pass s (miss) | graphs | pass ms per graph "
        "| of it, family keys | llm hit s | overhead | pass s (hit) | substituted |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        graphs = max(1, r["llm_miss_stats"].get("graphs", 1))
        lines.append(
            f"| {r['model']} | {r['inductor']:.2f} | {r['llm_miss']:.2f} | {r['overhead_miss']:+.1%} | "
            f"{r['llm_miss_pass_s']:.3f} ({r['pass_share_miss']:.1%}) | {graphs} | "
            f"{1e3 * r['llm_miss_pass_s'] / graphs:.1f} | {1e3 * r.get('llm_miss_family_s', 0.0) / graphs:.1f} ms | "
            f"{r['llm_hit']:.2f} | {r['overhead_hit']:+.1%} | "
            f"{r['llm_hit_pass_s']:.3f} ({r['pass_share_hit']:.1%}) | {r['llm_hit_stats']['substituted']} of "
            f"{r['llm_hit_stats']['regions']} |"
        )
    lines += [
        "",
        "Warm recompile (same process, after torch._dynamo.reset(); Inductor's caches warm):",
        "",
        "| model | inductor s | llm miss s | overhead | llm hit s | overhead |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['inductor_warm']:.2f} | {r['llm_miss_warm']:.2f} | {r['overhead_warm_miss']:+.1%} | "
            f"{r['llm_hit_warm']:.2f} | {r['overhead_warm_hit']:+.1%} |"
        )
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    return "\n".join(lines)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
