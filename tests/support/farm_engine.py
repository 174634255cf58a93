"""Engines a test farm's workers run instead of ``verdict.default_verifier`` (imported there by reference)."""

from __future__ import annotations

from typing import Any


def without_policy(region_path: str, source: str, cfg: Any, mode: str) -> Any:
    """The engine with the static policy off: a candidate that kills its own process reaches the sandbox."""
    from llm_inductor.verify.engine import verify

    return verify(region_path, source, device="auto", config=cfg, inductor_mode=mode, static_policy=False)
