"""``KernelKey``: what a stored kernel is keyed by, and nothing else.

Like Inductor's ``FxGraphHashDetails``, the key lists every field it hashes and can
explain itself with ``debug_lines()``. It hashes the canonical region graph (op
overloads, constants, wiring; inputs numbered by first use, never node names), the
input and output tensor specs, the device class and the schema version. Torch and
Triton versions, the GPU model and the verified size range belong to the entry,
not to the key: a key that is too specific makes sharing useless.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

KEY_SCHEMA = 1


@dataclass(frozen=True)
class TensorSpec:
    """dtype, shape and strides (ints, or expressions over canonical symbols s0, s1, ...)."""

    dtype: str  # "torch.bfloat16"
    shape: tuple[str, ...]
    stride: tuple[str, ...]
    aligned: bool = True  # storage offset is a multiple of 16 bytes

    def line(self) -> str:
        tail = "" if self.aligned else " unaligned"
        return f"{self.dtype}[{', '.join(self.shape)}] stride=({', '.join(self.stride)}){tail}"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TensorSpec":
        return cls(d["dtype"], tuple(d["shape"]), tuple(d["stride"]), bool(d.get("aligned", True)))


@dataclass(frozen=True)
class KernelKey:
    graph: tuple[str, ...]  # one canonical line per op, in canonical order
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    device: str  # "cuda:sm90" | "cpu"
    schema: int = KEY_SCHEMA

    def _fields(self) -> list[tuple[str, str]]:
        rows = [("schema", str(self.schema)), ("device", self.device)]
        rows += [(f"input[{i}]", s.line()) for i, s in enumerate(self.inputs)]
        rows += [(f"output[{i}]", s.line()) for i, s in enumerate(self.outputs)]
        rows += [(f"graph[{i}]", line) for i, line in enumerate(self.graph)]
        return rows

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for name, value in self._fields():
            h.update(f"{name}\0{value}\n".encode())
        return h.hexdigest()

    @property
    def key16(self) -> str:
        return self.digest[:16]

    def debug_lines(self) -> list[str]:
        """One line per hashed field with its own hash, so two keys can be diffed."""
        return [
            f"[{hashlib.sha256(value.encode()).hexdigest()[:12]}] {name}: {value}" for name, value in self._fields()
        ]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["digest"] = self.digest
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "KernelKey":
        key = cls(
            graph=tuple(d["graph"]),
            inputs=tuple(TensorSpec.from_dict(s) for s in d["inputs"]),
            outputs=tuple(TensorSpec.from_dict(s) for s in d["outputs"]),
            device=d["device"],
            schema=int(d.get("schema", KEY_SCHEMA)),
        )
        if "digest" in d and d["digest"] != key.digest:
            raise ValueError(f"key fields do not hash to the recorded digest {d['digest'][:16]}")
        return key

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
