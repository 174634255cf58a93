"""The compile path: what runs inside ``torch.compile(model, backend="llm")``.

    dynamo_backend.py the Dynamo backend: Inductor's compile_fx with the region pass in its inner compile
    region_pass.py  one ATen graph → regions → keys → lookups → (pending | online tune) → rewritten graph
    aot.py          AOTAutograd's cache kept on, keyed on our settings and the store's generation
    runtime.py      the generic op ``llm_inductor::kernel`` and its kernel registry
    state.py        this process's config, store, counters and region reports

Data flows one way: backend → region pass → cache lookup → rewrite → runtime op. The tune
path sits a layer above and reaches the region pass only through ``region_pass.register_tune_path``.
"""

from llm_inductor.compile import runtime as _runtime  # registers the llm_inductor::kernel op

# Triton picks interpreter mode at its own import: before anything below imports it.
_runtime.prepare_interpreter()

from llm_inductor.compile.dynamo_backend import backend, llm_backend  # noqa: E402
from llm_inductor.compile.state import reset, stats  # noqa: E402

__all__ = ["backend", "llm_backend", "reset", "stats"]
