"""References, computed in the parent where the candidate cannot reach them.

* float64 eager: the truth. Inputs are upcast to float64, and a dispatch mode
  rewrites every low-precision float dtype argument inside ``forward``
  (``_to_copy(dtype=bf16)``, ``convert_element_type(x, fp32)``, ``full(dtype=...)``)
  to float64, so the reference never rounds in between.
* Inductor: ``forward`` compiled by Inductor with the user's mode, in the region's
  own dtypes. Its error against float64 is the yardstick for "as good as what
  the user would get anyway". Compiled functions are memoized per region and
  mode for the life of the process: one C++/Triton compile per region, however
  many candidates are judged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from llm_inductor.verify.loaded_region import LoadedRegion

log = logging.getLogger(__name__)

_LOW_FLOATS = {torch.float32, torch.float16, torch.bfloat16}


def _up(x: Any) -> Any:
    if isinstance(x, torch.dtype) and x in _LOW_FLOATS:
        return torch.float64
    return x


class Float64Mode(TorchDispatchMode):
    """Maps float32/16/bf16 dtype arguments of every op to float64."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*tree_map(_up, args), **tree_map(_up, kwargs or {}))


def upcast(t: torch.Tensor) -> torch.Tensor:
    """float64 copy of a float tensor, with its strides and storage offset kept."""
    if not t.dtype.is_floating_point or t.dtype == torch.float64:
        return t
    n = t.untyped_storage().nbytes() // t.element_size()
    base = torch.empty(0, dtype=t.dtype, device=t.device).set_(t.untyped_storage(), 0, (n,), (1,))
    return base.to(torch.float64).as_strided(t.shape, t.stride(), t.storage_offset())


def as_list(out: Any) -> list[Any]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def fp64_reference(region: LoadedRegion, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    wide = [upcast(t) for t in inputs]  # outside the mode: upcast's own empty(dtype=...) must keep its dtype
    with torch.no_grad(), Float64Mode():
        out = region.forward(*wide)
    return [o.detach() for o in as_list(out)]


def eager_reference(region: LoadedRegion, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    with torch.no_grad():
        return [o.detach() for o in as_list(region.forward(*inputs))]


_lock = threading.Lock()
_run_lock = threading.Lock()
_compiled: dict[tuple[str, str], Callable[..., Any]] = {}
_failed: dict[tuple[str, str], str] = {}


def inductor_fn(region: LoadedRegion, mode: str) -> Callable[..., Any] | None:
    """The region's forward compiled by Inductor (memoized); None if Inductor cannot compile it."""
    key = (region.digest, mode)
    with _lock:
        if key in _failed:
            return None
        if key not in _compiled:
            _compiled[key] = torch.compile(
                region.forward,
                backend="inductor",
                mode=None if mode in ("default", None) else mode,
                dynamic=bool(region.symbols) or None,
            )
        return _compiled[key]


def inductor_reference(
    region: LoadedRegion, inputs: Sequence[torch.Tensor], mode: str
) -> tuple[list[torch.Tensor], str]:
    """(outputs, how): Inductor's outputs, or eager's with the reason when Inductor fails here."""
    fn = inductor_fn(region, mode)
    if fn is not None:
        try:
            import torch._dynamo

            limit = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
            # One compile at a time: the tuner may verify from several threads, and a first call compiles.
            with _run_lock, torch.no_grad(), torch._dynamo.config.patch(**{limit: 64}):  # extra sizes recompile
                return [o.detach() for o in as_list(fn(*inputs))], f"inductor ({mode})"
        except (MemoryError, torch.OutOfMemoryError, torch.AcceleratorError):
            raise  # this machine's trouble, not Inductor's: a harness failure (engine.verify retries it)
        except Exception as e:  # no compiler on this machine, an Inductor bug: judge against eager instead
            with _lock:
                _failed[(region.digest, mode)] = f"{type(e).__name__}: {e}"
            log.warning(
                "Inductor could not compile %s (%s: %s); judging against eager", region.name, type(e).__name__, e
            )
    why = _failed.get((region.digest, mode), "")
    return eager_reference(region, inputs), f"eager (Inductor failed: {why[:200]})"
