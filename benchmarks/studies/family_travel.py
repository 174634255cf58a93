r"""Kernels that travel: the batch flow's winners served at other sizes after one extension, with no LLM call.

    python benchmarks/studies/family_travel.py --cache DIR --out OUT.json --phase tune|extend|measure|all [--tiny]

The cross-entropy and softmax winners of the batch flow (``benchmarks/results/batch_flow_state.tgz``,
answered by an LLM for the regions suite at 4096 rows) go the way a user's would, through the CLI and the
region pass only:

- ``tune``: a script compiles the loss (or the softmax) at the tuned size with ``backend="llm"``, which
  records the region and its family; ``llm-inductor cache add`` verifies the batch flow's kernel for that
  region and times it against Inductor (the kernel's source is read from the batch flow's cache; the
  verifier decides); ``llm-inductor tune --pending`` verifies it across the family's sizes and makes it the
  family's kernel, with a size record at 4096 rows.
- ``extend``: the same scripts compile at 1024, 2048, 8192 and 16384 rows, and an lm_head matmul followed by
  the same loss at 2 x 4096 rows (batch x sequence; the region pass keys its loss without the labels' view,
  ``passes.partition.core``, so it is the plain loss's family at 8192 rows): each is a miss, pending with
  "timing needed at this size". ``tune --pending`` (no provider configured: no LLM can be called) verifies
  the family's kernel at each size, times it against Inductor, gates it in its graph and records the
  outcome, won or lost.
- ``measure``: per case and size, in one process: eager, Inductor, max-autotune and ``backend="llm"`` (do_bench,
  L2 flushed, median ms), the kernels substituted, and the error against a float64 eager run.

Every phase appends to OUT.json as it goes. ``--tiny`` runs the same plan at toy sizes on the CPU under the
Triton interpreter (plumbing only: nothing is timed there).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # llm_inductor from this checkout, installed or not
STATE = ROOT / "benchmarks" / "results" / "batch_flow_state.tgz"
FULL = {"vocab": 128256, "width": 32000, "hidden": 4096, "tuned": 4096, "rows": [1024, 2048, 8192, 16384]}
TINY = {"vocab": 96, "width": 40, "hidden": 16, "tuned": 8, "rows": [4, 16]}

# The user's code for one case at one size (argv: case rows vocab width hidden): fn and its args.
CASE = r"""
import sys, json, torch, torch.nn.functional as F
case, rows, vocab, width, hidden = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
dev = "cuda" if torch.cuda.is_available() else "cpu"
g = torch.Generator(device=dev).manual_seed(0)
def rnd(*s):
    return torch.randn(*s, device=dev, dtype=torch.bfloat16, generator=g)
if case == "cross_entropy":
    fn = lambda x, t: F.cross_entropy(x.float(), t)
    args = (rnd(rows, vocab), torch.randint(0, vocab, (rows,), device=dev, generator=g))
