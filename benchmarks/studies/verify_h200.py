"""Verify and time the hand-written kernels of tests/data/kernels on a GPU, at FIELD.md's shapes.

    python benchmarks/studies/verify_h200.py [--out benchmarks/results] [--kernels softmax,rmsnorm] [--budget-s 330]
    python benchmarks/studies/verify_h200.py --device cpu --tiny --out /tmp/v    # CPU smoke test of this script

Per kernel: export its region at FIELD.md's shape (the model it came from,
compiled with backend="llm" on the GPU: benchmarks/studies/make_regions.py --field),
then ``llm_inductor.verify.engine.verify`` with speed on: every correctness check
at that shape, then timing against Inductor default (the accept/reject decision,
margin from the config) and max-autotune (reported beside it). A kernel that
fails at any stage is a row with its error; the others go on. The JSON and the
markdown table in --out are rewritten after every kernel, so a run cut short
keeps what it finished. Kernels are ordered by where FIELD.md sees headroom.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
KERNELS = ROOT / "tests" / "data" / "kernels"  # the hand-written kernels, read as files

# kernel file → (region name in make_regions.py, FIELD.md row, shape, FIELD's inductor / max-autotune / floor ms)
CASES: dict[str, tuple[str, str, str, tuple[float, float, float] | None]] = {
    "softmax": ("softmax_bf16_wide", "softmax fwd, fp32 math", "4096x32000 bf16", (0.296, 0.263, 0.123)),
    "cross_entropy": (
        "cross_entropy_bf16_wide",
        "cross-entropy fwd (per row)",
        "4096x128256 bf16",
        (0.695, 0.637, 0.247),
    ),
    "rmsnorm": ("rmsnorm_bf16", "RMSNorm fwd", "8192x4096 bf16", (0.041, 0.036, 0.032)),
    "rope": ("rope", "RoPE fwd", "8x32x2048x128 bf16", (0.078, 0.079, 0.063)),
    "bias_gelu": ("bias_gelu", "linear+bias+GELU", "8192x4096x4096 bf16", (0.437, 0.452, 0.405)),
    "sumsq_dyn": ("sumsq_dyn", "sum of squares, symbolic dim (not in FIELD.md)", "8192 x s0=4096 fp32", None),
}
# Seconds a kernel may need (export + checks at full size + Inductor and max-autotune compiles + timing).
ESTIMATE = {"bias_gelu": 120.0}
DEFAULT_ESTIMATE = 60.0


MAX_AUTOTUNE = "max-autotune-no-cudagraphs"  # as benchmarks/run.py: CUDA graphs would hide launch cost either way


def export_regions(names: list[str], regions: Path, device: str, tiny: bool) -> dict[str, str]:
    """All regions at once, one process per model, in parallel: region name -> error for failures."""
    from make_regions import export  # beside this script

    return export([CASES[n][0] for n in names], regions, field=not tiny, device=device, parallel=True)


def run_case(
    name: str, regions: Path, timeout: float, device: str = "cuda", tiny: bool = False, export_error: str | None = None
) -> dict[str, Any]:
    from llm_inductor.config import Config
    from llm_inductor.verify.engine import verify

    region_name, row, shape, field = CASES[name]
    out: dict[str, Any] = {
        "kernel": name,
        "region": region_name,
        "field_row": row,
        "shape": "test shape (--tiny)" if tiny else shape,
        "field_ms": dict(zip(("inductor", "max_autotune", "floor"), field)) if field else None,
    }
    if export_error:
        return {**out, "status": "failed", "stage": "export", "error": export_error}
    cfg = Config.load()[0].replace(verify_timeout=timeout)
    t1 = time.monotonic()
    result = verify(
        regions / f"region_{region_name}.py",
        (KERNELS / f"{name}.py").read_text(),
        device=device,
        speed=device == "cuda",
        inductor_mode="default",
        config=cfg,
        extra_inductor_modes=(MAX_AUTOTUNE,),
    )
    out["verify_s"] = round(time.monotonic() - t1, 1)
    return {**out, "status": "ok" if result.reason in ("ok", "slower") else "rejected", "result": result.to_dict()}


def table(rows: list[dict[str, Any]], env: dict[str, Any]) -> str:
    lines = [
        f"# Hand-written kernels verified and timed on {env.get('gpu', '?')}",
        "",
        f"torch {env.get('torch')}, triton {env.get('triton')}, {env.get('date')}. Times are do_bench medians "
        "(L2 flushed), two interleaved measurements; speedup = Inductor ms / candidate ms (above 1: the kernel "
        "is faster). Accepted means correct at this shape and faster than Inductor default by the margin in "
        "both measurements; 'slower' kernels are correct. Roofline % = floor / time, floor from the measured "
        f"copy bandwidth and 679 TFLOP/s. *{MAX_AUTOTUNE}, as benchmarks/run.py.",
        "",
        "| kernel | shape | verdict | kernel ms | Inductor ms | speedup | max-autotune* ms | speedup vs MA | "
        "kernel % roofline | Inductor % roofline | FIELD.md Inductor / MA ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if env.get("merged_from"):
        lines.insert(
            3,
            f"Rows marked † were kept from an earlier run of this script on the same GPU and versions "
            f"({', '.join(env['merged_from'])}). ",
        )
    for r in rows:
        res = r.get("result") or {}
        t = res.get("timings") or {}
        ma = next(iter((t.get("extra_modes") or {}).values()), {})
        field = r.get("field_ms") or {}
        verdict = res.get("reason", r.get("status"))
        if r.get("status") == "failed":
            verdict = f"failed ({r.get('stage')})"

        def f(v: Any, fmt: str = "{:.3f}") -> str:
            return fmt.format(v) if isinstance(v, (int, float)) else "-"

        lines.append(
            f"| {r['kernel']}{' †' if r.get('run') else ''} | {r['shape']} | {verdict} | "
            f"{f(t.get('candidate_ms'))} | {f(t.get('inductor_ms'))} | "
            f"{f(t.get('speedup'), '{:.2f}x')} | {f(ma.get('inductor_ms'))} | {f(ma.get('speedup'), '{:.2f}x')} | "
            f"{f(t.get('pct_of_roofline'), '{:.0f}%')} | {f(t.get('inductor_pct_of_roofline'), '{:.0f}%')} | "
            f"{f(field.get('inductor'))} / {f(field.get('max_autotune'))} |"
        )
    problems = [r for r in rows if r.get("status") != "ok"]
    if problems:
        lines += ["", "## Not accepted or failed", ""]
        for r in problems:
            res = r.get("result") or {}
            lines.append(f"- **{r['kernel']}**: {res.get('message') or r.get('error')}")
    return "\n".join(lines) + "\n"


def environment() -> dict[str, Any]:
    import platform

    import torch
    import triton

    env: dict[str, Any] = {
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "gpu": None,
    }
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
    try:
        sys.path.insert(0, str(ROOT))
        from benchmarks.environment import git_commit, tree_hash

        env["commit"] = git_commit(None)
        env["tree"] = tree_hash()
    except Exception as e:  # the table is worth having without them
        env["commit"] = f"unknown ({type(e).__name__})"
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--kernels", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--budget-s", type=float, default=330.0, help="skip kernels that would not finish in time")
    parser.add_argument("--step-timeout", type=float, default=60.0, help="seconds per verification step")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--tiny", action="store_true", help="the CPU test shapes instead of FIELD.md's")
    parser.add_argument("--regions", type=Path, help="where to write the exported region files (default: a temp dir)")
    parser.add_argument(
        "--merge",
        type=Path,
        metavar="JSON",
        help="an earlier verify_h200.json: its rows for kernels not run now are kept (marked with its date)",
    )
    args = parser.parse_args(argv)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "verify_h200: torch sees no GPU; the CPU tests cover the verifier there (tests/test_verify_*.py)",
            file=sys.stderr,
        )
        return 2
    names = [n for n in args.kernels.split(",") if n]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(f"verify_h200: unknown kernels {unknown}; known: {', '.join(CASES)}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    regions = args.regions or Path(tempfile.mkdtemp(prefix="verify_h200_regions_"))
    env = environment()
    env["regions"] = str(regions)
    rows: list[dict[str, Any]] = []
    if args.merge:
        try:
            earlier = json.loads(args.merge.read_text())
        except (OSError, ValueError) as e:
            print(f"verify_h200: cannot read --merge {args.merge}: {e}", file=sys.stderr)
            return 2
        then = earlier.get("environment", {})
        if (then.get("gpu"), then.get("torch")) != (env.get("gpu"), env.get("torch")):
            print(
                f"verify_h200: --merge {args.merge} was measured on {then.get('gpu') or 'the CPU'} with torch "
                f"{then.get('torch')}; this run is on {env.get('gpu') or 'the CPU'} with torch {env.get('torch')}. "
                "Only runs on the same GPU and versions can share a table.",
                file=sys.stderr,
            )
            return 2
        when = then.get("date", "an earlier run")
        rows = [{**r, "run": r.get("run", when)} for r in earlier.get("rows", []) if r["kernel"] not in names]
        env["merged_from"] = sorted({r["run"] for r in rows})
    start = time.monotonic()
    print(f"verify_h200: exporting {len(names)} regions to {regions} ...", flush=True)
    export_errors = export_regions(names, regions, args.device, args.tiny)
    env["export_s"] = round(time.monotonic() - start, 1)
    for name in names:
        left = args.budget_s - (time.monotonic() - start)
        if left < ESTIMATE.get(name, DEFAULT_ESTIMATE):
            rows.append(
                {
                    "kernel": name,
                    "shape": CASES[name][2],
                    "status": "skipped",
                    "error": f"time budget: {left:.0f} s left",
                }
            )
            continue
        print(f"verify_h200: {name} ...", flush=True)
        try:
            rows.append(
                run_case(name, regions, args.step_timeout, args.device, args.tiny, export_errors.get(CASES[name][0]))
            )
        except Exception as e:  # one kernel's failure is a row, never the end of the run
            rows.append(
                {
                    "kernel": name,
                    "shape": CASES[name][2],
                    "status": "failed",
                    "stage": "verify",
                    "error": f"{type(e).__name__}: {e}",
                    "traceback": traceback.format_exc()[-2000:],
                }
            )
        r = rows[-1]
        print(
            f"verify_h200: {name}: {r['status']} {(r.get('result') or {}).get('reason', r.get('error', ''))}",
            flush=True,
        )
        order = list(CASES)
        rows.sort(key=lambda row: order.index(row["kernel"]) if row["kernel"] in order else len(order))
        (args.out / "verify_h200.json").write_text(
            json.dumps({"environment": env, "rows": rows}, indent=1, default=str)
        )
        (args.out / "verify_h200.md").write_text(table(rows, env))
    print((args.out / "verify_h200.md").read_text())
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
