r"""Verification throughput and memory on one GPU: a fixed set of candidates for four hot regions of the regions suite.

    python benchmarks/studies/verify_throughput.py --phase before --out DIR [--profile] \
        [--regions cross_entropy,softmax]
    python benchmarks/studies/verify_throughput.py --merge DIR/before.json DIR/after.json \
        -o results.json  # + results.md

The regions and candidates are fixed so that two engines can be compared on the same work:
- regions: the batch flow's region files (``benchmarks/results/batch_flow_state.tgz``, exported by
  ``backend="llm"`` from the regions suite's scripts at their suite shapes): cross-entropy, softmax,
  RMSNorm forward and RMSNorm backward;
- candidates: every batch-flow answer for that region (the LLM's code, as ``tune --import-batch`` reads it),
  then the tests' hand-written kernels written for that computation (``tests/data/kernels``, read as files).

The candidates go through the engine with speed on, as the tuner calls it: "before", the commit whose
throughput the issue measured, verifies them one after another (``engine.verify``); "after" verifies a
region's candidates as one round (``engine.verify_many``: shared draws and references, several at once,
timing alone on the GPU). Run the script once per engine, each from its own checkout.

Measured per region: wall seconds for all its candidates (the device is held the whole time, so
candidates per device-minute = candidates / minutes), the verdicts, and peak GPU memory, two ways:
- ``peak_gpu_mib_nvidia_smi``: the largest sum over this process and its workers of what the driver
  reports in use (``nvidia-smi``, sampled every 50 ms, so CUDA contexts and allocator caches count);
  the only measure the "before" engine allows (its workers do not report their allocator's peak);
- ``peak_gpu_mib`` (the issue's bound): this process's ``torch.cuda.max_memory_allocated`` over the
  region plus the largest worker's, less one L2-flush buffer (256 MB) where it timed ("after" only;
  for "before" rows it is the nvidia-smi figure, said so in the table);
beside the region's working set (its inputs and outputs at its sizes). ``--profile`` ("before" only:
it times stages of one verification at a time) adds where one verification's seconds go: worker start,
each worker request (load, draws, timing), the parent's float64, eager and Inductor references,
the static policy and the checks, timed by wrapping those functions in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / "benchmarks" / "results" / "batch_flow_state.tgz"
KERNELS = next(
    p for p in (ROOT / "tests" / "data" / "kernels", ROOT / "tests" / "kernels") if p.is_dir()
)  # read as files

# region name -> (key16 in the batch-flow state, hand-written kernels for the same computation)
REGIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "cross_entropy": ("c8b194665f953792", ("cross_entropy.py",)),
    "softmax": ("bae4aee963ec4545", ("softmax.py", "softmax_tuned.py")),
    "rmsnorm_fwd": ("0c88074814a2e418", ("rmsnorm.py",)),
    "rmsnorm_bwd": ("9332a61fa0c7e61d", ()),
}


# ----------------------------------------------------------------------------- candidates
def unpack_state(tarball: Path, into: Path) -> Path:
    with tarfile.open(tarball) as tar:
        tar.extractall(into, filter="data")
    return into / ".carry" / "batch_flow"


def candidates(work: Path, key16: str, hand_written: tuple[str, ...]) -> list[tuple[str, str]]:
    """(label, source) for every batch-flow answer of the region, in round order, then the hand-written kernels."""
    from llm_inductor.search.llm.prompts import extract_code

    out = []
    for answer in sorted((work / "answers").glob(f"{key16}-r*-c*.md")):
        code = extract_code(answer.read_text())
        if code:
            out.append((answer.stem, code))
    out += [(f"tests/{name}", (KERNELS / name).read_text()) for name in hand_written]
    return out


def working_set_mib(region_path: Path) -> float:
    """Inputs plus outputs of the region at its own sizes (the sidecar's specs; symbols at their hints)."""
    import sympy
    import torch

    meta = json.loads(region_path.with_suffix(".json").read_text())
    hints = {sympy.Symbol(k): v for k, v in (meta.get("symbols") or {}).items()}
    total = 0
    for spec in (*meta["inputs"], *meta["outputs"]):
        numel = 1
        for dim in spec["shape"]:
            numel *= int(sympy.sympify(dim).subs(hints))
        total += numel * getattr(torch, spec["dtype"].removeprefix("torch.")).itemsize
    return total / 2**20


# ----------------------------------------------------------------------------- memory
class GpuMemory:
    """Peak over time of the summed memory in use by this process tree on the GPU, from nvidia-smi."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval, self.peak_mib, self._stop = interval, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> GpuMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                text = subprocess.run(
                    ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout
                ours = _tree(os.getpid())
                used = sum(
                    float(mib)
                    for pid, mib in (line.split(",") for line in text.strip().splitlines() if "," in line)
                    if int(pid) in ours
                )
                self.peak_mib = max(self.peak_mib, used)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
            self._stop.wait(self.interval)


def _tree(root: int) -> set[int]:
    """This process and its descendants (workers run in their own session, but stay our children)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children[ppid].append(int(entry))
    seen, todo = set(), [root]
    while todo:
        pid = todo.pop()
        seen.add(pid)
        todo += children.get(pid, [])
    return seen


# ----------------------------------------------------------------------------- profile
class Profile:
    """Exclusive seconds per stage of a verification, by wrapping the engine's leaf functions (--profile)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[list[float]] = []
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, name: str, stage: str | Callable[..., str]) -> None:
        original = getattr(owner, name, None)
        if original is None:
            return  # this engine has no such function: its time shows up as "other"

        def timed(*args: Any, **kwargs: Any) -> Any:
            label = stage(*args, **kwargs) if callable(stage) else stage
            self._stack.append([0.0])
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.perf_counter() - t
                inner = self._stack.pop()[0]
                self.seconds[label] += spent - inner
                if self._stack:
                    self._stack[-1][0] += spent

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, original))

    def install(self) -> None:
        from llm_inductor.verify import engine, pool

        self.wrap(pool.POOL, "take", "worker start (wait for a ready worker)")
        self.wrap(pool.Worker, "wait_ready", "worker start (wait for a ready worker)")  # the engine waits on its own
        self.wrap(pool.Worker, "request", lambda self_, req, *a, **k: f"worker: {req.get('op')}")
        self.wrap(engine.policy, "check_source", "static policy")
        self.wrap(engine, "build_inputs", "draws: inputs in the parent")
        self.wrap(engine, "fp64_reference", "reference: float64")
        self.wrap(engine, "eager_reference", "reference: eager")
        self.wrap(engine, "inductor_reference", "reference: Inductor (compile + run)")
        self.wrap(engine, "judge_run", "checks")

    def take(self) -> dict[str, float]:
        out, self.seconds = dict(self.seconds), defaultdict(float)
        return out

    def uninstall(self) -> None:
        for undo in reversed(self._undo):
            undo()


# ----------------------------------------------------------------------------- run
def verify_region(
    name: str,
    region_path: Path,
    cands: list[tuple[str, str]],
    phase: str,
    profile: Profile | None,
    save: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Verify every candidate of one region in turn; save(row) after each, so a run cut short keeps its rows."""
    from llm_inductor.config import Config
    from llm_inductor.verify.engine import verify

    cfg = Config.load()[0]
    row: dict[str, Any] = {
        "region": name,
        "key16": region_path.stem.removeprefix("region_"),
        "phase": phase,
        "candidates": len(cands),
        "verdicts": [],
        "working_set_mib": round(working_set_mib(region_path), 1),
    }
    import torch

    from llm_inductor.verify import engine

    many = getattr(engine, "verify_many", None)
    torch.cuda.reset_peak_memory_stats()
    start = time.monotonic()
    with GpuMemory() as mem:
        if phase == "after" and many is not None:
            from llm_inductor.verify import draw_set, pool

            spent: dict[str, float] = defaultdict(float)
            real_request, lock = pool.Worker.request, threading.Lock()

            def request(self_: Any, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
                t = time.perf_counter()
                try:
                    return real_request(self_, msg, timeout)
                finally:
                    with lock:
                        spent[f"worker: {msg.get('op')}"] += time.perf_counter() - t

            pool.Worker.request = request  # type: ignore[method-assign]
            draw_set.SECONDS.clear()
            try:
                results = many(region_path, [src for _, src in cands], device="cuda", speed=True, config=cfg)
            finally:
                pool.Worker.request = real_request  # type: ignore[method-assign]
            # Summed over threads: parallel stages add up to more than the wall time.
            row["stage_seconds"] = {
                **{f"parent: {k}": round(v, 2) for k, v in draw_set.SECONDS.items()},
                **{k: round(v, 2) for k, v in spent.items()},
            }
            seconds = round(time.monotonic() - start, 2)
            for (label, _), result in zip(cands, results):
                row["verdicts"].append(
                    {
                        "candidate": label,
                        "reason": result.reason,
                        "accepted": result.accepted,
                        "message": result.message[:300],
                        "speedup": (result.timings or {}).get("speedup"),
                        "memory": result.memory,
                        "seconds": seconds,  # together, as one round
                    }
                )
                print(f"  {name} {label}: {result.reason}", flush=True)
            worker = max(
                (max(0, v["memory"].get("worker_peak", 0) - v["memory"].get("flush", 0)) for v in row["verdicts"]),
                default=0,
            )
            row["parent_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            row["worker_peak_mib"] = round(worker / 2**20, 1)
            row["allocated_peak_mib"] = round(row["parent_peak_mib"] + row["worker_peak_mib"], 1)
            row["drawn_working_set_mib"] = round(
                max((v["memory"].get("working_set", 0) for v in row["verdicts"]), default=0) / 2**20, 1
            )
        for label, source in cands if not row["verdicts"] else []:
            t = time.monotonic()
            try:
                result = verify(region_path, source, device="cuda", speed=True, config=cfg)
                verdict = {
                    "candidate": label,
                    "reason": result.reason,
                    "accepted": result.accepted,
                    "message": result.message[:300],
                    "speedup": (result.timings or {}).get("speedup"),
                }
            except Exception as e:  # a harness error: recorded, never a verdict
                verdict = {
                    "candidate": label,
                    "reason": "harness_error",
                    "accepted": False,
                    "message": f"{type(e).__name__}: {e}"[:300],
                    "traceback": traceback.format_exc()[-2000:],
                }
            verdict["seconds"] = round(time.monotonic() - t, 2)
            if profile is not None:
                verdict["profile_s"] = {
                    k: round(v, 3) for k, v in sorted(profile.take().items(), key=lambda kv: -kv[1])
                }
                verdict["profile_s"]["other"] = round(verdict["seconds"] - sum(verdict["profile_s"].values()), 3)
            row["verdicts"].append(verdict)
            print(f"  {name} {label}: {verdict['reason']} in {verdict['seconds']:.1f} s", flush=True)
            row["partial_seconds"], row["partial_peak_gpu_mib"] = (
                round(time.monotonic() - start, 2),
                round(mem.peak_mib, 1),
            )
            save(row)
    row.pop("partial_seconds", None), row.pop("partial_peak_gpu_mib", None)
    row["seconds"] = round(time.monotonic() - start, 2)
    row["candidates_per_device_minute"] = round(len(cands) / (row["seconds"] / 60), 3) if row["seconds"] else None
    row["peak_gpu_mib_nvidia_smi"] = round(mem.peak_mib, 1)
    row["peak_gpu_mib"] = row.get("allocated_peak_mib", row["peak_gpu_mib_nvidia_smi"])
    return row


def environment(phase: str) -> dict[str, Any]:
    import platform

    import torch
    import triton

    import llm_inductor

    return {
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "phase": phase,
        "engine": str(Path(llm_inductor.__file__).parent),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "commit": os.environ.get("BENCH_COMMIT", "unknown"),
    }


def run(args: argparse.Namespace) -> int:
    import torch

    if not torch.cuda.is_available():
        print("verify_throughput: torch sees no GPU; this benchmark measures GPU verification", file=sys.stderr)
        return 2
    names = args.regions.split(",") if args.regions else list(REGIONS)
    unknown = [n for n in names if n not in REGIONS]
    if unknown:
        print(f"verify_throughput: unknown region(s) {unknown}; choose from {sorted(REGIONS)}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    out_file = args.out / f"{args.phase}.json"
    result: dict[str, Any] = {**environment(args.phase), "rows": []}
    profile = Profile() if args.profile else None
    if profile:
        profile.install()
    with tempfile.TemporaryDirectory() as tmp:
        work = unpack_state(args.state, Path(tmp))
        for name in names:
            key16, hand = REGIONS[name]
            cands = candidates(work, key16, hand)[: args.limit or None]
            print(f"{name}: {len(cands)} candidates", flush=True)
            done = list(result["rows"])

            def save(row: dict[str, Any], done: list[dict[str, Any]] = done) -> None:  # after every candidate
                out_file.write_text(json.dumps({**result, "rows": [*done, row]}, indent=1))

            result["rows"].append(
                verify_region(name, work / "cache" / "regions" / f"region_{key16}.py", cands, args.phase, profile, save)
            )
            out_file.write_text(json.dumps(result, indent=1))
    print(f"wrote {out_file}")
    return 0


def merge(paths: list[Path], out: Path) -> int:
    runs = [json.loads(p.read_text()) for p in paths]
    merged = {k: runs[0][k] for k in ("gpu", "torch", "triton", "python")}
    # a phase file, or an earlier merge (its own runs)
    merged["runs"] = [
        {k: one.get(k) for k in ("phase", "engine", "date", "commit")} for r in runs for one in r.get("runs", [r])
    ]
    merged["rows"] = [row for r in runs for row in r["rows"]]
    out.write_text(json.dumps(merged, indent=1))
    out.with_suffix(".md").write_text(table(merged))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


def table(results: dict[str, Any]) -> str:
    """Markdown: throughput and memory per region and phase, then (when profiled) where the seconds went."""
    runs = results.get("runs") or [results]
    lines = [
        f"# Verification throughput on {results.get('gpu')}",
        "",
        f"torch {results.get('torch')}, triton {results.get('triton')}; "
        + "; ".join(f"{r['phase']}: commit {r.get('commit')}, {r.get('date')}" for r in runs)
        + ".",
        "",
        "Peak GPU MiB is the issue's measure, parent plus worker `max_memory_allocated` less one L2-flush buffer, "
        "where the engine reports it (after); a before row has only the nvidia-smi total (CUDA contexts and "
        "allocator caches included), shown in both columns and marked *.",
        "",
        "| region | phase | candidates | seconds | candidates / device-minute | peak GPU MiB | nvidia-smi MiB | "
        "working set MiB | peak / working set | verdicts |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        verdicts = ", ".join(v["reason"] for v in row["verdicts"])
        ratio = row["peak_gpu_mib"] / row["working_set_mib"] if row["working_set_mib"] else float("nan")
        smi = row.get("peak_gpu_mib_nvidia_smi", row["peak_gpu_mib"])
        star = "" if "allocated_peak_mib" in row else "*"
        lines.append(
            f"| {row['region']} | {row['phase']} | {row['candidates']} | {row['seconds']:.1f} | "
            f"{row['candidates_per_device_minute']:.2f} | {row['peak_gpu_mib']:.0f}{star} | {smi:.0f} | "
            f"{row['working_set_mib']:.0f} | {ratio:.1f}x{star} | {verdicts} |"
        )
    phases = {row["phase"] for row in results["rows"]}
    if {"before", "after"} <= phases:
        lines += ["", summary_lines(results["rows"])]
    profiled = [(row, v) for row in results["rows"] for v in row["verdicts"] if v.get("profile_s")]
    if profiled:
        stages = sorted({s for _, v in profiled for s in v["profile_s"]})
        lines += [
            "",
            "## Where one verification's seconds go",
            "",
            "Seconds per stage, exclusive (a stage's time leaves out the stages it calls). Candidates the static "
            "policy rejected take under 5 s and are left out.",
            "",
            "| region | phase | candidate | verdict | total | " + " | ".join(stages) + " |",
            "|---|---|---|---|---|" + "---|" * len(stages),
        ]
        for row, v in profiled:
            if v["reason"].startswith("policy:"):
                continue
            cells = " | ".join(f"{v['profile_s'].get(s, 0.0):.1f}" for s in stages)
            lines.append(
                f"| {row['region']} | {row['phase']} | {v['candidate']} | {v['reason']} | "
                f"{v['seconds']:.1f} | {cells} |"
            )
    return "\n".join(lines) + "\n"


def summary_lines(rows: list[dict[str, Any]]) -> str:
    """Throughput after over before per region, and their geometric mean (the issue's target: at least 4x)."""
    import math

    by = {(r["region"], r["phase"]): r for r in rows}
    ratios = []
    parts = []
    for region in dict.fromkeys(r["region"] for r in rows):
        b, a = by.get((region, "before")), by.get((region, "after"))
        if b and a and b["candidates_per_device_minute"]:
            x = a["candidates_per_device_minute"] / b["candidates_per_device_minute"]
            ratios.append(x)
            parts.append(f"{region} {x:.2f}x")
    if not ratios:
        return ""
    geo = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
    return f"Candidates per device-minute, after / before: {', '.join(parts)}; geometric mean {geo:.2f}x."


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--phase", choices=["before", "after"], help="which engine this checkout is")
    p.add_argument("--out", type=Path, help="folder for PHASE.json")
    p.add_argument("--state", type=Path, default=STATE, help="the batch flow's state tarball (regions and answers)")
    p.add_argument("--regions", help=f"comma-separated subset of {','.join(REGIONS)}")
    p.add_argument("--limit", type=int, default=0, help="at most this many candidates per region (0: all)")
    p.add_argument("--profile", action="store_true", help="time the stages of each verification")
    p.add_argument("--merge", nargs="+", type=Path, help="merge phase files into one results file (-o)")
    p.add_argument("-o", type=Path, help="the merged results file")
    args = p.parse_args(argv)
    if args.merge:
        if not args.o:
            p.error("--merge needs -o FILE")
        return merge(args.merge, args.o)
    if not (args.phase and args.out):
        p.error("give --phase and --out (or --merge ... -o FILE)")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
