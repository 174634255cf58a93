"""Graph files: the whole ATen graph a hot region came from, for the in-graph gate.

A region winner is served only after the graph around it has been timed with and
without it (``gate.py``). The region file alone cannot show that, since a kernel
that wins alone can still slow the graph by breaking Inductor's fusions with its
neighbours, so each pending region also records its graph, rendered exactly like a
region file (``forward`` + ``make_inputs``, sidecar beside it) by ``passes.region``.
``graphs/by_region/<key16>`` names the graph file of each region.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx

from llm_inductor.config import Config
from llm_inductor.passes import regionfile
from llm_inductor.passes.partition import Region

log = logging.getLogger(__name__)


def graphs_dir(cfg: Config) -> Path:
    return cfg.cache_path / "graphs"


def whole_graph_region(gm: fx.GraphModule) -> Region:
    """The entire graph as one Region: every call, tensor placeholders in, tensor outputs out."""
    nodes = [n for n in gm.graph.nodes if n.op == "call_function"]
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder" and isinstance(n.meta.get("val"), torch.Tensor)]
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    outputs: list[fx.Node] = []
    for a in out_node.all_input_nodes:
        if a.op == "call_function" and isinstance(a.meta.get("val"), torch.Tensor) and a not in outputs:
            outputs.append(a)
    return Region(0, nodes, None, inputs, outputs)


def record_graph(gm: fx.GraphModule | None, infos: Sequence[Any], cfg: Config) -> Path | None:
    """Write the graph these regions (RegionInfo) belong to, once per graph; None if it cannot be rendered.

    Usable as ``_state.graph_hook`` (``tune SCRIPT.py`` installs it) and from online
    mode. Never raises: without a graph file the gate says "not measured (no graph
    file)" and the winner is stored as ``ungated``, which is not served.
    """
    if gm is None or not infos:
        return None
    try:
        from llm_inductor.passes.region import describe

        g = describe(whole_graph_region(gm))
        folder = graphs_dir(cfg)
        py = regionfile.script_path(folder, g.key16, prefix="graph")
        if not py.exists():
            side = g.sidecar().with_fields(regions=sorted(i.key16 for i in infos))
            regionfile.write(folder, g.key16, g.source(), side, prefix="graph")
        links = folder / "by_region"
        links.mkdir(parents=True, exist_ok=True)
        for info in infos:
            (links / info.key16).write_text(py.name)
        return py
    except Exception as e:  # a graph that cannot be rendered only costs the gate its measurement
        log.info("llm_inductor: no graph file for regions %s: %s: %s", [i.key16 for i in infos], type(e).__name__, e)
        return None


def record_new(gm: fx.GraphModule, infos: Sequence[Any], cfg: Config) -> None:
    """Write the whole graph once for the regions that have no graph file yet (the region pass's pending regions)."""
    new = [info for info in infos if graph_for(info.key16, cfg) is None]
    if new:
        record_graph(gm, new, cfg)


def graph_hook(cfg: Config) -> Callable[[fx.GraphModule, str, Sequence[Any]], None]:
    """A ``_state.graph_hook`` that records the graph of every hot region it sees."""

    def hook(gm: fx.GraphModule, kind: str, infos: Sequence[Any]) -> None:
        hot = [i for i in infos if (i.cost or {}).get("hot")]
        record_graph(gm, hot, cfg)

    return hook


def graph_for(key16: str, cfg: Config) -> Path | None:
    link = graphs_dir(cfg) / "by_region" / key16
    if not link.is_file():
        return None
    py = graphs_dir(cfg) / link.read_text().strip()
    return py if py.is_file() else None
