"""The benchmark runner: suites x cases x modes → one results JSON, written after every mode.

    python benchmarks/run.py --suite regions --out $OUT/regions.json --time-budget 420
    python benchmarks/run.py --suite models --case llama_train --mode eager,inductor,llm --out r.json --resume
    python benchmarks/run.py --suite regions --device cpu --tiny --out /tmp/smoke.json   # CI: correctness only
    python benchmarks/run.py --merge a.json b.json -o all.json
    python benchmarks/run.py --list

--resume skips the case/mode rows already in --out (any status but "interrupted";
--retry-failed runs failed ones again). --time-budget stops before a mode that would
not finish in time and, as a last resort, interrupts one at the deadline; either way
the file is saved and a rerun with --resume continues. Exit codes: 0 every mode run
is ok (or the budget stopped the run), 1 a mode failed or was incorrect, 2 bad usage,
3 internal error.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # python benchmarks/run.py: make `benchmarks` importable from the repository
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common, environment, timing  # noqa: E402
from benchmarks import modes as modes_mod
from benchmarks.check import MAX_MULTIPLIER, MULTIPLIER  # noqa: E402
from benchmarks.suites import SUITES  # noqa: E402
from benchmarks.suites import cases as suite_cases
from llm_inductor._errors import UsageError  # noqa: E402

SAVE_MARGIN_S = 10.0  # the alarm fires this long before the budget ends: time to save and exit


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.splitlines()[0])
    p.add_argument("--suite", choices=("regions", "models", "all"), default="all")
    p.add_argument("--case", help="comma-separated case or suite names (default: every case of --suite)")
    p.add_argument(
        "--mode",
        help=f"comma-separated modes (default {','.join(modes_mod.DEFAULT_MODES)}; all: {','.join(modes_mod.MODES)})",
    )
    p.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda when available")
    p.add_argument("--tiny", action="store_true", help="tiny shapes: the CPU smoke test (correctness, not speed)")
    p.add_argument("--out", help="results JSON (written after every mode)")
    p.add_argument("--resume", action="store_true", help="continue --out: skip rows already there")
    p.add_argument("--retry-failed", action="store_true", help="with --resume, run failed and incorrect rows again")
    p.add_argument("--time-budget", type=float, default=None, metavar="S", help="stop cleanly before S seconds")
    p.add_argument(
        "--inductor-config",
        action="append",
        metavar="KEY=VALUE",
        help="torch._inductor.config patch for compiled modes",
    )
    p.add_argument("--no-profile", action="store_true", help="skip the kernel profile of compiled model steps")
    p.add_argument("--git-commit", help="the commit, where the tree has no .git (recorded as given)")
    p.add_argument("--merge", nargs="+", metavar="JSON", help="merge results files into -o")
    p.add_argument("-o", dest="merge_out", metavar="JSON", help="output of --merge")
    p.add_argument("--list", action="store_true", help="list the cases and modes, then exit")
    return p.parse_args(argv)


def select_cases(args: argparse.Namespace) -> list[common.Case]:
    """--case names; a suite's name stands for all its cases ("regions,llama_train")."""
    all_cases = suite_cases(args.suite)
    if not args.case:
        return all_cases
    by_name = {c.name: c for c in all_cases}
    picked: dict[str, common.Case] = {}
    for name in (c.strip() for c in args.case.split(",") if c.strip()):
        if name in SUITES and args.suite in (name, "all"):
            picked.update((c.name, c) for c in suite_cases(name))
        elif name in by_name:
            picked[name] = by_name[name]
        else:
            raise UsageError(
                f"Unknown --case {name!r} in suite {args.suite!r}. Cases: {sorted(by_name)} or a suite name."
            )
    return list(picked.values())


def pending_modes(doc: dict[str, Any], case: common.Case, modes: list[str], retry_failed: bool) -> list[str]:
    todo = []
    for mode in modes:
        row = common.find(doc, case.suite, case.name, mode)
        if row is None or row.get("status") == common.INTERRUPTED:
            todo.append(mode)
        elif retry_failed and row.get("status") in (common.FAILED, common.INCORRECT):
            todo.append(mode)
    return todo


