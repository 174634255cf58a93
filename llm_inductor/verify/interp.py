"""The Triton interpreter, made to compute what a GPU computes where it does not by itself.

Verdicts on the CPU must be the verdicts a GPU would give: a kernel that passes
under the interpreter and fails on the H200 (or the reverse) wastes a search
round or, worse, serves a wrong kernel. Two places differ in triton 3.9's
interpreter (``InterpreterBuilder``); both are patched in the worker only, before
any candidate is imported. Versions without these code paths are left alone.
"""

from __future__ import annotations

_applied = False


def match_gpu_numerics() -> None:
    """Idempotent; patches the interpreter for the whole process."""
    global _applied
    if not _applied:
        round_bf16_like_gpus()
        dot_tf32_like_gpus()
        _applied = True


def round_bf16_like_gpus() -> None:
    """Make the interpreter's fp32 -> bf16 casts round to nearest even, as GPUs (and torch) do.

    Triton's interpreter (3.9, InterpreterBuilder.cast_impl) converts fp32 to bf16
    without a rounding mode, i.e. it truncates: every bf16 output of every kernel
    then errs by up to a full ulp, twice what the same kernel errs on a GPU, and
    verdicts on the CPU would not match the GPU's. Versions without this code path
    are left alone.
    """
    import numpy as np
    import triton.language as tl
    from triton.runtime import interpreter

    builder = getattr(interpreter, "InterpreterBuilder", None)
    original = getattr(builder, "cast_impl", None) if builder is not None else None
    handle = getattr(interpreter, "TensorHandle", None)
    if original is None or handle is None:
        return

    def cast_impl(self, src, dst_type):
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            bits = np.ascontiguousarray(src.data, dtype=np.float32).view(np.uint32).astype(np.uint64)
            rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
            nan = np.isnan(src.data)
            rounded[nan] = ((bits[nan] >> 16) | 0x40).astype(np.uint16)  # keep NaNs quiet NaNs
            return handle(rounded.reshape(np.shape(src.data)), dst_type.scalar)
        return original(self, src, dst_type)

    builder.cast_impl = cast_impl


def dot_tf32_like_gpus() -> None:
    """Make the interpreter's fp32 tl.dot round its inputs to TF32 when the kernel asks for TF32, as GPUs do.

    tl.dot's default input precision is "tf32": on a GPU an fp32 dot without
    input_precision="ieee" multiplies 10-bit mantissas. The interpreter (3.9,
    InterpreterBuilder.create_dot) ignores the precision and multiplies in full fp32,
    so a kernel that is fine on the CPU would be a lower-precision kernel on the GPU.
    """
    import numpy as np
    from triton._C.libtriton import ir
    from triton.runtime import interpreter

    builder = getattr(interpreter, "InterpreterBuilder", None)
    original = getattr(builder, "create_dot", None) if builder is not None else None
    handle = getattr(interpreter, "TensorHandle", None)
    tf32 = getattr(getattr(ir, "INPUT_PRECISION", None), "TF32", None)
    if original is None or handle is None or tf32 is None:
        return

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        if input_precision == tf32 and a.data.dtype == np.float32 and b.data.dtype == np.float32:
            a = handle(to_tf32(a.data), a.dtype.scalar)
            b = handle(to_tf32(b.data), b.dtype.scalar)
        return original(self, a, b, d, input_precision, max_num_imprecise_acc)

    builder.create_dot = create_dot


def to_tf32(data):
    """fp32 numpy data rounded to nearest even at TF32's 10 mantissa bits; Inf and NaN kept."""
    import numpy as np

    bits = np.ascontiguousarray(data, dtype=np.float32).view(np.uint32)
    special = (bits & np.uint32(0x7F800000)) == np.uint32(0x7F800000)
    rounded = (bits + (((bits >> np.uint32(13)) & np.uint32(1)) + np.uint32(0xFFF))) & np.uint32(0xFFFFE000)
    return np.where(special, bits, rounded).view(np.float32).reshape(np.shape(data))
