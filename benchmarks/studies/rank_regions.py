r"""The models suite's regions, ranked by what a kernel at the roofline floor would save: the pack's targets.

    python benchmarks/studies/rank_regions.py --work DIR --phase record|time|table|export|all [--cases a,b] [--tiny]

- ``record`` (GPU): each model case (prefill and training step) compiles once with ``backend="llm"`` in cache
  mode, in a child process of its own, with the work folder's cache (empty at first, so every region misses
  and the step runs Inductor's code). The child writes the pass's map of every compiled graph (forward and
  backward), as ``llm-inductor regions --json`` prints it, a region file for every region, and the hot
  misses' pending records with their graph files. It also times the case's step (CUDA events, median of 10
  after 3 warm-up steps): the case's Inductor time.
- ``time`` (GPU): each distinct region whose floor is a share of at least ``--min-share`` of some case's
  graphs, largest first, is compiled by default Inductor alone and timed (``search.baseline``, do_bench with
  the L2 flushed), one child per region, until ``--budget`` seconds are spent. What is done stays done: a
  rerun times only the rest.
- ``table`` (no GPU): per (case, region), ``time share`` = count x Inductor's time / the case's step time,
  and ``headroom`` = 1 - floor / Inductor's time. The rank is their product: the fraction of the step a
  kernel at the floor would save. Written as markdown and JSON (``--out``).

The floor is ``passes.cost``'s: each input read once and each output written once at the H200's measured
bandwidth, or its FLOPs at the measured matmul rate. A region timed alone can differ from the same code
inside its graph (what its neighbours leave in L2), so the rank picks targets; only the in-graph gate
decides what is served.

- ``export`` (GPU: prompts show Inductor's code): round 1's Batch API requests for the ``--export-top``
  ranked regions that are pending, with one prompt file per request, in ``batch_flow.py``'s layout. Its
  ``answers`` and ``import`` steps then go on with ``--work DIR --name models_flow``.

Every phase appends to ``DIR/rank.json`` as it goes. ``--tiny`` runs the plan at toy sizes on the CPU
(plumbing only: nothing is timed there, and the table says so).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # benchmarks and llm_inductor from this checkout

# The child that records one case: argv = case, tiny (0/1), out.json, the folder for region files, the GPU lock
# (a file: with --jobs > 1, other cases compile at the same time, and the step is timed holding it). It compiles
# with backend="llm" in cache mode (the work folder's cache: every hot miss is recorded as pending, with its
# region and graph files, for the export phase and the in-graph gate) and writes a region file for every
# region (the time phase's), then dumps the pass's map as `llm-inductor regions --json` would.
DRIVER = r"""
import fcntl, json, sys, time, torch
sys.path.insert(0, {root!r})
import llm_inductor
from llm_inductor._cli_regions import folded_dict
from llm_inductor.compile import state as _state
from benchmarks.suites.models import CASES
name, tiny, out, regions, lock = sys.argv[1], sys.argv[2] == "1", sys.argv[3], sys.argv[4], sys.argv[5]
options = {{"max_autotune": True}} if sys.argv[6] == "max-autotune" else {{}}
case = next(c for c in CASES if c.name == name)
dev = "cuda" if torch.cuda.is_available() else "cpu"
work = case.build(dev, tiny)
_state.export_dir = regions
step = work.make_step(lambda m: torch.compile(m, backend="llm", options=options))
step.outputs()  # compiles every graph (forward and backward)
ms = None
if dev == "cuda":
    gpu = open(lock, "a")
    fcntl.flock(gpu, fcntl.LOCK_EX)  # no other case's step runs while this one is timed
    for _ in range(3):
        step.run()
    torch.cuda.synchronize()
    times = []
    for _ in range(10):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); step.run(); b.record(); torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    ms = sorted(times)[len(times) // 2]
    gpu.close()
json.dump({{"case": name, "step_ms": ms, "inductor_mode": sys.argv[6],
           "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
           "graphs": [folded_dict(r) for r in _state.reports], "stats": _state.stats()}}, open(out, "w"))
"""


def log(*a: Any) -> None:
    print(f"[rank {time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


class State:
    """DIR/rank.json: per case its map and step time, per region its Inductor time; written after each step."""

    def __init__(self, work: Path) -> None:
        self.path = work / "rank.json"
        self.data: dict[str, Any] = (
            json.loads(self.path.read_text()) if self.path.is_file() else {"cases": {}, "regions": {}}
        )

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)


def _env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_INDUCTOR_")}
    env["LLM_INDUCTOR_CACHE_DIR"] = str(work / "cache")  # empty: every region misses, nothing is served
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return env


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _record_case(work: Path, name: str, tiny: bool, timeout: float, mode: str = "default") -> dict[str, Any]:
    """One case's child: its map and step time under Inductor ``mode``, or the error that stopped it."""
    step_out, t0 = work / f"step_{name}.json", time.time()
    cmd = [sys.executable, str(work / "driver.py"), name, "1" if tiny else "0", str(step_out), str(work / "regions")]
    cmd += [str(work / "gpu.lock"), mode]
    row: dict[str, Any] = {}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(work), timeout=timeout)
        if proc.returncode != 0 or not step_out.is_file():
            row["error"] = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    except subprocess.TimeoutExpired:
        row["error"] = [f"the case ran past --timeout {timeout:g} s"]
    row["seconds"] = round(time.time() - t0, 1)
    if "error" not in row:
        row.update(json.loads(step_out.read_text()))
    return row


