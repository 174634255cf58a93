"""``llm-inductor regions SCRIPT.py [args]``: run a script and map the fusion regions of every compiled graph.

The script runs as ``__main__`` in this process, with every ``torch.compile`` call
routed through the llm backend in discover mode, whatever backend it names.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import runpy
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

import llm_inductor.compile.state as _state
from llm_inductor._errors import UsageError
from llm_inductor.config import Config


@contextlib.contextmanager
def routed_compile(options: dict[str, Any]) -> Iterator[None]:
    """Make every torch.compile in the block use the llm backend with these options."""
    from llm_inductor.compile.dynamo_backend import backend

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


class ScriptTimeout(BaseException):
    """The script ran past ``--timeout``.

    A BaseException, like KeyboardInterrupt: the backend falls back to Inductor on any ``Exception`` raised while
    it compiles, and so does much of the user's own code, which would swallow the deadline and let the script run on.
    """


@contextlib.contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise ScriptTimeout(f"the script ran past --timeout {seconds:g}s")

    old = signal.signal(signal.SIGALRM, expire)
    # The alarm repeats each second until the block ends: a handler that catches even BaseException delays the
    # stop by a second, and cannot cancel it.
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        except ScriptTimeout:  # a repeat that fired on the way here: the next one is a second away
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
    except ScriptTimeout as e:
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


def fold(rows: list[_state.RegionRow]) -> list[list[_state.RegionRow]]:
    """The occurrences of each distinct region of one graph, in order of first appearance.

    A model of N identical layers yields N rows with one key (so one cost). Rows fold only when
    key, ops, shapes, status, hot and region file agree; an unkeyed region folds by its ops and shapes.
    """
    groups: dict[tuple, list[_state.RegionRow]] = {}
    for row in rows:
        ident = (row.key or row.key16, tuple(row.ops), tuple(row.shapes), row.status, row.hot, row.region_path)
        groups.setdefault(ident, []).append(row)
    return list(groups.values())


def folded_dict(r: _state.GraphReport) -> dict[str, Any]:
    """`_state.as_dict` with each distinct region once: share and est_us summed, count and occurrences added."""
    d = _state.as_dict(r)
    d["regions"] = [
        {
            **rows[0].__dict__,
            "share": sum(row.share for row in rows),
            "est_us": sum(row.est_us for row in rows),
            "count": len(rows),
            "occurrences": [{"anchor": row.anchor, "share": row.share, "est_us": row.est_us} for row in rows],
        }
        for rows in fold(r.regions)
    ]
    return d


LEGEND = (
    "×n: occurrences of the region in its graph; share and est µs are summed over them, and hot is judged on that sum"
)


def format_reports(reports: list[_state.GraphReport]) -> str:
    lines: list[str] = []
    for i, r in enumerate(reports):
        groups = fold(r.regions)
        distinct = f", {len(groups)} distinct" if len(groups) != len(r.regions) else ""
        lines.append(f"graph {i} ({r.kind}): {len(r.regions)} region(s){distinct}, {r.substituted} substituted")
        lines.append(
            f"  {'key':16}  {'×n':>4}  {'share':>6}  {'est µs':>9}  {'hot':3}  {'status':8}  ops / input shapes"
        )
        for rows in groups:
            row = rows[0]
            ops = ", ".join(row.ops[:8]) + (f", … (+{len(row.ops) - 8})" if len(row.ops) > 8 else "")
            status = row.status.split(":")[0]
            share, est_us = sum(o.share for o in rows), sum(o.est_us for o in rows)
            lines.append(
                f"  {row.key16:16}  {'×' + str(len(rows)):>4}  {share:6.1%}  {est_us:9.2f}  "
                f"{'yes' if row.hot else 'no':3}  {status:8}  "
                f"{ops}  <- {' '.join(row.shapes)}"
            )
            if ":" in row.status:
                lines.append(f"  {'':16}  {row.status}")
    if reports:
        lines.append(LEGEND)
    return "\n".join(lines)


# regions' own options, with the metavar of the value they take (None: a flag)
OWN_OPTIONS = {"--export": "DIR", "--timeout": "S", "--json": None}


def misplaced_options(script_args: list[str]) -> list[tuple[int, list[str]]]:
    """regions' own options among the script's arguments: (index, the option and its value) for each.

    The scan stops at a ``--``: what follows it is the script's positionals by convention.
    """
    found, i = [], 0
    while i < len(script_args) and script_args[i] != "--":
        name = script_args[i].split("=", 1)[0]
        if name in OWN_OPTIONS:
            takes_value = OWN_OPTIONS[name] is not None and "=" not in script_args[i]
            found.append((i, script_args[i : i + 1 + takes_value]))
            i += takes_value
        i += 1
    return found


def _warn_misplaced(
    args: argparse.Namespace, script: str, script_args: list[str], found: list[tuple[int, list[str]]]
) -> None:
    """Options meant for regions but written after the script go to the script; say so, with the fixed command."""
    moved = (["--export", args.export] if args.export else []) + (
        ["--timeout", f"{args.timeout:g}"] if args.timeout else []
    )
    moved += ["--json"] * args.json
    taken: set[int] = set()
    for i, group in found:
        taken.update(range(i, i + len(group)))
        metavar = OWN_OPTIONS[group[0].split("=", 1)[0]]
        if metavar is None:
            moved += group * (group[0] not in moved)
        else:  # a trailing --export without its value: show where the value goes
            moved += group + [metavar] * (len(group) == 1 and "=" not in group[0])
    rest = [a for i, a in enumerate(script_args) if i not in taken]
    fixed = ["llm-inductor", *["-v"] * getattr(args, "verbose", False), "regions", *moved, script, *rest]
    names, one = ", ".join(" ".join(group) for _, group in found), len(found) == 1
    print(
        f"llm-inductor: warning: {names} after the script {'is' if one else 'are'} passed to {script}, not to regions "
        f"(options of regions go before the script).\n"
        f"  For regions, run: {shlex.join(fixed)}\n"
        f"  (if {'it is' if one else 'they are'} {script}'s own, put -- before the script to silence this warning)",
        file=sys.stderr,
    )


def _cmd(args: argparse.Namespace) -> int:
    command, explicit = list(args.command), bool(args.command) and args.command[0] == "--"
    if explicit:
        command.pop(0)
    if not command:
        raise UsageError(
            "regions needs a script: llm-inductor regions [--export DIR] [--timeout S] [--json] SCRIPT.py [args]"
        )
    script, script_args = command[0], command[1:]
    Config.load()  # a bad LLM_INDUCTOR_* value is a usage error before the script runs
    found = [] if explicit else misplaced_options(script_args)
    if found:
        _warn_misplaced(args, script, script_args, found)
    if args.export:
        Path(args.export).mkdir(parents=True, exist_ok=True)
        _state.export_dir = args.export
    _state.reset()
    finished = run_script(script, script_args, {"mode": "discover"}, args.timeout)
    if args.json:
        print(
            json.dumps(
                {"finished": finished, "graphs": [folded_dict(r) for r in _state.reports], "stats": _state.stats()},
                indent=1,
            )
        )
    else:
        print(format_reports(_state.reports) if _state.reports else "no graph was compiled")
        if args.export:
            print(f"region files written to {args.export}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "regions",
        help="run a script and list the fusion regions of its compiled graphs",
        usage="%(prog)s [-h] [--export DIR] [--timeout S] [--json] [--] SCRIPT.py [args]",
        epilog="Options go before the script; everything after it is the script's own arguments "
        "(an optional -- may stand before the script).",
    )
    # One REMAINDER positional, not script + REMAINDER: argparse would drop a "--" among the script's
    # arguments (`regions s.py -- x` gave s.py ["x"]), and a "--" before the script must stay visible.
    p.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="SCRIPT.py [args]",
        help="the script to run (as __main__) and its arguments",
    )
    p.add_argument("--export", metavar="DIR", help="write region_<key16>.py and .json for every region")
    p.add_argument("--timeout", type=float, metavar="S", help="stop the script after S seconds")
    p.add_argument("--json", action="store_true", help="print the map as JSON")
    p.set_defaults(func=_cmd)
