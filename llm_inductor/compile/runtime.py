"""The one generic op, ``llm_inductor::kernel(entry_id, inputs) -> outputs``, and its kernel registry.

A substituted region becomes one call to this op; its string argument names the
entry (key digest plus content hash), so a graph replayed from Inductor's FX cache
finds its kernel by name at run time. The fake implementation builds outputs from
the entry's sidecar specs (data, evaluated arithmetically), so compiling never
imports kernel code. Kernel modules are imported only from entries the store
served, which means verified and trusted. An entry's region file is never
imported: when a kernel fails at run time, the region's own ops, rebuilt from
the key (``passes.rebuild.Program``), compute the outputs instead.
"""

from __future__ import annotations

import importlib.util
import linecache
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

import llm_inductor.compile.state as _state
from llm_inductor._files import atomic_write
from llm_inductor.cache.entry import Entry
from llm_inductor.cache.key import KernelKey
from llm_inductor.passes.rebuild import Program
from llm_inductor.passes.regionfile import Sidecar
from llm_inductor.passes.symexpr import evaluate

log = logging.getLogger(__name__)


@dataclass
class LoadedKernel:
    entry_id: str
    meta: Sidecar  # the region's, from the entry
    source: str  # the kernel module's source
    fallback: Program  # the region's own ops, rebuilt from the key: run when the kernel fails
    forward: Callable[..., Any] | None = None  # imported lazily, on first real call
    failed: str | None = None  # why the kernel was abandoned for the fallback in this process
    layouts: dict[tuple, list[tuple[list[int], list[int]]]] = field(default_factory=dict)  # by input shapes


_lock = threading.Lock()
_kernels: dict[str, LoadedKernel] = {}
# Where the op finds entries it has not seen in this process (an FX-cache replay).
_resolver: Callable[[str], Entry | None] | None = None


def set_resolver(fn: Callable[[str], Entry | None] | None) -> None:
    global _resolver
    _resolver = fn


def register(entry: Entry) -> str:
    with _lock:
        if entry.entry_id not in _kernels:
            meta = Sidecar(entry.region_meta).require("inputs", "outputs", "bindings")  # what the op's layouts need
            _kernels[entry.entry_id] = LoadedKernel(
                entry.entry_id, meta, entry.kernel_source, Program(KernelKey.from_dict(entry.key_fields))
            )
    return entry.entry_id


def _lookup(entry_id: str) -> LoadedKernel:
    k = _kernels.get(entry_id)
    if k is None and _resolver is not None:
        entry = _resolver(entry_id)
        if entry is not None:
            register(entry)
            k = _kernels.get(entry_id)
    if k is None:
        raise RuntimeError(
            f"llm_inductor: kernel {entry_id[:16]}… is not in any cache tier this process can read. "
            "The compiled graph came from Inductor's FX cache; point LLM_INDUCTOR_CACHE_DIR at the cache "
            "that compiled it, or clear TORCHINDUCTOR_CACHE_DIR."
        )
    return k


def kernel_dir() -> Path:
    return _state.config().cache_path / "kernels"


def _import_kernel(k: LoadedKernel) -> Callable[..., Any]:
    """Import a served entry's kernel module, from a file under the cache directory.

    A file, not exec of a string: Triton's JIT reads kernel source through inspect. Where
    the file cannot be written (a full disk, a read-only cache), the module is compiled
    from memory with its source registered in linecache, which inspect reads as well.
    """
    name = "k_" + k.entry_id.replace(":", "_")
    if not torch.cuda.is_available():  # served under the interpreter: compute as the verifier did
        from llm_inductor.verify.interp import match_gpu_numerics

        match_gpu_numerics()
    try:
        mod = _module_from_file(name, k.source)
    except OSError as e:
        _warn_unwritable(e)
        mod = _module_from_memory(name, k.source)
    return mod.forward


