"""What a candidate may name: the data of the static policy (policy.py walks the AST against it).

Each set is an allowlist; the ``*_REASONS`` maps only name the reason code for
things people (and LLMs) reach for, so the feedback says "policy:network" rather
than "policy:import". Anything in no set is rejected all the same.
"""

from __future__ import annotations

import functools
import importlib
import types

ALLOWED_MODULES = {"torch", "triton", "triton.language", "math", "__future__"}
ALLOWED_PREFIXES = ("triton.language.extra",)  # libdevice lives here, per backend
# Named reasons for imports people (and LLMs) reach for.
IMPORT_REASONS = {
    "os": "process",
    "sys": "process",
    "subprocess": "process",
    "multiprocessing": "process",
    "signal": "process",
    "shutil": "file",
    "pathlib": "file",
    "io": "file",
    "tempfile": "file",
    "glob": "file",
    "pickle": "file",
    "socket": "network",
    "http": "network",
    "urllib": "network",
    "requests": "network",
    "ssl": "network",
    "threading": "thread",
    "_thread": "thread",
    "concurrent": "thread",
    "asyncio": "thread",
    "ctypes": "native_code",
    "cffi": "native_code",
    "importlib": "exec",
    "builtins": "exec",
    "inspect": "reflection",
    "gc": "reflection",
}

# Builtins a wrapper may call; other builtins get named reasons or policy:builtin.
ALLOWED_BUILTINS = {
    "len",
    "range",
    "min",
    "max",
    "int",
    "float",
    "bool",
    "tuple",
    "list",
    "dict",
    "abs",
    "divmod",
    "enumerate",
    "zip",
    "isinstance",
    "all",
    "any",
    "sum",
    "round",
    "reversed",
    "sorted",
    "str",
    "print",
    "ValueError",
    "TypeError",
    "RuntimeError",
    "AssertionError",
    "NotImplementedError",
    "True",
    "False",
    "None",
}
BUILTIN_REASONS = {
    "open": "file",
    "exec": "exec",
    "eval": "exec",
    "compile": "exec",
    "__import__": "exec",
    "getattr": "reflection",
    "setattr": "monkeypatch",
    "delattr": "monkeypatch",
    "vars": "reflection",
    "globals": "reflection",
    "locals": "reflection",
    "dir": "reflection",
    "type": "reflection",
    "object": "reflection",
    "super": "reflection",
    "breakpoint": "process",
    "input": "process",
    "memoryview": "reflection",
    "id": "reflection",
    "exit": "process",
    "quit": "process",
}

# torch.<name> a wrapper may use: allocation, devices, sizes. dtypes are added below.
TORCH_ALLOWED = {
    "empty",
    "empty_like",
    "empty_strided",
    "zeros",
    "zeros_like",
    "ones",
    "ones_like",
    "full",
    "full_like",
    "device",
    "Size",
    "Tensor",
    "dtype",
    "finfo",
    "iinfo",
    "strided",
    "contiguous_format",
    "preserve_format",
}
TORCH_CUDA_ALLOWED = {"device", "current_device", "get_device_capability", "get_device_properties", "is_available"}
TORCH_REASONS = {
    "Stream": "stream",
    "Event": "stream",
    "stream": "stream",
    "current_stream": "stream",
    "set_stream": "stream",
    "default_stream": "stream",
    "synchronize": "stream",
    "ExternalStream": "stream",
    "graph": "stream",
    "CUDAGraph": "stream",
    "load_inline": "native_code",
    "load": "native_code",
    "cpp_extension": "native_code",
    "utils": "native_code",
    "ops": "torch_compute",
    "_C": "native_code",
    "compile": "exec",
    "jit": "exec",
    "testing": "monkeypatch",
    "multiprocessing": "process",
}
TRITON_ALLOWED = {"jit", "autotune", "heuristics", "Config", "cdiv", "next_power_of_2", "language"}
# Methods and properties a wrapper may use on tensors (and ints, dicts of meta-parameters).
WRAPPER_ATTRS = {
    "view",
    "reshape",
    "permute",
    "transpose",
    "contiguous",
    "stride",
    "size",
    "numel",
    "dim",
    "ndim",
    "is_contiguous",
    "expand",
    "expand_as",
    "unsqueeze",
    "squeeze",
    "flatten",
    "unflatten",
    "as_strided",
    "t",
    "narrow",
    "select",
    "view_as",
    "element_size",
    "data_ptr",
    "new_empty",
    "new_zeros",
    "new_ones",
    "new_full",
    "new_empty_strided",
    "to",
    "clone",
    "copy_",
    "storage_offset",
    "dtype",
    "device",
    "shape",
    "is_cuda",
    "unbind",
    "split",
    "chunk",
    "movedim",
    "zero_",
    "fill_",
    "itemsize",
    "T",
    "mT",
    "type",
    "is_floating_point",
    "float",
    "half",
    "bfloat16",
    "bit_length",
    "multi_processor_count",
    "append",
    "extend",  # list building in the wrapper; no tensor has these, module-level lists are caught apart
}
# triton.language objects refused under any name that reaches them (tl.core.X is tl.X): paths are resolved
# to objects and judged by identity (triton_path_verdict). Both put device code the verifier cannot read into a
# kernel: inline assembly, and named functions of external bitcode.
TL_FORBIDDEN = {"inline_asm_elementwise": "inline_asm", "extern_elementwise": "inline_asm", "extern": "inline_asm"}
DECORATORS = {"jit", "autotune", "heuristics"}
# What decorator arguments may call at import: Triton's constructors and builtins that build plain values. A
# call to the candidate's own code there could return closures over objects that outlive every call.
IMPORT_TIME_CALLS = {
    "triton.Config",
    "triton.language.constexpr",
    "triton.language.core.constexpr",
    "triton.cdiv",
    "triton.next_power_of_2",
}
IMPORT_TIME_BUILTINS = {
    "dict",
    "tuple",
    "range",
    "min",
    "max",
    "int",
    "float",
    "bool",
    "str",
    "abs",
    "len",
    "round",
    "sorted",
    "zip",
    "enumerate",
    "reversed",
}
MUTATING_METHODS = {
    "append",
    "extend",
    "insert",
    "pop",
    "popitem",
    "clear",
    "update",
    "setdefault",
    "add",
    "remove",
    "discard",
    "__setitem__",
}