def phase_record(
    work: Path, st: State, cases: list[str], tiny: bool, timeout: float, jobs: int = 1, mode: str = "default"
) -> int:
    """Record the cases not recorded yet, ``jobs`` at a time: they compile side by side (Inductor's compile is
    CPU work), and each times its step holding ``work/gpu.lock``, so no other case's step runs meanwhile.
    Another case's first step (Inductor's autotuning of its kernels) may still overlap a timing: the step time
    is the rank's denominator, never a speed claim.

    Under ``mode`` max-autotune the rest of each graph is compiled with max-autotune, and every hot region's
    sidecar names max-autotune as the baseline its kernels must beat (the pass's ``_raise_baseline``): the
    export's regions are then tuned and gated against max-autotune."""
    (work / "driver.py").write_text(DRIVER.format(root=str(ROOT)))
    todo = []
    for name in cases:
        if name in st.data["cases"] and st.data["cases"][name].get("graphs") is not None:
            log(name, "recorded already")
        else:
            todo.append(name)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(_record_case, work, name, tiny, timeout, mode): name for name in todo}
        log(f"recording {len(todo)} case(s) under {mode} Inductor, {max(1, jobs)} at a time")
        for fut in as_completed(futures):
            name, row = futures[fut], fut.result()
            if "error" in row:
                log(name, "failed:", *row["error"])
            else:
                log(name, f"{len(row['graphs'])} graphs, step {row.get('step_ms')} ms, in {row['seconds']} s")
            st.data["cases"][name] = row
            st.save()
    failed = [n for n in cases if "error" in st.data["cases"].get(n, {})]
    if failed:
        log(f"{len(failed)} of {len(cases)} case(s) not recorded: {', '.join(failed)} (a rerun records only these)")
    return 1 if failed else 0


def distinct_regions(st: State, min_share: float) -> list[dict[str, Any]]:
    """Each region once, with the largest share any case's graph gives its floor: the timing order."""
    best: dict[str, dict[str, Any]] = {}
    for name, row in st.data["cases"].items():
        for g in row.get("graphs") or []:
            for r in g["regions"]:
                if r["share"] < min_share or not r.get("key"):
                    continue
                cur = best.get(r["key16"])
                if cur is None or r["share"] > cur["share"]:
                    best[r["key16"]] = {**r, "case": name}
    return sorted(best.values(), key=lambda r: -r["share"])


NO_FILE = "no region file was exported"  # not a verdict on the region: a later run looks again


def _region_file(work: Path, key16: str) -> Path | None:
    """The region's file: the driver's export, else the cache's pending record's (a hot miss is written there
    and not exported again)."""
    for folder in (work / "regions", work / "cache" / "regions"):
        found = sorted(folder.glob(f"region_{key16}*.py"))
        if found:
            return found[0]
    return None


def _time_region(work: Path, r: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Inductor's time for one region alone, in a child that holds ``work/gpu.lock`` while it times."""
    path = _region_file(work, r["key16"])
    row: dict[str, Any] = {"ops": r["ops"], "shapes": r["shapes"]}
    if path is None:
        row["error"] = NO_FILE
        return row
    t0 = time.time()
    cmd = [sys.executable, "-m", "llm_inductor.search.baseline", str(path), "--mode", "default"]
    cmd += ["--gpu-lock", str(work / "gpu.lock")]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(work), timeout=timeout)
        if proc.returncode == 0:
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            row.update({k: res.get(k) for k in ("inductor_ms", "inductor_ms_p20_p80", "kernels", "device")})
        else:
            row["error"] = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
    except subprocess.TimeoutExpired:
        row["error"] = "Inductor's compile and timing ran past the time left"
    row["seconds"] = round(time.time() - t0, 1)
    return row