def _module_from_file(name: str, src: str) -> ModuleType:
    path = kernel_dir() / f"{name}.py"
    if not path.exists() or path.read_text() != src:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, src)
    spec = importlib.util.spec_from_file_location(f"llm_inductor_kernels.{name}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _module_from_memory(name: str, src: str) -> ModuleType:
    filename = f"<llm_inductor kernel {name}>"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)  # mtime None: never evicted
    mod = ModuleType(f"llm_inductor_kernels.{name}")
    mod.__file__ = filename
    sys.modules[mod.__name__] = mod
    exec(compile(src, filename, "exec"), mod.__dict__)
    return mod


_warned_unwritable = False


def _warn_unwritable(e: OSError) -> None:
    global _warned_unwritable
    if not _warned_unwritable:
        _warned_unwritable = True
        log.warning(
            "llm_inductor: cannot write kernel modules under %s (%s); this process loads them from memory instead",
            kernel_dir(),
            e,
        )


def prepare_interpreter() -> None:
    """Under LLM_INDUCTOR_INTERPRET=1 on a machine with no GPU, put Triton in interpreter mode.

    Triton decides at its own import whether its standard library (tl.sum, ...) is
    interpreted, so TRITON_INTERPRET must be set before triton is first imported.
    """
    if "triton" in sys.modules or os.environ.get("TRITON_INTERPRET"):
        return
    if (
        os.environ.get("LLM_INDUCTOR_INTERPRET", "").lower() in ("1", "true", "yes", "on")
        and not torch.cuda.is_available()
    ):
        os.environ["TRITON_INTERPRET"] = "1"


def interpreter_ready() -> bool:
    """True when Triton was imported in interpreter mode (kernels can run on the CPU)."""
    import triton.language as tl

    return type(tl.sum).__name__ == "InterpretedFunction"


# Inductor may hand a custom op its inputs in another layout than the graph's: channels-last after
# its conv layout optimisation, or padded strides. A kernel was verified at the region's declared
# strides. The tag asks Inductor for exactly those (and for no padding); _conform guarantees them at
# run time, since the tag is not always honoured (torch 2.13 on the CPU passed a channels-last conv
# output to the op despite it: tests/compile/test_substitution.py).
_EXACT_STRIDES = tuple(getattr(torch._C.Tag, t) for t in ("needs_exact_strides",) if hasattr(torch._C.Tag, t))


# Defined through torch.library.Library rather than ``custom_op``: its Python wrapper costs about 50 us more per
# call (measured on the CPU), which a compiled graph pays at every substituted region, every step. The op is
# functional (fresh outputs, ``_as_declared``) and never differentiated: the pass runs on AOTAutograd's graphs.
_lib = torch.library.Library("llm_inductor", "DEF")
_lib.define("kernel(str entry_id, Tensor[] inputs) -> Tensor[]", tags=_EXACT_STRIDES)