class Budget:
    """Stops before a mode that would overrun (estimates), and interrupts at the deadline (SIGALRM)."""

    def __init__(self, seconds: float | None, device: str, tiny: bool) -> None:
        self.start = time.monotonic()
        self.seconds, self.device, self.tiny = seconds, device, tiny
        self._previous: Any = None
        if seconds is not None and hasattr(signal, "SIGALRM"):
            self._previous = signal.signal(signal.SIGALRM, self._alarm)
            signal.setitimer(signal.ITIMER_REAL, max(seconds - SAVE_MARGIN_S, 1.0))

    def _alarm(self, *_: Any) -> None:
        from benchmarks.execute import OutOfBudget

        raise OutOfBudget(f"the time budget ({self.seconds:g} s) ran out during this mode")

    def left(self) -> float:
        return float("inf") if self.seconds is None else self.seconds - SAVE_MARGIN_S - (time.monotonic() - self.start)

    def __call__(self, case: common.Case, mode: str) -> None:
        from benchmarks.execute import OutOfBudget

        need = common.estimate_s(case, mode, self.device, self.tiny)
        if need > self.left():
            raise OutOfBudget(f"{case.name}/{mode} needs about {need:.0f} s and {max(self.left(), 0):.0f} s are left")

    def cancel(self) -> None:
        if self.seconds is not None and hasattr(signal, "SIGALRM"):
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous or signal.SIG_DFL)


def settings(args: argparse.Namespace, device: str, modes: list[str], patches: dict[str, Any]) -> dict[str, Any]:
    from llm_inductor.passes.cost import H200

    out: dict[str, Any] = {
        "modes": {m: modes_mod.MODES[m].doc for m in modes},
        "tiny": args.tiny,
        "dtype": "bfloat16",
        "inductor_config_patches": patches,
        "inductor": environment.inductor_settings(),
        "llm_inductor": environment.llm_settings(),
        "timing": timing.SETTINGS,
        "check": f"RMSE vs float64 <= {MULTIPLIER:g} x eager's + 1/4 unit of rounding x RMS(ref); "
        f"max error <= {MAX_MULTIPLIER:g} x eager's + 1 unit x max|ref|; NaN/Inf positions equal (benchmarks/check.py)",
        "roofline": {
            "bandwidth": H200.bandwidth,
            "bf16_flops": H200.flops,
            "source": "llm_inductor.passes.cost.H200 (FIELD.md)",
        },
        "float32_matmul_precision": __import__("torch").get_float32_matmul_precision(),
        "env": {
            k: v
            for k, v in sorted(os.environ.items())
            if k.startswith(("TORCHINDUCTOR_", "LLM_INDUCTOR_", "TRITON_")) and "KEY" not in k
        },
    }
    if device == "cuda":
        try:
            out["ceilings_measured"] = environment.measure_ceilings()
        except Exception as e:  # a measurement, not a precondition
            out["ceilings_measured"] = {"error": f"{type(e).__name__}: {e}"}
    return out


def warm_up_compiler(device: str) -> None:
    """Pay the process's one-time compiler costs (worker pool, ISA probes) before any timed compile."""
    import torch

    from benchmarks.execute import _fresh_cache

    with _fresh_cache()():
        torch._dynamo.reset()
        torch.compile(lambda x: (x.sin() + 1).sum(-1))(torch.randn(8, 8, device=device))
    torch._dynamo.reset()


