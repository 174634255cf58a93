"""Online mode: tune a graph's hot misses during the compile, within budget, then compile with the winners.

``torch.compile(m, backend="llm", options={"tune": True, "max_calls": 4, ...})``. Off by
default. The region pass calls ``tune_misses`` with the hot misses of the graph it is
rewriting, before it finalizes its lookups; winners land in the store, so the
lookups that follow substitute them. Anything that goes wrong leaves the regions
with Inductor, with one warning: a compile never fails because tuning did.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from llm_inductor._errors import LLMInductorError
from llm_inductor.config import Config

log = logging.getLogger(__name__)


def wanted(cfg: Config) -> bool:
    return bool(cfg.tune or cfg.mode == "tune")


def tune_misses(infos: Sequence[Any], cfg: Config, *, verifier: Any = None, store: Any = None) -> int:
    """Tune these hot misses (RegionInfo) now; returns how many winners were stored as served."""
    if not infos or not wanted(cfg):
        return 0
    from llm_inductor.search.graphs import record_graph
    from llm_inductor.search.tune import tune

    paths = [info.write(cfg.cache_path / "regions") for info in infos]
    record_graph(infos[0].region.nodes[0].graph.owning_module, infos, cfg)
    try:
        report = tune(paths, config=cfg, verifier=verifier, store=store, progress=False)
    except LLMInductorError as e:  # no provider, no GPU: say how to fix it, compile on with Inductor
        log.warning("llm_inductor: online tuning skipped: %s", e)
        return 0
    except Exception as e:
        if cfg.strict:
            raise
        log.warning("llm_inductor: online tuning failed (%s: %s); the regions stay with Inductor", type(e).__name__, e)
        return 0
    for row in report.rows:
        log.info("llm_inductor: online tune %s: %s (%s)", row.region, row.outcome, row.stop)
    return report.winners
