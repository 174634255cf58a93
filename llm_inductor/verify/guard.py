"""The dynamic guard, used inside the worker: what the candidate's wrapper may do at run time.

* ``DispatchGuard`` is a ``TorchDispatchMode`` that sees every torch op the
  candidate's code runs: the wrapper, and every callable Triton calls for it
  (``@triton.heuristics`` values, config and autotune hooks, grid functions,
  kernel bodies under the interpreter). Only allocation, view, copy and
  metadata ops are allowed; anything else is recorded as ``torch_compute``
  (recorded, not raised, so a try/except in the candidate cannot swallow it).
  Fresh ``empty*`` allocations are filled with the call's ``Poison``.
* ``install_launch_hooks`` wraps Triton's launch entry points (compiled and
  interpreted) to count launches, to record launches on a stream other than the
  caller's, and to let Triton's own torch ops through while it launches (the
  interpreter stages the arguments through torch). An op inside a launch is
  still the candidate's when the candidate's code is on the stack below the
  launch: Triton calls grid functions and, interpreted, the kernel body there.
* ``Tripwires`` notices replaced functions in torch, triton and the harness, and
  new threads.

The parent learns each call's poison from the call's record, after the call.
This module never imports the candidate.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# Floats with NaN payloads: dtype → (integer view, exponent and quiet bits, payload bits below them). Arithmetic
# only makes the canonical NaN (payload 0), so a non-zero payload in an output was never computed there.
NAN_LAYOUT = {
    torch.float64: (torch.int64, 0x7FF8 << 48, 51),
    torch.float32: (torch.int32, 0x7FC00000, 22),
    torch.bfloat16: (torch.int16, 0x7FC0, 6),
    torch.float16: (torch.int16, 0x7E00, 9),
}

_POISONED_ALLOCS = {"empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided", "empty_permuted"}
_FILLED_ALLOCS = {
    "zeros",
    "zeros_like",
    "ones",
    "ones_like",
    "full",
    "full_like",
    "new_zeros",
    "new_ones",
    "new_full",
    "zero_",
    "fill_",
    "scalar_tensor",
}
_COPIES = {
    "copy_",
    "clone",
    "_to_copy",
    "_copy_from",
    "_copy_from_and_resize",
    "lift_fresh",
    "lift_fresh_copy",
    "detach",
    "alias",
    "_unsafe_view",
    "contiguous",
    "resize_",
}
_METADATA = {
    "sym_size",
    "sym_stride",
    "sym_numel",
    "sym_storage_offset",
    "size",
    "stride",
    "numel",
    "dim",
    "is_contiguous",
    "is_same_size",
    "is_non_overlapping_and_dense",
    "_nested_tensor_size",
}


@dataclass
class Poison:
    """What fresh allocations hold during one call, drawn for that call from the OS's random source.

    ``marked``: one value per dtype, that the parent then looks for (an element that still holds it was never
    written): floats a quiet NaN with a random payload and sign, integers and bools a random value, different
    from ``unlike``'s (a run's previous marked call), so that an integer the kernel wrote cannot match both.
    Not marked: data-like noise, random finite values per element at a random scale, which looks like memory a
    kernel gets in production. A kernel that recognises the marked fill and behaves only then behaves
    differently on these calls. Neither the values nor the generator's seed are reachable before the call ends:
    ``secrets`` reads the OS, where the candidate cannot seed it as it could seed torch's global generator.
    """

    marked: bool
    unlike: dict[str, int | bool] = field(default_factory=dict)
    fills: dict[str, int | bool] = field(default_factory=dict)  # dtype → marked value (floats: bits, signed)
    _noise: dict[str, torch.Generator] = field(default_factory=dict, repr=False)

    def fill(self, t: torch.Tensor) -> None:
        if t.numel() == 0 or t.dtype.is_complex:
            return
        if not self.marked:
            self._noise_into(t)
        elif t.dtype in NAN_LAYOUT:
            t.view(NAN_LAYOUT[t.dtype][0]).fill_(self.value(t.dtype))
        elif t.dtype.is_floating_point:  # fp8 and friends: no payload room, and the NaN check reports a NaN
            t.fill_(float("nan"))
        else:
            t.fill_(self.value(t.dtype))

    def value(self, dtype: torch.dtype) -> int | bool:
        key = str(dtype)
        while key not in self.fills or self.fills[key] == self.unlike.get(key):
            self.fills[key] = _draw(dtype)
        return self.fills[key]

    def to_dict(self) -> dict[str, Any]:
        return {"marked": self.marked, "fills": dict(self.fills)}

    def _noise_into(self, t: torch.Tensor) -> None:
        """Fill t in place (no temporaries: fresh memory of a 10^8-element output costs no second copy)."""
        key = str(t.device)
        if key not in self._noise:
            self._noise[key] = torch.Generator(device=t.device).manual_seed(secrets.randbits(63))
        g = self._noise[key]
        if t.dtype.is_floating_point:
            scale = 2.0 ** (secrets.randbelow(13) - 8)  # at most ~80: within fp8's range
            if t.dtype in NAN_LAYOUT:
                t.normal_(0.0, scale, generator=g)
            else:  # fp8 and friends have no normal_
                t.copy_(torch.randn(t.shape, generator=g, device=t.device) * scale)
            return
        high = 2 if t.dtype == torch.bool else min(int(torch.iinfo(t.dtype).max), 255) + 1
        t.random_(0, high, generator=g)


def _draw(dtype: torch.dtype) -> int | bool:
    if dtype in NAN_LAYOUT:
        int_dtype, base, payload_bits = NAN_LAYOUT[dtype]
        # Payload 1 .. all ones less one: 0 is the x86 canonical NaN, and all ones is what a GPU's arithmetic
        # produces (CUDA's 0x7FFFFFFF, and bfloat16's 0x7FFF from it), which a kernel writes for a NaN input.
        bits = base | (1 + secrets.randbelow((1 << payload_bits) - 2))
        width = torch.iinfo(int_dtype).bits
        return bits - (1 << (width - 1)) if secrets.randbits(1) else bits  # sign bit set, as the signed view reads it
    if dtype == torch.bool:
        return bool(secrets.randbits(1))
    info = torch.iinfo(dtype)
    return info.min + secrets.randbelow(info.max - info.min + 1)


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
    """Allow allocation/view/copy in the candidate's code; fill fresh allocations with the poison; record the rest.

    ``candidate``: the globals of the candidate's module, by which its functions are known on the stack.
    """

    def __init__(self, poison: Poison | None = None, candidate: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.poison = poison if poison is not None else Poison(marked=True)
        self.candidate = candidate
        self.violations: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if _state.depth > 0 and not self._candidates_op():
            return out  # Triton's own, while it launches
        kind = op_kind(func)
        if kind == "compute":
            self.violations.append(str(func))
        elif kind == "poison" and isinstance(out, torch.Tensor):
            self.poison.fill(out)
        return out

    def _candidates_op(self) -> bool:
        """Inside a launch: does a frame of the candidate's sit between this op and the innermost launch?"""
        frame = sys._getframe(2)
        while frame is not None:
            if frame.f_code in _launch_codes:
                return False
            if frame.f_globals is self.candidate:
                return True
            frame = frame.f_back
        return True


