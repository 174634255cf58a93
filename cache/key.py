"""``KernelKey``: what a stored kernel is keyed by, and nothing else.

Like Inductor's ``FxGraphHashDetails``, the key lists every field it hashes and can
explain itself with ``debug_lines()``. It hashes the canonical region graph (op
overloads, constants, wiring; inputs numbered by first use, never node names), the
input and output tensor specs, which region values are returned (output identity), the
bounds of index inputs, the device class and the schema version. Torch and Triton
versions, the GPU model and the verified size range belong to the entry, not to the
key: a key that is too specific makes sharing useless.

Schema history. 1: no output identity, no index bounds; two regions returning different
intermediates of the same shape (rstd against variance) shared a key. 2: both added.
Size families add a second, size-abstracted key beside this
exact one (``family=True``, which adds the row ``abstraction: family``) rather than
changing it, so exact digests stay as they were and caches migrate once: ``legacy_digest`` names a
region's schema-1 key, which ``llm-inductor cache verify`` uses to re-verify old entries
under the new key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from typing import Any

KEY_SCHEMA = 2


@dataclass(frozen=True)
class TensorSpec:
    """dtype, shape and strides (ints, or expressions over canonical symbols s0, s1, ...)."""

    dtype: str  # "torch.bfloat16"
    shape: tuple[str, ...]
    stride: tuple[str, ...]
    aligned: bool = True  # storage offset is a multiple of 16 bytes
    index_high: str | None = None  # an index input: values lie in [0, index_high) (a size expression)

    def line(self) -> str:
        tail = "" if self.aligned else " unaligned"
        if self.index_high is not None:
            tail += f" index<{self.index_high}"
        return f"{self.dtype}[{', '.join(self.shape)}] stride=({', '.join(self.stride)}){tail}"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        high = d.get("index_high")
        return cls(
            d["dtype"],
            tuple(d["shape"]),
            tuple(d["stride"]),
            bool(d.get("aligned", True)),
            None if high is None else str(high),
        )


@dataclass(frozen=True)
class KernelKey:
    graph: tuple[str, ...]  # one canonical line per op, in canonical order
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    device: str  # "cuda:sm90" | "cpu"
    returns: tuple[str, ...] = ()  # the graph values returned, in output order ("v3", "v5")
    schema: int = KEY_SCHEMA
    family: bool = False  # sizes abstracted into symbols (passes/family.py); an exact key hashes what it saw

    def _fields(self) -> list[tuple[str, str]]:
        rows = [("schema", str(self.schema)), ("device", self.device)]
        if self.family:  # only then: exact digests stay what they were
            rows.append(("abstraction", "family"))
        rows += [(f"input[{i}]", s.line()) for i, s in enumerate(self.inputs)]
        rows += [(f"output[{i}]", s.line()) for i, s in enumerate(self.outputs)]
        rows += [(f"graph[{i}]", line) for i, line in enumerate(self.graph)]
        if self.schema >= 2:
            rows.append(("returns", ", ".join(self.returns)))
        return rows

    @property
    def legacy_digest(self) -> str:
        """The digest schema 1 gave this region (no output identity, no index bounds)."""
        plain = tuple(replace(s, index_high=None) for s in self.inputs)
        return replace(self, inputs=plain, returns=(), schema=1).digest

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
    def from_dict(cls, d: dict[str, Any]) -> KernelKey:
        key = cls(
            graph=tuple(d["graph"]),
            inputs=tuple(TensorSpec.from_dict(s) for s in d["inputs"]),
            outputs=tuple(TensorSpec.from_dict(s) for s in d["outputs"]),
            device=d["device"],
            returns=tuple(str(r) for r in d.get("returns", ())),
            schema=int(d.get("schema", 1)),  # schema 1 wrote no "returns" and may lack "schema"
            family=bool(d.get("family", False)),
        )
        if "digest" in d and d["digest"] != key.digest:
            raise ValueError(f"key fields do not hash to the recorded digest {d['digest'][:16]}")
        return key

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
