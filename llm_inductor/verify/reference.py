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

Both eager references run ``forward`` lean (``call_lean``): each value is freed at its last use, so a
reference's host memory is its widest step, not the sum of its steps (``reference_peaks`` measures it on the
meta device, for the host budget).
"""

from __future__ import annotations

import ast
import contextlib
import logging
import re
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from llm_inductor.verify.loaded_region import LoadedRegion, TensorMeta

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


# Dispatch keys whose kernel runs a float64 call on the host: the CPU backend's, or a composite (decomposing).
_HOST_KEYS = (
    "CPU",
    "CompositeImplicitAutograd",
    "CompositeExplicitAutograd",
    "CompositeExplicitAutogradNonFunctional",
)


def _ops_called(source: str) -> list[Any]:
    """The ``torch.ops.<ns>.<op>[.<overload>]`` a region's source calls, resolved (unknown names left out)."""
    found: dict[str, Any] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        parts, f = [], node.func
        while isinstance(f, ast.Attribute):
            parts.append(f.attr)
            f = f.value
        if not (isinstance(f, ast.Name) and f.id == "torch" and parts[-1:] == ["ops"] and len(parts) >= 3):
            continue
        obj: Any = torch.ops
        try:
            for name in reversed(parts[:-1]):
                obj = getattr(obj, name)
        except (AttributeError, RuntimeError):
            continue
        if isinstance(obj, torch._ops.OpOverloadPacket):
            obj = obj.default
        if isinstance(obj, torch._ops.OpOverload):
            found.setdefault(obj.name(), obj)
    return list(found.values())


def host_gaps(source: str) -> list[str]:
    """The ops a region's source calls that have no host kernel, so its float64 reference cannot run here.

    cuDNN's and flash attention's ops are CUDA-only (and take no float64): a region holding one has no truth
    to judge a candidate against, whatever the candidate does (``no_host_reference``, a verdict on the region).
    """
    return [
        op.name()
        for op in _ops_called(source)
        if not any(torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), k) for k in _HOST_KEYS)
    ]


class NoHostReference(Exception):
    """The float64 reference cannot run on the host: an op has no CPU kernel, or none for float64.

    A verdict on the region (``no_host_reference``), the same for every candidate: not a harness failure, since
    no retry can change it, and not the candidate's, since none of its code ran.
    """


# What the dispatcher says when a CPU kernel is missing, or has no float64 case (the op's name first).
_NO_HOST = re.compile(
    r"Could not run '(?P<op>[\w:.]+)' with arguments from the 'CPU' backend"
    r"|\"(?P<kernel>\w+)\" not implemented for 'Double'"
)


def fp64_reference(region: LoadedRegion, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    wide = [upcast(t) for t in inputs]  # outside the mode: upcast's own empty(dtype=...) must keep its dtype
    try:
        with torch.no_grad(), Float64Mode():
            out = call_lean(region, wide)
    except (NotImplementedError, RuntimeError) as e:
        m = _NO_HOST.search(str(e))
        if m is None:
            raise
        what = f"{m['op']} has no CPU kernel" if m["op"] else f"the CPU kernel {m['kernel']} takes no float64"
        raise NoHostReference(f"the region's float64 reference cannot run on the host: {what}") from None
    return [o.detach() for o in as_list(out)]


def eager_reference(region: LoadedRegion, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    with torch.no_grad():
        return [o.detach() for o in as_list(call_lean(region, list(inputs)))]


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


# ---------------------------------------------------------------------- lean calls
# A region's forward is straight-line code whose locals live until it returns: at 16384 x 128256 the float64
# cross-entropy kept four 17 GB intermediates alive at once. ``lean`` compiles the same statements with each
# local deleted after its last use, as a function of a list it empties, so that the caller's inputs die with
# their last use too. Anything but straight-line code runs as written.
_STRAIGHT = (ast.Assign, ast.AnnAssign, ast.Expr, ast.Return, ast.Pass)
_lean: dict[str, Callable[[list[Any]], Any] | None] = {}


def lean(region: LoadedRegion) -> Callable[[list[Any]], Any] | None:
    """``forward`` as ``f(args)``, every value freed at its last use (``args`` emptied); None where not plain."""
    key = region.digest
    with _lock:
        if key not in _lean:
            try:
                _lean[key] = _compile_lean(region)
            except (SyntaxError, ValueError, TypeError):
                _lean[key] = None
        return _lean[key]


def _compile_lean(region: LoadedRegion) -> Callable[[list[Any]], Any] | None:
    tree = ast.parse(region.source)
    fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "forward"), None)
    if fn is None or fn.decorator_list or not all(isinstance(s, _STRAIGHT) for s in fn.body):
        return None
    if any(isinstance(n, ast.Lambda) for s in fn.body for n in ast.walk(s)):
        return None  # a closure may read a local after its last visible use
    a = fn.args
    if a.vararg or a.kwarg or a.kwonlyargs or a.defaults or a.posonlyargs:
        return None
    params = [p.arg for p in a.args]
    local = set(params) | {
        n.id for s in fn.body for n in ast.walk(s) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }
    last: dict[str, int] = {p: -1 for p in params}  # a parameter never read is freed before the first statement
    for i, s in enumerate(fn.body):
        for n in ast.walk(s):
            if isinstance(n, ast.Name) and n.id in local:
                last[n.id] = i  # its last read, or its last store where it is never read after that
    dead: dict[int, list[str]] = {}
    for name, i in last.items():
        dead.setdefault(i, []).append(name)
    args = "__llm_inductor_args"
    body: list[ast.stmt] = []
    if params:
        body.append(ast.parse(f"{', '.join(params)}, = {args}").body[0])
    body.append(ast.parse(f"{args}.clear()").body[0])

    def free(i: int) -> None:
        names = sorted(dead.get(i, ()))
        if names:
            body.append(ast.parse(f"del {', '.join(names)}").body[0])

    free(-1)
    for i, s in enumerate(fn.body):
        body.append(s)
        if not isinstance(s, ast.Return):
            free(i)
    module = ast.parse(f"def __llm_inductor_lean({args}): pass")
    module.body[0].body = body  # type: ignore[attr-defined]
    ast.fix_missing_locations(module)
    namespace = dict(vars(region.module))
    exec(compile(module, str(region.path), "exec"), namespace)
    return namespace["__llm_inductor_lean"]


