"""llm_inductor: a torch.compile backend that serves verified LLM-written Triton kernels.

torch.compile(model, backend="llm")                        # registered on install
torch.compile(model, backend=llm_inductor.backend(mode="discover"))
"""

from llm_inductor import _paths

# passes/ and cache/ sit at the top of the repository and install as llm_inductor.passes and
# llm_inductor.cache (setuptools package-dir). From a source checkout, or an editable install in
# setuptools' path-based mode, those two (and nothing else of the checkout) are found beside this package.
_paths.find_checkout_packages()

from llm_inductor._version import __version__ as __version__
from llm_inductor.compile import backend, stats  # the compile path (registers the op first)
from llm_inductor.compile import reset as reset_stats
from llm_inductor.config import Config
from llm_inductor.search import register as _register  # noqa: F401  (the providers; the tune path, with the region pass)


def open_cache(config: Config | None = None):
    """The kernel store for a config (default: the environment's)."""
    from llm_inductor.compile import state as _state

    return _state.store(config)


def tune(*args, **kwargs):
    """Tune pending regions (see ``llm-inductor tune``); returns the run summary."""
    from llm_inductor._script import tune as _tune

    return _tune(*args, **kwargs)


__all__ = ["backend", "Config", "open_cache", "tune", "stats", "reset_stats"]
