"""``llm-inductor regions SCRIPT.py [args]``: run a script and map the fusion regions of every compiled graph.

The script runs as ``__main__`` in this process, with every ``torch.compile`` call
routed through the llm backend in discover mode, whatever backend it names.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import runpy
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import torch

from llm_inductor import _state
from llm_inductor._errors import UsageError
from llm_inductor.config import Config


@contextlib.contextmanager
def routed_compile(options: dict[str, Any]) -> Iterator[None]:
    """Make every torch.compile in the block use the llm backend with these options."""
    from llm_inductor._backend import backend

    original = torch.compile

    def compile(model: Any = None, **kwargs: Any) -> Any:
        kwargs.pop("backend", None)
        mode = kwargs.pop("mode", None)
        user_options = kwargs.pop("options", None) or {}
        llm = backend(inductor_mode=mode, **{**user_options, **options})
        if model is None:  # used as @torch.compile(...)
            return lambda fn: original(fn, backend=llm, **kwargs)
        return original(model, backend=llm, **kwargs)

    torch.compile = compile  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.compile = original  # type: ignore[assignment]


@contextlib.contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"the script ran past --timeout {seconds:g}s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_script(path: str | Path, argv: list[str], options: dict[str, Any], timeout: float | None = None) -> bool:
    """Run a user script as __main__ with torch.compile routed through llm. Returns False on timeout.

    Raises UsageError if the script is missing or fails.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"script not found: {path}")
    old_argv, old_path = sys.argv[:], sys.path[:]
    sys.argv = [str(path), *argv]
    sys.path.insert(0, str(path.resolve().parent))
    try:
        with routed_compile(options), _deadline(timeout):
            runpy.run_path(str(path), run_name="__main__")
    except TimeoutError as e:
        print(f"llm-inductor: {e}; reporting the graphs compiled so far", file=sys.stderr)
        return False
    except SystemExit as e:
        if e.code not in (None, 0):
            raise UsageError(f"{path} exited with status {e.code}") from None
    except Exception as e:
        raise UsageError(f"{path} failed: {type(e).__name__}: {e}. Fix the script, or run it alone first.") from e
    finally:
        sys.argv, sys.path = old_argv, old_path
    return True


def format_reports(reports: list[_state.GraphReport]) -> str:
    lines: list[str] = []
    for i, r in enumerate(reports):
        lines.append(f"graph {i} ({r.kind}): {len(r.regions)} region(s), {r.substituted} substituted")
        lines.append(f"  {'key':16}  {'share':>6}  {'est µs':>9}  {'hot':3}  {'status':8}  ops / input shapes")
        for row in r.regions:
            ops = ", ".join(row.ops[:8]) + (f", … (+{len(row.ops) - 8})" if len(row.ops) > 8 else "")
            status = row.status.split(":")[0]
            lines.append(
                f"  {row.key16:16}  {row.share:6.1%}  {row.est_us:9.2f}  {'yes' if row.hot else 'no':3}  {status:8}  "
                f"{ops}  <- {' '.join(row.shapes)}"
            )
            if ":" in row.status:
                lines.append(f"  {'':16}  {row.status}")
    return "\n".join(lines)


def _cmd(args: argparse.Namespace) -> int:
    Config.load()  # a bad LLM_INDUCTOR_* value is a usage error before the script runs
    if args.export:
        Path(args.export).mkdir(parents=True, exist_ok=True)
        _state.export_dir = args.export
    _state.reset()
    finished = run_script(args.script, args.args, {"mode": "discover"}, args.timeout)
    if args.json:
        print(json.dumps({"finished": finished, "graphs": [_state.as_dict(r) for r in _state.reports], "stats": _state.stats()}, indent=1))
    else:
        print(format_reports(_state.reports) if _state.reports else "no graph was compiled")
        if args.export:
            print(f"region files written to {args.export}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("regions", help="run a script and list the fusion regions of its compiled graphs")
    p.add_argument("script", help="the Python script to run (as __main__)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    p.add_argument("--export", metavar="DIR", help="write region_<key16>.py and .json for every region")
    p.add_argument("--timeout", type=float, metavar="S", help="stop the script after S seconds")
    p.add_argument("--json", action="store_true", help="print the map as JSON")
    p.set_defaults(func=_cmd)
