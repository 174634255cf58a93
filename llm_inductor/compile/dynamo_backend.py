"""The ``llm`` Dynamo backend: Inductor's ``compile_fx`` with the region pass in front of ``compile_fx_inner``.

Why wrap ``inner_compile`` rather than use a post-grad custom pass: Inductor
computes its FX-graph-cache key inside ``compile_fx_inner``, before post-grad
passes run. Rewriting the functional ATen graph (forward, backward or inference,
after AOTAutograd's decompositions) just before that point makes the cache key
follow the kernel set, and our pass sees every graph even when the FX cache hits.
AOTAutograd's own cache skips ``inner_compile`` on a hit, so its key must follow
the kernel set too: ``_aot`` puts a token of our settings and the store's
generation into it, and replays the pass's counters on a hit. When no token can be
made, that cache is switched off for the compile and the FX cache still serves it.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx as fx

import llm_inductor.compile.aot as _aot
import llm_inductor.compile.region_pass as _graph_pass
import llm_inductor.compile.runtime as _runtime
import llm_inductor.compile.state as _state
from llm_inductor._errors import UsageError
from llm_inductor.config import Config

log = logging.getLogger(__name__)


def _graph_kind(kwargs: dict[str, Any]) -> str:
    if kwargs.get("is_backward"):
        return "backward"
    return "inference" if kwargs.get("is_inference") else "forward"


def _inner_compile(
    gm: fx.GraphModule, example_inputs: Sequence[Any], *, _cfg: Config, _record: _aot.Record | None, **kwargs: Any
) -> Any:
    if _record is None:
        return _compile_with_pass(gm, example_inputs, _cfg, **kwargs)
    before, n_reports = _state.counters.copy(), len(_state.reports)
    compiled = _compile_with_pass(gm, example_inputs, _cfg, **kwargs)
    try:
        _record.add(_state.counters - before, _state.reports[n_reports:])
    except Exception as e:  # the record only feeds counters on a later AOTAutograd hit
        log.info("llm_inductor: could not record the region pass for AOTAutograd hits: %s", e)
    return compiled


def _compile_with_pass(gm: fx.GraphModule, example_inputs: Sequence[Any], _cfg: Config, **kwargs: Any) -> Any:
    from torch._inductor.compile_fx import compile_fx_inner

    start = time.perf_counter()
    try:
        rewritten = _graph_pass.run(gm, _graph_kind(kwargs), _cfg)
    except _graph_pass.StageFailure:
        raise
    except Exception as e:  # a bug in our pass must not break the user's model
        _graph_pass.fail(_cfg, "region pass", f"{_graph_kind(kwargs)} graph", e)
        rewritten = None
    finally:
        _state.pass_seconds[0] += time.perf_counter() - start
    if rewritten is not None:
        try:
            return compile_fx_inner(rewritten, example_inputs, **kwargs)
        except Exception as e:
            _graph_pass.fail(_cfg, "compile", f"{_graph_kind(kwargs)} graph with substituted kernels", e)
    return compile_fx_inner(gm, example_inputs, **kwargs)


def _inductor_patches(mode: str | None, patches: dict[str, Any]) -> dict[str, Any]:
    if not mode or mode == "default":
        return patches
    from torch._inductor import list_mode_options

    return {**list_mode_options(mode), **patches}


def compile_graph(
    gm: fx.GraphModule, example_inputs: Sequence[Any], cfg: Config, patches: dict[str, Any]
) -> Callable[..., Any]:
    from torch._inductor.compile_fx import compile_fx

    if not cfg.active:
        return compile_fx(gm, example_inputs, config_patches=patches or None)
    _state.set_config(cfg)
    _runtime.set_resolver(lambda entry_id: _state.store(cfg).get(entry_id))
    record = _aot.start(cfg, gm, example_inputs)  # our token into AOTAutograd's cache key
    if record is None:
        inner = functools.partial(_inner_compile, _cfg=cfg, _record=None)
        with torch._functorch.config.patch(enable_autograd_cache=False, bundled_autograd_cache=False):
            return compile_fx(gm, example_inputs, inner_compile=inner, config_patches=patches or None)
    inner = functools.partial(_inner_compile, _cfg=cfg, _record=record)
    hits = _aot.aot_hits()
    compiled = compile_fx(gm, example_inputs, inner_compile=inner, config_patches=patches or None)
    if not record.passes and _aot.aot_hits() > hits:
        record.replay()
    return compiled


class SettingsError(UsageError, torch._dynamo.exc.ShortenTraceback):
    """A bad setting, reaching the user through Dynamo as itself.

    ``torch.compile(m, backend="llm", options=...)`` hands options to the backend only at the
    first call, inside Dynamo, which wraps any other exception in ``BackendCompilerFailed``
    under its own frames. A ``ShortenTraceback`` is re-raised as it is, with the traceback cut
    to start at ``first_useful_frame``: the user sees this one message.
    """


def _load_config(options: dict[str, Any] | None) -> tuple[Config, dict[str, Any]]:
    try:
        cfg, patches = Config.load(options)
        _graph_pass.check_tuning(cfg)
        return cfg, patches
    except UsageError as e:
        raise SettingsError(str(e), first_useful_frame=sys._getframe()) from None


def llm_backend(
    gm: fx.GraphModule,
    example_inputs: Sequence[Any],
    *,
    options: dict[str, Any] | None = None,
    mode: str | None = None,
) -> Callable[..., Any]:
    """The entry point ``torch.compile(model, backend="llm")`` reaches."""
    cfg, patches = _load_config(options)
    return compile_graph(gm, example_inputs, cfg, _inductor_patches(mode, patches))


def backend(mode: str | None = None, *, inductor_mode: str | None = None, **options: Any) -> Callable[..., Any]:
    """A configured backend: ``torch.compile(m, backend=llm_inductor.backend(mode="tune", max_calls=4))``.

    ``mode`` is ours (cache | tune | discover | off); ``inductor_mode`` is torch.compile's
    (default | reduce-overhead | max-autotune ...). Other keywords are settings or Inductor
    config keys, exactly as in ``options=``.
    """
    if mode is not None:
        options["mode"] = mode
    cfg, _ = Config.load(options)  # validate now, not at the first compile
    _graph_pass.check_tuning(cfg)

    def configured(gm: fx.GraphModule, example_inputs: Sequence[Any], **kwargs: Any) -> Callable[..., Any]:
        c, patches = _load_config({**options, **(kwargs.get("options") or {})})
        return compile_graph(gm, example_inputs, c, _inductor_patches(kwargs.get("mode") or inductor_mode, patches))

    configured.config = cfg  # type: ignore[attr-defined]
    return configured
