"""Failure as values and the exceptions that map onto the exit codes (docs/contracts.md)."""

from __future__ import annotations


class LLMInductorError(Exception):
    exit_code = 3


class UsageError(LLMInductorError):
    """Bad input or usage: a missing file, a malformed region, no provider configured (exit 2)."""

    exit_code = 2


class NegativeResult(LLMInductorError):
    """The thing checked came out negative: rejected, no winner, failed verification (exit 1)."""

    exit_code = 1


class HarnessError(LLMInductorError):
    """The verifier itself could not run (a worker that cannot start, a lost device, the parent out of memory)
    and kept failing when retried: nothing was judged, so no verdict is reported (exit 3, an internal error).

    ``details`` (every try's message) go to the log the CLI names; the message stays one line.
    """

    exit_code = 3

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class RegionBypass(Exception):
    """A region cannot be keyed, exported or substituted; carries the reason.

    Raised instead of producing a wrong key, like Inductor's BypassFxGraphCache.
    """
