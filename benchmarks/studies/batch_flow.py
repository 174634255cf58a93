"""The whole tuning flow through Batch files, on the H200, for regions from FIELD.md's table.

Steps (each a separate GPU call; the work folder travels between them):

  export   compile small scripts of the regions with backend="llm" in cache mode (hot
           misses become pending, with region and graph files), then write round 1's
           prompts as Batch API requests, and one prompt file per request.
  answers  (no GPU) gather the answers written next to the prompts into a Batch
           output file: <work>/answers/<custom_id>.md → batches/round<r>.out.jsonl.
  import   import the newest answers file: verify, time against Inductor, gate in the
           graph, store winners, and write the next round's requests and prompts.
  table    (no GPU) the results table (markdown + JSON) and the attempt records,
           under benchmarks/results/.

Every step copies the work folder to --out (the device tool's $OUT) when given, so
the next step can carry it back. Answers come from helpers that see only each
prompt file, never the project or earlier kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"

# FIELD.md's table: the regions with headroom over Inductor (floor and Inductor ms on one H200).
# name: (what, floor ms, inductor ms, script). BATCH_FLOW_SMOKE=1 runs them tiny on the CPU
# (interpret mode) to check the driver itself.
SMOKE = os.environ.get("BATCH_FLOW_SMOKE") == "1"
SIZES = dict(dev="cpu", m=8, n=33, v=45) if SMOKE else dict(dev="cuda", m=4096, n=32000, v=128256)
ROWS, DIM = (8, 33) if SMOKE else (8192, 4096)
NAME = "batch_flow"  # the results' file names (--name)
_RMS = """
import torch
x = torch.randn({rows}, {dim}, device="{dev}", dtype=torch.bfloat16{grad})
w = torch.randn({dim}, device="{dev}", dtype=torch.bfloat16{grad})
def rmsnorm(x, w):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype) * w
"""
SCRIPTS = {
    "rmsnorm_fwd": (
        "RMSNorm fwd (8192x4096 bf16)",
        0.032,
        0.041,
        _RMS
        + """
with torch.no_grad():
    torch.compile(rmsnorm)(x, w)
""",
    ),
    "softmax_fp32": (
        "softmax fwd, fp32 math (4096x32000)",
        0.123,
        0.296,
        """
import torch
x = torch.randn({m}, {n}, device="{dev}", dtype=torch.bfloat16)
def softmax(x):
    return torch.softmax(x.float(), dim=-1).to(x.dtype)
with torch.no_grad():
    torch.compile(softmax)(x)
""",
    ),
    "cross_entropy": (
        "cross-entropy fwd (4096x128256)",
        0.247,
        0.695,
        """
import torch
logits = torch.randn({m}, {v}, device="{dev}", dtype=torch.bfloat16)
target = torch.randint(0, {v}, ({m},), device="{dev}")
def ce(logits, target):
    return torch.nn.functional.cross_entropy(logits.float(), target)
with torch.no_grad():
    torch.compile(ce)(logits, target)
""",
    ),
    "rmsnorm_fwd_bwd": (
        "RMSNorm fwd+bwd (8192x4096 bf16)",
        0.079,
        0.800,
        _RMS
        + """
