"""``llm-inductor tune [SCRIPT.py [args] | REGION.py ... | --pending] [--export-batch F] [--import-batch F]``.

Exit codes (docs/contracts.md): 0 a winner was stored (or a batch round was written), 1 no
winner at all, 2 bad usage (no provider, no GPU without LLM_INDUCTOR_INTERPRET=1,
a missing file), 3 internal error (no winner where the verifier could not run: a harness failure).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_inductor._errors import HarnessError, NegativeResult, UsageError
from llm_inductor.config import Config
from llm_inductor.passes.regionfile import is_region_file
from llm_inductor.search.progress import config_lines, extension_table, summary_table

if TYPE_CHECKING:
    from llm_inductor.search.tune import TuneReport


def _cmd(args: argparse.Namespace) -> int:
    from llm_inductor._script import tune

    cfg, _ = Config.load()
    if not (args.target or args.pending or args.import_batch):
        raise UsageError("Nothing to tune: pass SCRIPT.py [args], region files, --pending, or --import-batch FILE.")
    regions: list[str] = []
    script = None
    script_args: list[str] = []
    if args.target:
        if is_region_file(args.target):
            # Region files take our options after them too (a script's trailing args are its own).
            extra = argparse.ArgumentParser(prog="llm-inductor tune", add_help=False)
            _add_options(extra)
            opts, files = extra.parse_known_args(args.rest)
            for name, value in vars(opts).items():
                if value not in (None, False):
                    setattr(args, name, value)
            regions = [args.target, *files]
        else:
            script, script_args = args.target, args.rest
    if args.import_batch and args.fresh:
        raise UsageError("--fresh starts searches over; it cannot be combined with --import-batch.")
    farm = _farm(args, cfg)
    try:
        report = tune(
            regions,
            script=script,
            script_args=script_args,
            pending=args.pending,
            export_batch=args.export_batch,
            import_batch=args.import_batch,
            config=cfg,
            fresh=args.fresh,
            script_timeout=args.timeout,
            farm=farm,
        )
    finally:
        if farm is not None:
            farm.close()
    return _report(args, cfg, report)


def _farm(args: argparse.Namespace, cfg: Config) -> Any:
    if args.export_batch and not args.import_batch:
        return None  # writes prompts only: nothing is verified
    from llm_inductor.search.farm import choose
    from llm_inductor.search.tune import target_device

    return choose(args.cluster, args.farm, target_device(cfg), args.insecure_cluster)


def _report(args: argparse.Namespace, cfg: Config, report: TuneReport) -> int:
    if report.extensions:
        print(extension_table(report.extensions))
        if not report.rows:
            won = sum(e.outcome == "won" for e in report.extensions)
            print(f"\n{won} of {len(report.extensions)} family size(s) now served; no LLM call was made.")
            if report.needs_llm:
                print(
                    f"{report.needs_llm} other pending region(s) need an LLM: set OPENAI_BASE_URL (or "
                    "LLM_INDUCTOR_PROVIDER) and run `llm-inductor tune --pending` again.",
                    file=sys.stderr,
                )
            return 0 if won else 1
    if not report.rows:
        raise NegativeResult(
            "nothing to tune: no pending hot regions. Compile with backend='llm' first, or pass SCRIPT.py."
        )
    print(summary_table(report.rows, report.total))
    print(f"\nprovider {report.provider}, target {report.device}; config:\n{config_lines(cfg)}")
    if report.answered:
        print(f"\nimported {report.answered} answer(s)")
    if report.next_batch:
        print(f"\nwrote {report.exported} request(s) for the next round to {report.next_batch}")
        print("answer them (OpenAI Batch API or any OpenAI-compatible endpoint), then run:")
        print("  llm-inductor tune --import-batch OUTPUT.jsonl")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(
                {
                    "provider": report.provider,
                    "device": report.device,
                    "next_batch": report.next_batch,
                    "exported": report.exported,
                    "answered": report.answered,
                    "rows": [r.to_dict() for r in report.rows],
                    "total": report.total.to_dict(),
                    "config": {name: value for name, _, value in cfg.describe()},
                },
                indent=1,
                default=str,
            )
        )
    if report.winners or report.waiting:
        return 0
    halted = [r for r in report.rows if r.outcome == "harness failure"]
    if halted:  # not a negative result: the verifier could not judge (its candidates are kept, unjudged)
        raise HarnessError(
            f"no winner, and the verifier could not run for {len(halted)} region(s); their searches "
            "halted with candidates unjudged",
            "\n".join(f"{r.key16}: {r.stop}" for r in halted),
        )
    print("no winner: every region stays with Inductor", file=sys.stderr)
    return 1


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pending", action="store_true", help="tune the regions recorded as pending in the cache")
    p.add_argument("--export-batch", metavar="REQUESTS.jsonl", help="write this round's prompts as Batch API requests")
    p.add_argument(
        "--import-batch", metavar="OUTPUT.jsonl", help="read Batch API answers; verify, store, plan the next round"
    )
    p.add_argument("--fresh", action="store_true", help="discard earlier search state of these regions")
    p.add_argument("--timeout", type=float, metavar="S", help="stop the script after S seconds")
    p.add_argument("--json", metavar="FILE", help="also write the summary as JSON")
    p.add_argument(
        "--farm",
        type=int,
        metavar="N",
        help="verify on N Dask workers here, one per GPU (default: every GPU, where there are two or more; 0: none)",
    )
    p.add_argument("--cluster", metavar="ADDRESS", help="verify on a running Dask cluster (tls://, or tcp:// loopback)")
    p.add_argument(
        "--insecure-cluster", action="store_true", help="accept a plain tcp:// --cluster that is not on loopback"
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="search LLM-written Triton kernels for hot regions and store the winners",
        description="Options go before SCRIPT.py: everything after it is the script's own arguments.",
    )
    p.add_argument("target", nargs="?", help="a script to run (its hot regions are tuned) or region_<key16>.py files")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the script's arguments, or more region files")
    _add_options(p)
    p.set_defaults(func=_cmd)