elif case == "lmhead_cross_entropy":  # rows = batch x sequence
    fn = lambda h, w, t: F.cross_entropy((h @ w).view(-1, w.shape[1]).float(), t.view(-1))
    args = (rnd(2, rows // 2, hidden) * 0.05, rnd(hidden, vocab) * 0.05,
            torch.randint(0, vocab, (2, rows // 2), device=dev, generator=g))
else:
    fn = lambda x: torch.softmax(x.float(), dim=-1).to(x.dtype)
    args = (rnd(rows, width),)
"""

SCRIPT = (
    CASE
    + r"""
import llm_inductor  # backend="llm" where the package is installed (its entry point); here it may be on a path
with torch.no_grad():
    torch.compile(fn, backend=llm_inductor.backend())(*args)
rows_ = [dict(status=r.status, key16=r.key16, family=(r.family or "")[:16], path=r.region_path)
         for rep in llm_inductor.compile.state.reports for r in rep.regions if r.hot]
print(json.dumps({"stats": llm_inductor.stats(), "hot": rows_}))
"""
)


def log(*a: Any) -> None:
    print(time.strftime("%H:%M:%S"), *a, flush=True)


class Out:
    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.data = json.loads(path.read_text()) if path.is_file() else {**meta, "phases": {}}

    def add(self, phase: str, row: dict[str, Any]) -> None:
        # runs of one file span calls and commits; the time says how long each step took
        row = {
            **row,
            "commit": os.environ.get("BENCH_COMMIT", "?"),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.data["phases"].setdefault(phase, []).append(row)
        self.path.write_text(json.dumps(self.data, indent=1, default=str))


def env(cache: Path, tiny: bool) -> dict[str, str]:
    e = dict(os.environ, LLM_INDUCTOR_CACHE_DIR=str(cache), LLM_INDUCTOR_MIN_REGION_US="0")
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LLM_INDUCTOR_PROVIDER", "LLM_INDUCTOR_MODEL"):
        e.pop(var, None)  # no provider: no LLM call is possible in any phase
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), e.get("PYTHONPATH", "")])
    if tiny:
        e.update(LLM_INDUCTOR_INTERPRET="1", TRITON_INTERPRET="1")
    return e


LOGS = ROOT / ".gl" / "logs"  # every child's stderr, written as it runs: a call cut short keeps its progress


def run(cmd: list[str], e: dict[str, str], timeout: float = 590) -> subprocess.CompletedProcess:
    log("$", " ".join(cmd[-6:]))
    LOGS.mkdir(parents=True, exist_ok=True)
    what = "_".join(a.strip("-").replace("/", "_") for a in (cmd[3:5] if cmd[1] == "-m" else cmd[2:4]))
    path = LOGS / f"{time.strftime('%H%M%S')}-{what}.log"  # e.g. 031244-tune_pending, 030411-softmax_2048
    with open(path, "w") as err:
        p = subprocess.run(cmd, env=e, stdout=subprocess.PIPE, stderr=err, text=True, timeout=timeout)
    p.stderr = path.read_text(errors="replace")
    tail = (p.stderr or "").strip().splitlines()[-6:]
    log(f"rc={p.returncode}", *(f"\n    {line}" for line in tail))
    return p


def compile_case(case: str, rows: int, sizes: dict[str, Any], e: dict[str, str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(SCRIPT)
    args = [str(rows), str(sizes["vocab"]), str(sizes["width"]), str(sizes["hidden"])]
    p = run([sys.executable, f.name, case, *args], e)
    if p.returncode != 0:
        return {"error": (p.stderr or "")[-1500:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def cli(args: list[str], e: dict[str, str], timeout: float = 590) -> dict[str, Any]:
    p = run([sys.executable, "-m", "llm_inductor.cli", *args], e, timeout)
    return {"rc": p.returncode, "stdout": p.stdout[-4000:], "stderr": p.stderr[-3000:]}


# The batch flow's answers that today's verifier accepts for these regions (its throughput study verified
# them all: benchmarks/results/2026-12-01-h200-verify-throughput.md); the others fail the static policy.
ANSWERS = {"cross_entropy": "c8b194665f953792-r1-c1", "softmax": "bae4aee963ec4545-r1-c1"}


def winner_source(case: str) -> str:
    """The LLM's kernel for the case, as ``tune --import-batch`` reads an answer."""
    from llm_inductor.search.llm.prompts import extract_code

    with tempfile.TemporaryDirectory() as d:
        with tarfile.open(STATE) as t:
            t.extractall(d, filter="data")
        answer = next(Path(d).rglob(f"answers/{ANSWERS[case]}.md")).read_text()
    code = extract_code(answer)
    if not code:
        raise SystemExit(f"no code block in the batch flow's answer {ANSWERS[case]}")
    return code


def phase_tune(cache: Path, sizes: dict[str, Any], e: dict[str, str], out: Out, cases: list[str]) -> None:
    kernels = cache / "batch_flow_kernels"
    kernels.mkdir(parents=True, exist_ok=True)
    for case in cases:
        kernel = kernels / f"{case}.py"
        override = os.environ.get("FAMILY_TRAVEL_KERNELS")  # --tiny dry runs: CPU-friendly kernels instead
        src = (Path(override) / f"{case}.py").read_text() if override else winner_source(case)
        kernel.write_text(src)
        compiled = compile_case(case, sizes["tuned"], sizes, e)
        hot = [r for r in compiled.get("hot", []) if r.get("path")]
        row = {"case": case, "rows": sizes["tuned"], "compile": compiled}
        if not hot:
            out.add("tune", {**row, "error": "no hot region recorded"})
            continue
        row["add"] = cli(["cache", "add", hot[0]["path"], str(kernel)], e)
        out.add("tune", row)
    phase_convert(cache, sizes, e, out, cases)


def phase_convert(cache: Path, sizes: dict[str, Any], e: dict[str, str], out: Out, cases: list[str]) -> None:
    """``tune --pending``: the added entries become their families' kernels, where right across the sizes."""
    out.add("convert", {"tune_pending": cli(["tune", "--pending"], e)})
    out.add("convert", {"ls": cli(["cache", "ls"], e)})


def extend_cases(sizes: dict[str, Any], cases: list[str]) -> list[tuple[str, int]]:
    """Every case at every size asked; lm_head + loss where its rows (2 x the tuned rows) are among them."""
    todo = [(c, r) for c in cases if c != "lmhead_cross_entropy" for r in sizes["rows"]]
    if "cross_entropy" in cases and 2 * sizes["tuned"] in sizes["rows"]:
        todo.append(("lmhead_cross_entropy", 2 * sizes["tuned"]))
    return todo


def phase_extend(cache: Path, sizes: dict[str, Any], e: dict[str, str], out: Out, cases: list[str]) -> None:
    for case, rows in extend_cases(sizes, cases):
        out.add("extend", {"case": case, "rows": rows, "compile": compile_case(case, rows, sizes, e)})
    out.add("extend", {"tune_pending": cli(["tune", "--pending"], e)})
    out.add("extend", {"ls": cli(["cache", "ls"], e)})


MEASURE = (
    CASE
    + r"""
import time, triton.testing, llm_inductor
from llm_inductor.cache.sizes import host_bound
from llm_inductor.search.gate import host_us_per_call
ref = fn(*[a.double() if a.is_floating_point() else a for a in args])
row = {"case": case, "rows": rows}
for mode in ("eager", "inductor", "max-autotune", "llm"):
    torch._dynamo.reset()
    llm_inductor.reset_stats()
    f = {"eager": fn, "inductor": torch.compile(fn), "llm": torch.compile(fn, backend=llm_inductor.backend()),
         "max-autotune": torch.compile(fn, mode="max-autotune-no-cudagraphs")}[mode]
    try:
        with torch.no_grad():
            y = f(*args)
            ms = triton.testing.do_bench(lambda: f(*args), warmup=25, rep=200) if dev == "cuda" else None
            host_us = host_us_per_call(lambda: f(*args), dev, 100 if dev == "cuda" else 2)
        row[mode] = {"ms": ms, "host_us": host_us, "err_vs_fp64": float((y.double() - ref.double()).abs().max())}
        if mode == "llm" and ms is not None and host_bound({"with_ms": ms, "with_host_us": host_us}):
            import cProfile, io, pstats  # where a host-bound call's time goes
            prof = cProfile.Profile()
            with torch.no_grad():
                prof.runcall(lambda: [f(*args) for _ in range(50)])
            text = io.StringIO()
            pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(25)
            row[mode]["profile"] = text.getvalue()[-6000:]
    except Exception as e:
        row[mode] = {"error": f"{type(e).__name__}: {e}"[:300]}
    if mode == "llm":
        row[mode]["stats"] = llm_inductor.stats()
        row[mode]["status"] = [r.status for rep in llm_inductor.compile.state.reports for r in rep.regions if r.hot]
print(json.dumps(row))
"""
)


def phase_measure(cache: Path, sizes: dict[str, Any], e: dict[str, str], out: Out, cases: list[str]) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(MEASURE)
    todo = [(c, sizes["tuned"]) for c in cases] + extend_cases(sizes, cases)
    for case, rows in todo:
        args = [str(rows), str(sizes["vocab"]), str(sizes["width"]), str(sizes["hidden"])]
        p = run([sys.executable, f.name, case, *args], e)
        row = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else {"case": case, "rows": rows}
        if p.returncode != 0:
            row["error"] = (p.stderr or "")[-1500:]
        out.add("measure", row)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", required=True, type=Path, help="the kernel cache the phases share")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--phase", default="all", help="tune, convert, extend, measure (comma-separated), or all")
    ap.add_argument("--rows", help="the other sizes, comma-separated (default: 1024,2048,8192,16384)")
    ap.add_argument("--cases", default="cross_entropy,softmax")
    ap.add_argument("--tiny", action="store_true", help="toy sizes on the CPU under the interpreter")
    a = ap.parse_args(argv)
    import torch

    sizes = dict(TINY if a.tiny else FULL)
    if a.rows:
        sizes["rows"] = [int(r) for r in a.rows.split(",")]
    cases = a.cases.split(",")
    meta = {
        "study": "family_travel",
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "commit": os.environ.get("BENCH_COMMIT", "?"),
        "date": time.strftime("%Y-%m-%d"),
        "sizes": sizes,
    }
    out = Out(a.out, meta)
    e = env(a.cache, a.tiny)
    phases = ("tune", "extend", "measure") if a.phase == "all" else tuple(a.phase.split(","))
    for ph in phases:
        log("phase", ph)
        try:
            run_phase = {"tune": phase_tune, "convert": phase_convert, "extend": phase_extend, "measure": phase_measure}
            run_phase[ph](a.cache, sizes, e, out, cases)
        except Exception:
            out.add(ph, {"error": traceback.format_exc()[-3000:]})
            raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