def phase_time(work: Path, st: State, min_share: float, budget: float, jobs: int = 1) -> None:
    """Time the regions not timed yet, largest share first, ``jobs`` compiling at a time; one times at a time."""
    if _device() != "cuda":
        log("no GPU here: Inductor's regions are not timed (the table ranks nothing)")
        return
    t_end = time.time() + budget
    todo = [
        r
        for r in distinct_regions(st, min_share)
        if st.data["regions"].get(r["key16"], {"error": NO_FILE}).get("error") == NO_FILE
    ]
    log(f"{len(todo)} regions to time (share >= {min_share:.0%}), budget {budget:g} s, {max(1, jobs)} at a time")
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures: dict[Future[dict[str, Any]], dict[str, Any]] = {}
        queue = list(todo)
        done = 0
        while queue or futures:
            while queue and len(futures) < max(1, jobs) and t_end - time.time() >= 30:
                r = queue.pop(0)
                futures[pool.submit(_time_region, work, r, min(t_end - time.time(), 300))] = r
            if not futures:
                log(f"budget spent: {len(queue)} regions left for the next run")
                break
            fut = next(as_completed(futures))
            r, row = futures.pop(fut), fut.result()
            done += 1
            what = row.get("inductor_ms", row.get("error"))
            log(f"({done}/{len(todo)}) {r['key16']} {' '.join(r['ops'][:6])}: {what}")
            st.data["regions"][r["key16"]] = row
            st.save()


def rank_rows(st: State) -> list[dict[str, Any]]:
    """(case, region) rows with a measured Inductor time, best target first."""
    rows = []
    for name, case in st.data["cases"].items():
        step_ms = case.get("step_ms")
        for g in case.get("graphs") or []:
            for r in g["regions"]:
                timed = st.data["regions"].get(r["key16"], {})
                ind_ms = timed.get("inductor_ms")
                if not ind_ms or not step_ms:
                    continue
                floor_ms = r["est_us"] / r["count"] / 1e3  # per occurrence
                share = r["count"] * ind_ms / step_ms
                headroom = max(0.0, 1.0 - floor_ms / ind_ms)
                rows.append(
                    {
                        "case": name,
                        "graph": g["kind"],
                        "key16": r["key16"],
                        "ops": r["ops"],
                        "shapes": r["shapes"],
                        "count": r["count"],
                        "inductor_ms": ind_ms,
                        "floor_ms": floor_ms,
                        "step_ms": step_ms,
                        "time_share": share,
                        "headroom": headroom,
                        "rank": share * headroom,
                    }
                )
    return sorted(rows, key=lambda x: -x["rank"])