def kernel(entry_id: str, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    k = _lookup(entry_id)
    inputs = _conform(k, inputs)
    try:
        if k.forward is None:
            with _lock:
                if k.forward is None:
                    k.forward = _import_kernel(k)
        _state.bump("kernel_calls")
        return _as_declared(k, _as_list(k.forward(*inputs)), inputs)
    except Exception as e:
        # A compiled graph cannot fall back to Inductor any more, but it can still be right:
        # run the region's own ops (plain torch) from now on, and say so once.
        if k.failed is not None or _state.config().strict:
            raise
        k.failed = f"{type(e).__name__}: {e}"
        log.warning(
            "llm_inductor: kernel %s failed at run time (%s); this process runs the region's own ops "
            "instead. Run `llm-inductor cache verify --force %s` on it.",
            entry_id[:16],
            k.failed,
            entry_id[:16],
        )
        _state.bump("runtime_fallbacks")
        k.forward = k.fallback
        return _as_declared(k, _as_list(k.forward(*inputs)), inputs)


def _as_list(out: Any) -> list[torch.Tensor]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _storage(t: torch.Tensor) -> int | None:
    st = t.untyped_storage()
    return st.data_ptr() if st.nbytes() else None


def _layouts(
    k: LoadedKernel, inputs: Sequence[torch.Tensor], side: str = "outputs"
) -> list[tuple[list[int], list[int]]]:
    """``declared_layouts`` of the kernel's region, cached per input shapes (the op's hot path)."""
    key = (side, *(tuple(i.shape) for i in inputs))
    if key not in k.layouts:
        if len(k.layouts) >= 256:  # dynamic shapes: keep the table small; it is cheap to rebuild
            k.layouts.clear()
        k.layouts[key] = declared_layouts(k.meta, inputs, side)
    return k.layouts[key]


def _same_layout(t: torch.Tensor, shape: Sequence[int], stride: Sequence[int]) -> bool:
    return all(n <= 1 or a == b for n, a, b in zip(shape, t.stride(), stride))


def _relayout(t: torch.Tensor, shape: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
    """A copy of t in fresh memory at (shape, stride)."""
    return torch.empty_strided(shape, stride, dtype=t.dtype, device=t.device).copy_(t)


def _conform(k: LoadedKernel, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """The inputs at the strides the region declares (and the kernel was verified at); copies only the others."""
    return [
        t if _same_layout(t, shape, stride) else _relayout(t, shape, stride)
        for t, (shape, stride) in zip(inputs, _layouts(k, inputs, "inputs"))
    ]


def _as_declared(k: LoadedKernel, outs: list[torch.Tensor], inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Outputs that honour the op's contract: fresh memory, the declared strides.

    A verified kernel always does (the verifier checks strides and writes into fresh
    memory). The region's own ops, run as the runtime fallback, need not: a region
    whose output is a view of its input returns that view, at the input's strides. Such
    outputs are copied into memory of the declared layout, since torch.library refuses
    aliases of inputs (or of other outputs) and Inductor asserts the strides the fake gave.
    """
    layouts = _layouts(k, inputs)
    if len(outs) != len(layouts):
        raise RuntimeError(
            f"llm_inductor: kernel {k.entry_id[:16]} returned {len(outs)} outputs where its region "
            f"declares {len(layouts)}. Run `llm-inductor cache verify` on it."
        )
    taken = {s for s in map(_storage, inputs) if s is not None}
    fresh = []
    for o, (shape, stride) in zip(outs, layouts):
        if _storage(o) in taken or not _same_layout(o, shape, stride):
            o = _relayout(o, shape, stride)
        if (s := _storage(o)) is not None:
            taken.add(s)
        fresh.append(o)
    return fresh


_lib.impl("kernel", kernel, "CompositeExplicitAutograd")


@torch.library.register_fake("llm_inductor::kernel", lib=_lib)
def _(entry_id: str, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    meta = _lookup(entry_id).meta
    return empty_outputs(meta, inputs)


def declared_layouts(
    meta: Sidecar, inputs: Sequence[torch.Tensor], side: str = "outputs"
) -> list[tuple[list[int], list[int]]]:
    """(shape, stride) of each output (or input) as the sidecar declares them, sizes bound from the inputs."""
    env = {s: inputs[i].shape[d] for s, (i, d) in meta.bindings.items()}
    specs = meta.outputs if side == "outputs" else meta.inputs
    return [([evaluate(x, env) for x in spec.shape], [evaluate(x, env) for x in spec.stride]) for spec in specs]


def empty_outputs(meta: Sidecar, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Outputs with the sidecar's shapes, strides and dtypes, sizes bound from the inputs."""
    return [
        torch.empty_strided(
            shape, stride, dtype=getattr(torch, spec.dtype.replace("torch.", "")), device=inputs[0].device
        )
        for (shape, stride), spec in zip(declared_layouts(meta, inputs), meta.outputs)
    ]