class _LaunchState(threading.local):
    depth = 0


_state = _LaunchState()
launches = {"count": 0, "foreign_streams": 0}
_installed: list[tuple[type, str, Callable]] = []
_launch_codes: set[Any] = set()  # the code of the launch wrappers: where Triton's own ops begin on the stack


def _current_stream() -> int | None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.current_stream().cuda_stream
    return None


def install_launch_hooks(expected_stream: Callable[[], int | None]) -> None:
    """Wrap Triton's launch entry points; idempotent.

    Only the kernel launch itself: ``Autotuner.run`` and ``Heuristics.run`` stay unwrapped, so the hooks and
    heuristics they call run under the guard like the wrapper (their own torch ops are allocations and copies).
    """
    if _installed:
        return
    from triton.runtime import jit

    classes: list[type] = [jit.JITFunction]
    try:
        from triton.runtime.interpreter import InterpretedFunction

        classes.append(InterpretedFunction)
    except ImportError:
        pass
    for cls in classes:
        original = cls.__dict__.get("run")
        if original is None:
            continue

        def run(self, *args, __original=original, **kwargs):
            if not kwargs.get("warmup", False):
                launches["count"] += 1
                want = expected_stream()
                if want is not None and _current_stream() != want:
                    launches["foreign_streams"] += 1
            _state.depth += 1
            try:
                return __original(self, *args, **kwargs)
            finally:
                _state.depth -= 1

        cls.run = run
        _installed.append((cls, "run", original))
        _launch_codes.add(run.__code__)


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
        "torch": torch,
        "torch.Tensor": torch.Tensor,
        "torch.testing": torch.testing,
        "torch.nn.functional": torch.nn.functional,
        "torch.cuda": torch.cuda,
        "triton": triton,
        "triton.JITFunction": jit.JITFunction,
        "triton.Autotuner": autotuner.Autotuner,
        "builtins": builtins,
        "time": time,
        "TorchDispatchMode": TorchDispatchMode,
        "guard": __import__(__name__, fromlist=["_"]),
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
