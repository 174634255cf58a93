"""llm_inductor: a torch.compile backend that serves verified LLM-written Triton kernels.

    torch.compile(model, backend="llm")                        # registered on install
    torch.compile(model, backend=llm_inductor.backend(mode="discover"))
"""

from llm_inductor import _runtime  # registers the llm_inductor::kernel op

_runtime.prepare_interpreter()
from llm_inductor._backend import backend
from llm_inductor._state import reset as reset_stats, stats
from llm_inductor.config import Config

__version__ = "0.1.0"


def open_cache(config: Config | None = None):
    """The kernel store for a config (default: the environment's)."""
    from llm_inductor import _state

    return _state.store(config)


def tune(*args, **kwargs):
    """Tune pending regions (see ``llm-inductor tune``); returns the run summary."""
    from llm_inductor.search.tune import tune as _tune

    return _tune(*args, **kwargs)


__all__ = ["backend", "Config", "open_cache", "tune", "stats", "reset_stats"]
