"""The tune path's registrations, run once by ``import llm_inductor`` (the package, the top layer, imports this).

- The built-in LLM providers: each registers itself with ``providers.register_provider``
  when imported; the registry and the search loop import none of them.
- The tune path, with the region pass (``_graph_pass.register_tune_path``): the graph
  files of pending regions (for the in-graph gate), online tuning of hot misses, and
  the check of a tuning setting when a backend is made. The compile path sits a layer
  below this one and never imports it.
"""

from __future__ import annotations

import llm_inductor.compile.region_pass as _graph_pass
from llm_inductor.search.graphs import record_new
from llm_inductor.search.llm import batch, openai_provider, replay  # noqa: F401  (they register themselves)
from llm_inductor.search.llm.providers import check_provider
from llm_inductor.search.online import tune_misses

_graph_pass.register_tune_path(
    _graph_pass.TunePath(record_graph=record_new, tune_misses=tune_misses, check=check_provider)
)