@functools.lru_cache(maxsize=1)
def torch_dtypes() -> frozenset[str]:
    import torch

    return frozenset(n for n in dir(torch) if isinstance(getattr(torch, n, None), torch.dtype))


@functools.lru_cache(maxsize=1)
def kernel_attrs() -> frozenset[str]:
    """Attributes Triton values have inside @triton.jit: tensor methods, dtype and pointer properties."""
    import triton.language as tl

    # Instance attributes set in __init__ (dir() of the class misses them); never .handle, the IR/interpreter object.
    names = {
        "dtype",
        "shape",
        "numel",
        "type",
        "element_ty",
        "primitive_bitwidth",
        "fp_mantissa_width",
        "exponent_bias",
        "name",
        "value",
        "address_space",
        "int_bitwidth",
        "int_signedness",
    }
    for cls in (tl.tensor, tl.dtype, tl.pointer_type, tl.block_type, tl.constexpr):
        names |= {n for n in dir(cls) if not n.startswith("_")}
    return frozenset(names)


@functools.cache
def triton_path_verdict(path: tuple[str, ...]) -> tuple[str, str] | None:
    """(reason, message) when a dotted path under triton.language reaches something a candidate may not use.

    Judged by the object the path resolves to in this triton, so that ``tl.core.inline_asm_elementwise``,
    ``triton.language.extra.cuda.globaltimer`` and ``tl.core.builtins`` (Python's builtins, an attribute of
    triton.language.core) are seen for what they are. Under triton.language.extra only libdevice is math; the
    rest (globaltimer, smid, ...) is inline assembly under other names, so a function there must be reached
    through a libdevice module. A path that does not resolve is judged by its spelling, and refused under
    triton.language.extra.
    """
    dotted = ".".join(path)
    # The spelling first, whatever it resolves to: Triton's interpreter rebinds triton.language's builtins
    # while it runs a kernel, so in a process that ran one the identity test below can miss them.
    spelled = next((p for p in path if p in TL_FORBIDDEN), None)
    if spelled:
        return TL_FORBIDDEN[spelled], f"'{dotted}' is not allowed"
    obj = _resolve(path)
    extra = path[:3] == ("triton", "language", "extra")
    if obj is _MISSING:
        if extra:
            return "triton_attr", f"'{dotted}' is not in this triton's triton.language.extra; use libdevice"
        return None
    for name, code in TL_FORBIDDEN.items():
        if obj is getattr(_tl_core(), name, _MISSING):
            return code, f"'{dotted}' is triton.language.{name}, which is not allowed"
    owner = _owner(obj)
    if owner != "triton" and not owner.startswith("triton."):
        root = owner.split(".")[0]
        return IMPORT_REASONS.get(root, "import"), f"'{dotted}' reaches {owner or type(obj).__name__!r}, outside triton"
    if extra and not isinstance(obj, types.ModuleType) and "libdevice" not in path:
        return "inline_asm", (
            f"'{dotted}' ({owner}) is not libdevice math: under triton.language.extra only "
            "libdevice is allowed; the rest is inline assembly and device intrinsics"
        )
    return None


_MISSING = object()


def _resolve(path: tuple[str, ...]) -> object:
    """The object a dotted path names in this process's triton, importing submodules on the way; _MISSING if none."""
    try:
        obj: object = importlib.import_module(path[0])
    except ImportError:
        return _MISSING
    for i in range(1, len(path)):
        nxt = getattr(obj, path[i], _MISSING)
        if nxt is _MISSING and isinstance(obj, types.ModuleType):
            try:
                nxt = importlib.import_module(".".join(path[: i + 1]))
            except ImportError:
                pass
        if nxt is _MISSING:
            return _MISSING
        obj = nxt
    return obj


def _owner(obj: object) -> str:
    """The module an object belongs to: its own name for a module, where it was defined for a class or function."""
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    if isinstance(obj, (int, float, str, bool, type(None))):
        return "triton"  # a plain constant (TRITON_MAX_TENSOR_NUMEL) carries no code
    if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return getattr(obj, "__module__", None) or ""
    return type(obj).__module__


def _tl_core() -> types.ModuleType:
    import triton.language.core

    return triton.language.core
