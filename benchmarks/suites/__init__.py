"""The suites: ``regions`` (hot regions at FIELD.md's shapes) and ``models`` (transformers models)."""

from __future__ import annotations

from benchmarks.common import Case

SUITES = ("regions", "models")


def cases(suite: str) -> list[Case]:
    """The cases of a suite, or of every suite for "all"; models import transformers only when asked."""
    out: list[Case] = []
    if suite in ("regions", "all"):
        from benchmarks.suites.regions import CASES

        out += CASES
    if suite in ("models", "all"):
        from benchmarks.suites.models import CASES as MODEL_CASES

        out += MODEL_CASES
    return out