def phase_table(work: Path, st: State, out: Path | None, top: int) -> str:
    rows = rank_rows(st)
    cases = st.data["cases"]
    dev = next((c.get("device") for c in cases.values() if c.get("device")), "?")
    lines = [
        f"# The models suite's regions, ranked ({datetime.date.today()})",
        "",
        f"- Device: {dev}. Script: `benchmarks/studies/rank_regions.py`. Commit {_commit()}.",
        "- rank = time share x headroom = count x (Inductor ms - floor ms) / step ms: the fraction of the step "
        "a kernel at the roofline floor would save. Inductor ms: the region alone under default Inductor "
        "(do_bench, L2 flushed). Step ms: the whole step under Inductor's code (CUDA events, median of 10).",
        "",
        "## Cases",
        "",
        "| case | step ms | graphs | regions | distinct | seconds | note |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, c in cases.items():
        graphs = c.get("graphs") or []
        n = sum(sum(r["count"] for r in g["regions"]) for g in graphs)
        d = sum(len(g["regions"]) for g in graphs)
        step = f"{c['step_ms']:.2f}" if c.get("step_ms") else "-"
        note = " ".join(c.get("error", [])) if c.get("error") else ("" if c.get("finished", True) else "cut")
        lines.append(f"| {name} | {step} | {len(graphs)} | {n} | {d} | {c.get('seconds', '-')} | {note[:120]} |")
    lines += [
        "",
        f"## Top {top} (case, region) pairs",
        "",
        "| # | case | graph | key | ops | shapes | x n | Inductor ms | floor ms | time share | headroom | rank |",
        "|---:|---|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(rows[:top], 1):
        ops = ", ".join(r["ops"][:6]) + (f", … (+{len(r['ops']) - 6})" if len(r["ops"]) > 6 else "")
        lines.append(
            f"| {i} | {r['case']} | {r['graph']} | `{r['key16']}` | {ops} | {' '.join(r['shapes'][:3])} | "
            f"{r['count']} | {r['inductor_ms']:.3f} | {r['floor_ms']:.3f} | {r['time_share']:.1%} | "
            f"{r['headroom']:.0%} | {r['rank']:.2%} |"
        )
    untimed = [k for k, v in st.data["regions"].items() if v.get("error")]
    if untimed:
        lines += ["", "Regions that could not be timed:", ""]
        lines += [f"- `{k}`: {st.data['regions'][k]['error']}" for k in untimed]
    if not rows:
        lines += ["", "No region has both a step time and an Inductor time (a run on the CPU times nothing)."]
    text = "\n".join(lines) + "\n"
    if out is not None:
        out.with_suffix(".md").write_text(text)
        out.with_suffix(".json").write_text(
            json.dumps(
                {"date": str(datetime.date.today()), "commit": _commit(), "state": st.data, "ranked": rows}, indent=1
            )
        )
    return text


def phase_export(work: Path, st: State, top: int, tiny: bool) -> int:
    """Round 1's Batch requests for the top ranked regions, in batch_flow.py's layout (its steps go on from there).

    The regions are the pending records of the work folder's cache (their region and graph files, which
    the in-graph gate needs), in rank order, each once.
    """
    sys.path.insert(0, str(Path(__file__).parent))
    from batch_flow import _config, _next_requests_path, _record_device, write_prompts

    from llm_inductor.compile import state as _state
    from llm_inductor.search.tune import tune
    from llm_inductor.verify.reference import host_gaps

    cfg = _config(work, interpret=tiny)
    pending = {p.key[:16]: p for p in _state.store(cfg).pending()}
    keys = list(dict.fromkeys(r["key16"] for r in rank_rows(st)))
    if tiny and not keys:  # nothing is timed on the CPU: take the map's order, to run the plumbing
        keys = [r["key16"] for r in distinct_regions(st, 0.0)]
    unverifiable = {
        k for k in keys if k in pending and host_gaps(Path(pending[k].region_path).read_text())
    }  # cuDNN's or flash attention's ops: no float64 reference on the host, so no candidate could be judged
    for k in sorted(unverifiable):
        log(f"{k}: ranked, but its ops have no host kernel (no_host_reference): not exported")
    chosen = [k for k in keys if k in pending and k not in unverifiable][:top]
    for k in keys[: keys.index(chosen[-1]) + 1 if chosen else 0]:
        if k not in pending:
            log(f"{k}: ranked, but no pending record (not hot in its graph): not exported")
    if not chosen:
        log("no ranked region is pending: nothing to export")
        return 1
    _record_device(work)
    out = _next_requests_path(work)
    report = tune([Path(pending[k].region_path) for k in chosen], export_batch=out, config=cfg, progress=True)
    n = write_prompts(work, out) if report.exported else 0
    log(f"exported {report.exported} request(s) for {len(chosen)} region(s) to {out}; {n} prompt file(s)")
    st.data["exported"] = {"requests": str(out.relative_to(work)), "regions": chosen}
    st.save()
    return 0 if report.exported else 1


def _commit() -> str:
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
            ).stdout.strip()
            or "?"
        )
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    from benchmarks.suites.models import CASES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, type=Path, help="the study's folder: rank.json, region files, cache")
    ap.add_argument(
        "--phase", default="all", help="record, time, table, export (comma-separated), or all (the first three)"
    )
    ap.add_argument("--cases", default=",".join(c.name for c in CASES))
    ap.add_argument("--tiny", action="store_true", help="toy sizes on the CPU: plumbing only")
    ap.add_argument("--min-share", type=float, default=0.01, help="time regions whose floor is this share of a graph")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds the time phase may spend")
    ap.add_argument("--timeout", type=float, default=400.0, help="seconds one case's record may take")
    ap.add_argument("--jobs", type=int, default=1, help="cases (record) or regions (time) compiled side by side")
    ap.add_argument("--top", type=int, default=30, help="rows of the table")
    ap.add_argument("--export-top", type=int, default=8, help="regions the export phase writes prompts for")
    ap.add_argument("--out", type=Path, help="write the table as OUT.md and OUT.json")
    ap.add_argument(
        "--inductor-mode",
        choices=("default", "max-autotune"),
        default="default",
        help="the Inductor the record phase compiles under, and so the baseline the export's regions are tuned against",
    )
    a = ap.parse_args(argv)
    known = {c.name for c in CASES}
    cases = [c for c in a.cases.split(",") if c]
    if bad := [c for c in cases if c not in known]:
        ap.error(f"unknown case(s) {', '.join(bad)}; the models suite has {', '.join(sorted(known))}")
    a.work.mkdir(parents=True, exist_ok=True)
    st = State(a.work)
    phases = ("record", "time", "table") if a.phase == "all" else tuple(a.phase.split(","))
    rc = 0
    for ph in phases:
        if ph == "record":
            rc = phase_record(a.work, st, cases, a.tiny, a.timeout, a.jobs, a.inductor_mode) or rc
        elif ph == "time":
            phase_time(a.work, st, a.min_share, a.budget, a.jobs)
        elif ph == "table":
            print(phase_table(a.work, st, a.out, a.top))
        elif ph == "export":
            rc = phase_export(a.work, st, a.export_top, a.tiny) or rc
        else:
            ap.error(f"unknown phase {ph!r}: use record, time, table, export or all")
    return rc


if __name__ == "__main__":
    sys.exit(main())