def call_lean(region: LoadedRegion, inputs: list[Any]) -> Any:
    """forward(*inputs), with ``inputs`` emptied and each value freed at its last use where forward allows."""
    fn = lean(region)
    if fn is None:
        args = list(inputs)
        inputs.clear()
        return region.forward(*args)
    return fn(inputs)


# ---------------------------------------------------------------------- host memory of a reference
class _LiveBytes(TorchDispatchMode):
    """The bytes of the tensors alive while a call runs, and their peak: a storage counts once, until its last
    tensor dies (views share it)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._owners: dict[int, list[int]] = {}  # storage → [tensors alive, bytes]

    def track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = storage._cdata
        owner = self._owners.get(key)
        if owner is None:
            owner = self._owners[key] = [0, storage.nbytes()]
            self.live += owner[1]
            self.peak = max(self.peak, self.live)
        owner[0] += 1
        weakref.finalize(t, self._drop, key)

    def _drop(self, key: int) -> None:
        owner = self._owners[key]
        owner[0] -= 1
        if owner[0] == 0:
            self.live -= owner[1]
            del self._owners[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.track(t)
        return out


def reference_peaks(region: LoadedRegion, inputs: Sequence[TensorMeta]) -> tuple[int, int, int] | None:
    """Peak host bytes of the float64 and the eager references on inputs of these specs, and the float64
    reference's outputs: run on the meta device, with values freed as ``call_lean`` frees them.

    The float64 peak counts its upcast inputs; eager's counts only what it allocates (its inputs are the
    draw's own). None where the region cannot run on the meta device (a data-dependent op).
    """

    def run(wide: bool) -> tuple[int, int]:
        live = _LiveBytes()
        args = [
            torch.empty_strided(
                m.shape, m.stride, dtype=torch.float64 if wide and m.dtype in _LOW_FLOATS else m.dtype, device="meta"
            )
            for m in inputs
        ]
        if wide:  # the upcast copies are the reference's own; no other name holds them, so they die with last use
            for a, m in zip(args, inputs):
                if m.dtype.is_floating_point:
                    live.track(a)
            del a
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.no_grad())
            if wide:
                stack.enter_context(Float64Mode())
            stack.enter_context(live)  # entered last: it sees every op's real (float64) outputs
            out = call_lean(region, args)
        return live.peak, sum(o.untyped_storage().nbytes() for o in as_list(out) if isinstance(o, torch.Tensor))

    try:
        peak64, out64 = run(True)
        peak_eager, _ = run(False)
    except Exception as e:  # noqa: BLE001 - any failure only means no estimate: the caller falls back
        log.debug("no meta run of %s: %s: %s", region.name, type(e).__name__, e)
        return None
    return peak64, peak_eager, out64
