"""The dynamic guard, used inside the worker: what the candidate's wrapper may do at run time.

* ``DispatchGuard`` is a ``TorchDispatchMode`` that sees every torch op the wrapper
  runs. Outside Triton launches only allocation, view, copy and metadata ops are
  allowed; anything else is recorded as ``torch_compute`` (recorded, not raised,
  so a try/except in the candidate cannot swallow it). Fresh ``empty*``
  allocations are poisoned: floats with a NaN whose payload no arithmetic
  produces, integers and bools with a sentinel that alternates between calls,
  so an element the kernel never wrote shows up in the parent.
* ``install_launch_hooks`` wraps Triton's launch entry points (compiled and
  interpreted) to count launches, to lift the guard while a launch runs (the
  interpreter itself uses torch ops on the arguments) and to record launches on
  a stream other than the caller's.
* ``Tripwires`` notices replaced functions in torch, triton and the harness, and
  new threads.

The poison patterns are shared with the parent (checks.py), which reads them.
This module never imports the candidate.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# Quiet NaNs with payloads that arithmetic does not produce (it yields the
# canonical NaN), stored through an integer view so the bits survive.
FLOAT_POISON_BITS = {
    torch.float64: (torch.int64, 0x7FF8A5A5A5A5A5A5),
    torch.float32: (torch.int32, 0x7FC5A5A5),
    torch.bfloat16: (torch.int16, 0x7FE5),
    torch.float16: (torch.int16, 0x7E5A),
}
# Integer and bool sentinels alternate between consecutive calls: an element that
# holds sentinel[0] after one call and sentinel[1] after the next was never written.
INT_POISON = (0x5A, 0x25)
BOOL_POISON = (True, False)

_POISONED_ALLOCS = {"empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided", "empty_permuted"}
_FILLED_ALLOCS = {"zeros", "zeros_like", "ones", "ones_like", "full", "full_like", "new_zeros", "new_ones",
                  "new_full", "zero_", "fill_", "scalar_tensor"}
_COPIES = {"copy_", "clone", "_to_copy", "_copy_from", "_copy_from_and_resize", "lift_fresh", "lift_fresh_copy",
           "detach", "alias", "_unsafe_view", "contiguous", "resize_"}
_METADATA = {"sym_size", "sym_stride", "sym_numel", "sym_storage_offset", "size", "stride", "numel", "dim",
             "is_contiguous", "is_same_size", "is_non_overlapping_and_dense", "_nested_tensor_size"}


def poison_(t: torch.Tensor, parity: int) -> None:
    if t.numel() == 0:
        return
    if t.dtype in FLOAT_POISON_BITS:
        int_dtype, bits = FLOAT_POISON_BITS[t.dtype]
        t.view(int_dtype).fill_(bits)  # every pattern is below the sign bit
    elif t.dtype.is_floating_point:  # fp8 and friends: plain NaN (no payload room)
        t.fill_(float("nan"))
    elif t.dtype == torch.bool:
        t.fill_(BOOL_POISON[parity % 2])
    elif not t.dtype.is_complex:
        t.fill_(INT_POISON[parity % 2])


def op_kind(func: Any) -> str:
    """'poison' | 'alloc' | 'view' | 'copy' | 'meta' | 'compute'."""
    name = func.overloadpacket.__name__ if hasattr(func, "overloadpacket") else str(func)
    if name in _POISONED_ALLOCS:
        return "poison"
    if name in _FILLED_ALLOCS and not (name == "fill_" and func._overloadname == "Tensor"):
        return "alloc"
    if name in _COPIES:
        return "copy"
    if name in _METADATA:
        return "meta"
    if getattr(func, "is_view", False):
        return "view"
    return "compute"


class DispatchGuard(TorchDispatchMode):
    """Allow allocation/view/copy outside launches; poison fresh allocations; record the rest."""

    def __init__(self, parity: int = 0) -> None:
        super().__init__()
        self.parity = parity
        self.violations: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if _state.depth > 0:  # inside a Triton launch: the interpreter's own bookkeeping
            return out
        kind = op_kind(func)
        if kind == "compute":
            self.violations.append(str(func))
        elif kind == "poison" and isinstance(out, torch.Tensor):
            poison_(out, self.parity)
        return out


class _LaunchState(threading.local):
    depth = 0


_state = _LaunchState()
launches = {"count": 0, "foreign_streams": 0}
_installed: list[tuple[type, str, Callable]] = []


def _current_stream() -> int | None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.current_stream().cuda_stream
    return None


def install_launch_hooks(expected_stream: Callable[[], int | None]) -> None:
    """Wrap Triton's launch entry points; idempotent."""
    if _installed:
        return
    from triton.runtime import autotuner, jit

    classes: list[tuple[type, bool]] = [(jit.JITFunction, True), (autotuner.Autotuner, False),
                                        (autotuner.Heuristics, False)]
    try:
        from triton.runtime.interpreter import InterpretedFunction

        classes.append((InterpretedFunction, True))
    except ImportError:
        pass
    for cls, counts in classes:
        original = cls.__dict__.get("run")
        if original is None:
            continue

        def run(self, *args, __original=original, __counts=counts, **kwargs):
            counted = __counts and not kwargs.get("warmup", False)
            if counted:
                launches["count"] += 1
                want = expected_stream()
                if want is not None and _current_stream() != want:
                    launches["foreign_streams"] += 1
            _state.depth += 1
            try:
                return __original(self, *args, **kwargs)
            finally:
                _state.depth -= 1

        setattr(cls, "run", run)
        _installed.append((cls, "run", original))