g = torch.randn({rows}, {dim}, device="{dev}", dtype=torch.bfloat16)
torch.compile(rmsnorm)(x, w).backward(g)
""",
    ),
}


def script_source(name: str) -> str:
    grad = ", requires_grad=True" if name.endswith("bwd") else ""
    return SCRIPTS[name][3].format(rows=ROWS, dim=DIM, grad=grad, **SIZES)


def _config(work: Path, **extra: Any) -> Any:
    from llm_inductor.config import Config

    opts = {
        "cache_dir": str(work / "cache"),
        "candidates": int(os.environ.get("BATCH_FLOW_CANDIDATES", 2)),
        "rounds": int(os.environ.get("BATCH_FLOW_ROUNDS", 3)),
        **extra,
    }
    return Config.load(opts)[0]


def _round_files(work: Path, kind: str) -> list[Path]:
    return sorted((work / "batches").glob(f"round*.{kind}.jsonl"), key=lambda p: int(p.name.split(".")[0][5:]))


def write_prompts(work: Path, requests: Path) -> int:
    """One markdown file per request: exactly what the LLM would be sent, nothing else."""
    from llm_inductor.search.llm.batch import read_requests

    folder = work / "prompts" / requests.name.split(".")[0]  # prompts/round<N>/
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for r in read_requests(requests):
        text = "\n\n".join(f"<<<{m['role']}>>>\n{m['content']}" for m in r.messages)
        (folder / f"{r.custom_id}.md").write_text(text + "\n")
        n += 1
    return n


def _record_device(work: Path) -> None:
    """The GPU this step ran on, for the table (which may be written on a machine without one)."""
    import torch

    if torch.cuda.is_available():
        info = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__}
        (work / "device.json").write_text(json.dumps(info))


def _next_requests_path(work: Path) -> Path:
    done = _round_files(work, "requests")
    n = int(done[-1].name.split(".")[0][5:]) + 1 if done else 1
    return work / "batches" / f"round{n}.requests.jsonl"


def step_export(work: Path) -> int:
    from llm_inductor._script import script_regions
    from llm_inductor.search.tune import tune

    _record_device(work)
    cfg = _config(work, min_region_us=0.0 if SMOKE else 2.0, interpret=SMOKE)
    scripts = work / "scripts"
    scripts.mkdir(parents=True, exist_ok=True)
    regions: list[Path] = []
    for name in SCRIPTS:
        path = scripts / f"{name}.py"
        path.write_text(script_source(name))
        found = script_regions(str(path), [], cfg, timeout=600)
        print(f"{name}: {len(found)} hot region(s) pending: {[p.stem for p in found]}", file=sys.stderr)
        regions += found
    out = _next_requests_path(work)
    report = tune(regions, export_batch=out, config=cfg, progress=True)
    if not report.exported:
        print("nothing exported: no hot region is pending (or every search has stopped)")
        return 1
    n = write_prompts(work, out)
    print(f"exported {report.exported} request(s) to {out}; {n} prompt file(s) in {work / 'prompts' / 'round1'}")
    return 0


def step_answers(work: Path) -> int:
    """answers/<custom_id>.md (the helper's whole reply) → batches/round<r>.out.jsonl."""
    from llm_inductor.search.llm.batch import output_line, read_requests

    requests = _round_files(work, "requests")[-1]
    lines, missing = [], []
    for r in read_requests(requests):
        ans = work / "answers" / f"{r.custom_id}.md"
        if ans.is_file():
            lines.append(output_line(r.custom_id, ans.read_text()))  # no usage: tokens are estimated
        else:
            missing.append(r.custom_id)
    out = requests.with_name(requests.name.replace(".requests.", ".out."))
    out.write_text("".join(line + "\n" for line in lines))
    print(f"{len(lines)} answer(s) → {out}" + (f"; missing: {missing}" if missing else ""))
    return 0 if lines else 1


def step_import(work: Path) -> int:
    from llm_inductor.search.tune import tune

    _record_device(work)
    answers = _round_files(work, "out")[-1]
    nxt = _next_requests_path(work)
    report = tune(import_batch=answers, export_batch=nxt, config=_config(work), progress=True)
    print(f"imported {report.answered} answer(s) from {answers.name}; winners so far: {report.winners}")
    if report.exported:
        print(f"round requests: {nxt} ({write_prompts(work, nxt)} prompt files)")
    step_table(work, _results(work))
    return 0


def _rows(work: Path) -> list[dict[str, Any]]:
    from llm_inductor.search.context import read_region
    from llm_inductor.search.search_state import all_states

    cfg = _config(work)
    rows = []
    for s in all_states(cfg):
        side = read_region(s.region_path).sidecar
        best = s.winner() or s.best()
        res = s.result or {}
        rows.append(
            {
                "region": s.key16,
                "ops": sorted(set(side.ops or ())),
                "inputs": [f"{i.dtype.replace('torch.', '')}[{','.join(i.shape)}]" for i in side.inputs],
                "rounds": s.round,
                "attempts": len(s.attempts),
                "outcomes": [a["outcome"] for a in s.attempts],
                "stop": s.done or "waiting for answers",
                "status": res.get("status"),
                "speedup": best.get("speedup") if best else None,
                "roofline_pct": best.get("roofline_pct") if best else None,
                "candidate_ms": best.get("candidate_ms") if best else None,
                "inductor_ms": best.get("inductor_ms") if best else None,
                "in_graph": (res.get("gate") or {}).get("note"),
                "calls": s.spend.calls,
                "tokens": s.spend.tokens,
                "tokens_estimated": s.spend.tokens_estimated,
                "cost": s.spend.dollars,
            }
        )
    return rows


def _results(work: Path) -> Path:
    return work / "results" if SMOKE else RESULTS  # a smoke run never touches the checked-in results


def _fmt(x: Any, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def step_table(work: Path, results: Path) -> int:
    import torch

    from llm_inductor.search.records import read_attempts

    rows = _rows(work)
    results.mkdir(parents=True, exist_ok=True)
    dev = work / "device.json"
    ran = json.loads(dev.read_text()) if dev.is_file() else {"gpu": "cpu", "torch": torch.__version__}
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), **ran}
    if NAME == "batch_flow":  # the regions of FIELD.md's table; another flow's regions come from elsewhere
        meta["field_table"] = {k: v[:3] for k, v in SCRIPTS.items()}
    (results / f"{NAME}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    md = [
        f"# Batch flow{'' if NAME == 'batch_flow' else f' ({NAME})'} on {meta['gpu']}",
        "",
        f"{meta['date']}, {meta['gpu']}, torch {meta['torch']}. "
        "Answers came from helpers that saw only each prompt. Tokens are estimates (4 chars/token): "
        "answers were gathered by hand, without `usage`.",
        "",
        "| region | ops | inputs | rounds | attempts | outcome | speedup | % roofline | cand ms | inductor ms "
        "| in-graph | est. tokens |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        outcome = f"{r['status']} ({r['stop']})" if r["status"] else r["stop"]
        md.append(
            f"| {r['region']} | {', '.join(r['ops'][:6])} | {' '.join(r['inputs'])} | "
            f"{r['rounds']} | {r['attempts']} | "
            f"{outcome} | {_fmt(r['speedup'], '.2f')} | {_fmt(r['roofline_pct'], '.0f')} | "
            f"{_fmt(r['candidate_ms'], '.4f')} | {_fmt(r['inductor_ms'], '.4f')} | "
            f"{r['in_graph'] or '-'} | {r['tokens']} |"
        )
    md += ["", "Outcomes per attempt, in order:", ""] + [f"- {r['region']}: {', '.join(r['outcomes'])}" for r in rows]
    (results / f"{NAME}.md").write_text("\n".join(md) + "\n")
    attempts = read_attempts(_config(work))
    (results / f"{NAME}_attempts.jsonl").write_text("".join(json.dumps(a) + "\n" for a in attempts))
    print(f"wrote {results / (NAME + '.md')} ({len(rows)} region(s), {len(attempts)} attempt record(s))")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=("export", "answers", "import", "table"))
    p.add_argument("--work", default=str(ROOT / ".carry" / "batch_flow"), help="the folder carried between steps")
    p.add_argument("--out", default=os.environ.get("OUT"), help="copy the work folder (and results) here at the end")
    p.add_argument(
        "--name",
        default="batch_flow",
        help="the results' file names (NAME.md, NAME.json, NAME_attempts.jsonl) and --out's folder: another flow "
        "over the same steps, such as rank_regions.py's export of the models suite, keeps its own",
    )
    args = p.parse_args(argv)
    global NAME
    NAME = args.name
    # `timeout N python batch_flow.py ...` sends SIGTERM: exit through `finally`, so the work
    # folder (saved after every answer) still reaches --out and the step can be resumed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    steps = {
        "export": step_export,
        "answers": step_answers,
        "import": step_import,
        "table": lambda w: step_table(w, _results(w)),
    }
    try:
        return steps[args.step](work)
    finally:
        if args.out:
            dest = Path(args.out) / NAME
            shutil.copytree(work, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("kernels", "*.tmp"))
            if _results(work).is_dir():
                shutil.copytree(_results(work), Path(args.out) / "results", dirs_exist_ok=True)


if __name__ == "__main__":
    sys.exit(main())
