"""Running a user's script to find its hot regions: the CLI layer's part of ``llm-inductor tune SCRIPT.py``.

The core ``search.tune.tune`` knows region files only; ``tune`` here adds the
``script=`` way in (the public ``llm_inductor.tune`` and the CLI both use it), and
hands the core a ``find_regions`` callable, so the script runs only after the
provider and the device are settled (a missing provider fails before the script runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import llm_inductor.compile.state as _state
from llm_inductor._cli_regions import run_script
from llm_inductor.config import Config
from llm_inductor.search import tune as _core
from llm_inductor.search.graphs import graph_hook


def script_regions(script: str, args: Sequence[str], cfg: Config, timeout: float | None) -> list[Path]:
    """Run the script in cache mode (hot misses become pending, with region files); return those files."""
    _state.reset()
    keep = {k: getattr(cfg, k) for k in ("cache_dir", "hot_threshold", "min_region_us", "interpret", "strict")}
    with _state.overridden(graph_hook=graph_hook(cfg)):  # graph files for the in-graph gate
        run_script(script, list(args), {**keep, "mode": "cache"}, timeout)
    seen: dict[str, Path] = {}
    for report in _state.reports:
        for row in report.regions:
            if row.status == "pending" and row.region_path:
                seen.setdefault(row.key16, Path(row.region_path))
    return list(seen.values())


def tune(
    regions: Sequence[str | Path] = (),
    *,
    script: str | None = None,
    script_args: Sequence[str] = (),
    script_timeout: float | None = None,
    **kwargs: Any,
) -> _core.TuneReport:
    """``search.tune.tune`` plus the hot regions of ``script`` run with ``script_args`` (up to ``script_timeout`` s)."""
    if script:
        kwargs["find_regions"] = lambda cfg: script_regions(script, script_args, cfg, script_timeout)
    return _core.tune(regions, **kwargs)
