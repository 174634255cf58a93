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


class RegionBypass(Exception):
    """A region cannot be keyed, exported or substituted; carries the reason.

    Raised instead of producing a wrong key, like Inductor's BypassFxGraphCache.
    """
