"""``llm-inductor``: one entry point, one subcommand module per stage.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and
sets ``func`` to a callable taking the parsed args and returning an exit code.
Exit codes (docs/contracts.md): 0 success, 1 negative result, 2 bad input or usage,
3 internal error (one line here, the traceback in the log file).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import tempfile
import traceback
from pathlib import Path

from llm_inductor._errors import HarnessError, LLMInductorError

SUBCOMMANDS = (
    "llm_inductor._cli_regions",
    "llm_inductor.verify.cli",
    "llm_inductor.search.cli",
    "llm_inductor.cache.cli",
    "llm_inductor.report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-inductor", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        module.register(sub)
    return parser


def log_path() -> Path:
    return Path(tempfile.gettempdir()) / "llm_inductor-cli.log"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except HarnessError as e:  # exit 3 like any internal error: one line, the details in the log
        path = _log(argv, f"{e}\n{e.details}\n{traceback.format_exc()}")
        print(
            f"llm-inductor: internal error: harness failure, not the candidate's: {e} (details in {path})",
            file=sys.stderr,
        )
        return e.exit_code
    except LLMInductorError as e:
        print(f"llm-inductor: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("llm-inductor: interrupted", file=sys.stderr)
        return 3
    except Exception as e:
        path = _log(argv, traceback.format_exc())
        print(f"llm-inductor: internal error: {type(e).__name__}: {e} (traceback in {path})", file=sys.stderr)
        return 3


def _log(argv: list[str] | None, text: str) -> Path:
    path = log_path()
    with open(path, "a") as f:
        f.write(f"--- llm-inductor {' '.join(argv or sys.argv[1:])}\n{text}\n")
    return path


if __name__ == "__main__":
    sys.exit(main())