class Tripwires:
    """Snapshot of functions a cheat would replace, and of the threads alive.

    ``native``: also count OS threads (/proc), which catches raw ``_thread`` threads. On a GPU
    the CUDA driver and Triton's runtime start native threads lazily, which would be taken for
    the candidate's, so there only Python threads count.
    """

    def __init__(self, extra: dict[str, Any] | None = None, native: bool = True) -> None:
        self.owners = _owners(extra or {})
        self.snapshot = {(o, k): id(v) for o, d in self.owners.items() for k, v in d.items() if callable(v)}
        self.native = native
        self.python_threads = {t.ident for t in threading.enumerate()}
        self.threads = _thread_count() if native else len(self.python_threads)

    def replaced(self) -> list[str]:
        out = []
        for (owner, key), ident in self.snapshot.items():
            now = self.owners[owner].get(key)
            if now is None or id(now) != ident:
                out.append(f"{owner}.{key}")
        return sorted(out)

    def _new_python_threads(self) -> tuple[list[threading.Thread], int]:
        """Python threads started since the snapshot: (the candidate's, how many were Inductor's own)."""
        fresh = [t for t in threading.enumerate() if t.ident not in self.python_threads]
        ours = [t for t in fresh if not _inductor_pool_thread(t)]
        return ours, len(fresh) - len(ours)

    def new_threads(self) -> int:
        ours, inductors = self._new_python_threads()
        if not self.native:
            return len(ours)
        return max(0, _thread_count() - self.threads - inductors)

    def new_thread_names(self) -> list[str]:
        return sorted(t.name for t in self._new_python_threads()[0])


def _inductor_pool_thread(t: threading.Thread) -> bool:
    """A thread of Inductor's compile-worker pool, which the worker's own Inductor compiles use.

    The pool's idle timer (``subproc_worker_timer``) exits when the pool goes quiet and a new one
    starts at the next submission, so one can appear during a candidate's call without the
    candidate doing anything. It is recognised by what it runs, not by its name: a bound method
    of a class defined in ``torch._inductor.compile_worker`` or ``torch._inductor.autotune_process``
    (the timer's ``check``, the pool's reader, the autotune pool's timer). A Timer whose callback
    is not itself such a method is not exempt, so a candidate cannot hide its own function behind
    Inductor's timer. (``Thread._target`` stays set while the thread runs.)
    """
    target = getattr(t, "_target", None)
    if not _bound_in_inductor_pool(target):
        return False
    callback = getattr(target.__self__, "call", None)  # Timer(duration, call): the pool's quiesce
    return callback is None or _bound_in_inductor_pool(callback)


_INDUCTOR_POOLS = ("torch._inductor.compile_worker.", "torch._inductor.autotune_process")


def _bound_in_inductor_pool(fn: Any) -> bool:
    owner = getattr(fn, "__self__", None)
    return owner is not None and type(owner).__module__.startswith(_INDUCTOR_POOLS)


def _owners(extra: dict[str, Any]) -> dict[str, dict[str, Any]]:
    import builtins
    import time

    import triton
    from triton.runtime import autotuner, jit

    objs: dict[str, Any] = {
        "torch": torch, "torch.Tensor": torch.Tensor, "torch.testing": torch.testing,
        "torch.nn.functional": torch.nn.functional, "torch.cuda": torch.cuda, "triton": triton,
        "triton.JITFunction": jit.JITFunction, "triton.Autotuner": autotuner.Autotuner, "builtins": builtins,
        "time": time, "TorchDispatchMode": TorchDispatchMode, "guard": __import__(__name__, fromlist=["_"]),
        **extra,
    }
    try:
        import triton.testing

        objs["triton.testing"] = triton.testing
    except ImportError:
        pass
    # Class dicts are mappingproxies; modules expose __dict__. Both read live.
    return {name: (vars(o) if hasattr(o, "__dict__") else {}) for name, o in objs.items()}


def _thread_count() -> int:
    """OS threads where /proc tells (a raw _thread or native thread shows only there), else Python's."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()