def run(args: argparse.Namespace) -> int:
    import torch

    if not args.out:
        raise UsageError("--out FILE.json is required (the results file, written after every mode)")
    out = Path(args.out)
    if out.exists() and not args.resume:
        raise UsageError(f"{out} exists: pass --resume to continue it, or choose another --out")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda, but torch sees no CUDA device; use --device cpu --tiny for the smoke test")
    modes = modes_mod.parse_modes(args.mode)
    patches = modes_mod.parse_inductor_config(args.inductor_config)
    cases = select_cases(args)
    doc = common.load(out) if out.exists() else common.empty_doc()
    _mark_dead(doc)
    todo = [(c, m) for c in cases if (m := pending_modes(doc, c, modes, args.retry_failed))]
    if not todo:
        print(f"nothing to run: every requested row is in {out}", file=sys.stderr)
        return 0

    run_id = common.new_run_id()
    env = {
        "device": device,
        "tiny": args.tiny,
        "run_id": run_id,
        "inductor_config": patches,
        "profile": not args.no_profile,
    }
    from benchmarks.execute import CaseRun, OutOfBudget

    def save(row: dict[str, Any]) -> None:
        common.upsert(doc, row)
        common.save(out, doc)
        if row["status"] != common.RUNNING:
            print(describe(row), file=sys.stderr, flush=True)

    stopped = None
    budget = Budget(args.time_budget, device, args.tiny)
    try:
        budget(todo[0][0], todo[0][1][0])  # nothing fits: stop before paying for the warm-up
        doc["runs"][run_id] = environment.run_info(
            device, args, settings(args, device, modes, patches), args.git_commit
        )
        common.save(out, doc)
        if any(modes_mod.MODES[m].compiled for _, ms in todo for m in ms):
            warm_up_compiler(device)
        for case, pending in todo:
            CaseRun(case, env, save, budget).run(pending)
    except OutOfBudget as e:
        stopped = str(e)
    finally:
        budget.cancel()
        for row in doc["rows"]:
            if row.get("run_id") == run_id and row.get("status") == common.RUNNING:
                row.update(status=common.INTERRUPTED, error=stopped or "interrupted")
        common.save(out, doc)
    mine = [r for r in doc["rows"] if r.get("run_id") == run_id]
    bad = [r for r in mine if r["status"] in (common.FAILED, common.INCORRECT)]
    ok = sum(r["status"] == common.OK for r in mine)
    left = sum(len(pending_modes(doc, c, modes, False)) for c in cases)
    print(f"{ok} ok, {len(bad)} failed or incorrect, {left} left; results in {out}", file=sys.stderr)
    if stopped:
        print(f"stopped by --time-budget: {stopped}. Rerun with --resume to continue.", file=sys.stderr)
    return 1 if bad else 0


def _mark_dead(doc: dict[str, Any]) -> None:
    """A row still "running" from an earlier process: that process died inside the mode."""
    for row in doc["rows"]:
        if row.get("status") == common.RUNNING:
            row.update(
                status=common.FAILED,
                stage=row.get("stage") or "run",
                error=(
                    "the process ended inside this mode (a crash, or killed from outside); --retry-failed runs it again"
                ),
            )


def describe(row: dict[str, Any]) -> str:
    head = f"[{row['suite']}/{row['case']}] {row['mode']:>16}: "
    if row["status"] != common.OK:
        return head + f"{row['status'].upper()} at {row.get('stage', '?')}: {row.get('error', '')[:300]}"
    text = f"{row['median_ms']:.4g} ms (p20 {row['p20_ms']:.4g}, p80 {row['p80_ms']:.4g})"
    if row.get("roofline_pct") is not None:
        text += f", {row['roofline_pct']:.0f}% of floor"
    if row.get("compile_cold_s") is not None:
        text += f", compile {row['compile_cold_s']:.1f} s cold / {row['compile_warm_s']:.1f} s warm"
    if "substituted" in row:
        text += f", {row['substituted']} substituted / {row['fallbacks']} fallbacks"
    return head + text


def do_merge(args: argparse.Namespace) -> int:
    if not args.merge_out:
        raise UsageError("--merge needs -o OUT.json")
    merged, notes = common.merge(common.load(p) for p in args.merge)
    common.save(args.merge_out, merged)
    for n in notes:
        print(n, file=sys.stderr)
    print(f"{len(merged['rows'])} rows from {len(args.merge)} files → {args.merge_out}", file=sys.stderr)
    return 0


def do_list() -> int:
    for case in suite_cases("all"):
        print(f"{case.suite:8} {case.name:20} {case.kind:8} {case.shape(False)}  (tiny: {case.shape(True)})")
    print("modes: " + ", ".join(f"{m.name} ({m.doc})" for m in modes_mod.MODES.values()))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        if args.list:
            return do_list()
        return do_merge(args) if args.merge else run(args)
    except UsageError as e:
        print(f"benchmarks/run.py: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        traceback.print_exc()
        print(f"benchmarks/run.py: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
