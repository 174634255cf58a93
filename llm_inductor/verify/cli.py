"""``llm-inductor verify REGION.py CANDIDATE.py [--device cpu|cuda] [--json] [--no-speed]``.

Exit 0: accepted. Exit 1: rejected, with the reason code and what failed where, or not
accepted because the region is degenerate (its reference is rounding noise: nothing can be).
Exit 2: bad input (a missing or non-UTF-8 file, a region without forward/make_inputs,
a syntax error in the region, a GPU asked for where there is none).
Exit 3: an internal error, a persistent harness failure included (a worker that cannot
start, a lost device, this process out of memory): the candidate was not judged.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llm_inductor._errors import HarnessError, NegativeResult
from llm_inductor.verify.result import REASONS, REGION_REASONS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "verify",
        help="verify (and on a GPU, time) one candidate kernel against a region file",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("region", help="region_<key16>.py (its .json sidecar is read when present)")
    p.add_argument("candidate", help="candidate .py defining forward(*inputs) and @triton.jit kernels")
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="cuda times against Inductor; cpu checks correctness under the Triton interpreter",
    )
    p.add_argument("--json", action="store_true", help="print the full result record as JSON")
    p.add_argument("--no-speed", action="store_true", help="check correctness only (the default on cpu)")
    p.add_argument(
        "--inductor-mode", default="default", help="the Inductor mode to compare against: default | max-autotune | ..."
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from llm_inductor._files import read_source
    from llm_inductor.verify.engine import verify

    source = read_source(Path(args.candidate), "candidate file")
    result = verify(
        args.region,
        source,
        device=args.device,
        speed=False if args.no_speed else None,
        inductor_mode=args.inductor_mode,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=1, sort_keys=True, default=str))
    else:
        print(result.summary())
        for c in result.checks:
            print(f"  {'ok  ' if c.passed else 'FAIL'} {c.name}: {c.detail}")
        for key in ("candidate_ms", "inductor_ms", "speedup", "pct_of_roofline"):
            if key in result.timings:
                print(f"  {key}: {result.timings[key]:.4g}")
    if result.harness_failure:  # stderr only: stdout stays one JSON document under --json
        raise HarnessError(f"the verifier could not run ({result.reason}); nothing was judged", result.message)
    if result.reason in REGION_REASONS:
        raise NegativeResult(f"not judged ({result.reason}), whatever the candidate: {REASONS[result.reason]}")
    if not result.accepted:
        raise NegativeResult(f"candidate rejected ({result.reason})")
    return 0
