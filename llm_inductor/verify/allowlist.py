"""What a candidate may name: the data of the static policy (policy.py walks the AST against it).

Each set is an allowlist; the ``*_REASONS`` maps only name the reason code for
things people (and LLMs) reach for, so the feedback says "policy:network" rather
than "policy:import". Anything in no set is rejected all the same.
"""

from __future__ import annotations

import functools

ALLOWED_MODULES = {"torch", "triton", "triton.language", "math", "__future__"}
ALLOWED_PREFIXES = ("triton.language.extra",)  # libdevice lives here, per backend
# Named reasons for imports people (and LLMs) reach for.
IMPORT_REASONS = {
    "os": "process", "sys": "process", "subprocess": "process", "multiprocessing": "process", "signal": "process",
    "shutil": "file", "pathlib": "file", "io": "file", "tempfile": "file", "glob": "file", "pickle": "file",
    "socket": "network", "http": "network", "urllib": "network", "requests": "network", "ssl": "network",
    "threading": "thread", "_thread": "thread", "concurrent": "thread", "asyncio": "thread",
    "ctypes": "native_code", "cffi": "native_code",
    "importlib": "exec", "builtins": "exec", "inspect": "reflection", "gc": "reflection",
}

# Builtins a wrapper may call; other builtins get named reasons or policy:builtin.
ALLOWED_BUILTINS = {
    "len", "range", "min", "max", "int", "float", "bool", "tuple", "list", "dict", "abs", "divmod",
    "enumerate", "zip", "isinstance", "all", "any", "sum", "round", "reversed", "sorted", "str", "print",
    "ValueError", "TypeError", "RuntimeError", "AssertionError", "NotImplementedError", "True", "False", "None",
}
BUILTIN_REASONS = {
    "open": "file", "exec": "exec", "eval": "exec", "compile": "exec", "__import__": "exec",
    "getattr": "reflection", "setattr": "monkeypatch", "delattr": "monkeypatch", "vars": "reflection",
    "globals": "reflection", "locals": "reflection", "dir": "reflection", "type": "reflection",
    "object": "reflection", "super": "reflection", "breakpoint": "process", "input": "process",
    "memoryview": "reflection", "id": "reflection", "exit": "process", "quit": "process",
}

# torch.<name> a wrapper may use: allocation, devices, sizes. dtypes are added below.
TORCH_ALLOWED = {
    "empty", "empty_like", "empty_strided", "zeros", "zeros_like", "ones", "ones_like", "full", "full_like",
    "device", "Size", "Tensor", "dtype", "finfo", "iinfo", "strided", "contiguous_format", "preserve_format",
}
TORCH_CUDA_ALLOWED = {"device", "current_device", "get_device_capability", "get_device_properties", "is_available"}
TORCH_REASONS = {
    "Stream": "stream", "Event": "stream", "stream": "stream", "current_stream": "stream", "set_stream": "stream",
    "default_stream": "stream", "synchronize": "stream", "ExternalStream": "stream", "graph": "stream",
    "CUDAGraph": "stream", "load_inline": "native_code", "load": "native_code", "cpp_extension": "native_code",
    "utils": "native_code", "ops": "torch_compute", "_C": "native_code", "compile": "exec", "jit": "exec",
    "testing": "monkeypatch", "multiprocessing": "process",
}
TRITON_ALLOWED = {"jit", "autotune", "heuristics", "Config", "cdiv", "next_power_of_2", "language"}
# Methods and properties a wrapper may use on tensors (and ints, dicts of meta-parameters).
WRAPPER_ATTRS = {
    "view", "reshape", "permute", "transpose", "contiguous", "stride", "size", "numel", "dim", "ndim",
    "is_contiguous", "expand", "expand_as", "unsqueeze", "squeeze", "flatten", "unflatten", "as_strided", "t",
    "narrow", "select", "view_as", "element_size", "data_ptr", "new_empty", "new_zeros", "new_ones", "new_full",
    "new_empty_strided", "to", "clone", "copy_", "storage_offset", "dtype", "device", "shape", "is_cuda",
    "unbind", "split", "chunk", "movedim", "zero_", "fill_", "itemsize", "T", "mT", "type",
    "is_floating_point", "float", "half", "bfloat16", "bit_length", "multi_processor_count",
    "append", "extend",  # list building in the wrapper; no tensor has these, module-level lists are caught apart
}
TL_FORBIDDEN = {"inline_asm_elementwise": "inline_asm"}
DECORATORS = {"jit", "autotune", "heuristics"}
MUTATING_METHODS = {"append", "extend", "insert", "pop", "popitem", "clear", "update", "setdefault", "add",
                     "remove", "discard", "__setitem__"}


@functools.lru_cache(maxsize=1)
def torch_dtypes() -> frozenset[str]:
    import torch

    return frozenset(n for n in dir(torch) if isinstance(getattr(torch, n, None), torch.dtype))


@functools.lru_cache(maxsize=1)
def kernel_attrs() -> frozenset[str]:
    """Attributes Triton values have inside @triton.jit: tensor methods, dtype and pointer properties."""
    import triton.language as tl

    # Instance attributes set in __init__ (dir() of the class misses them); never .handle, the IR/interpreter object.
    names = {"dtype", "shape", "numel", "type", "element_ty", "primitive_bitwidth", "fp_mantissa_width",
             "exponent_bias", "name", "value", "address_space", "int_bitwidth", "int_signedness"}
    for cls in (tl.tensor, tl.dtype, tl.pointer_type, tl.block_type, tl.constexpr):
        names |= {n for n in dir(cls) if not n.startswith("_")}
    return frozenset(names)
