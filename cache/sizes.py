"""Per-size records of a family entry: where its kernel was verified and timed, and whether it won there.

A family entry (its key is a family key, ``KernelKey.family``) holds one kernel and the family's
region file. It is served at a size only where a ``SizeRecord`` says the kernel was verified
and timed to beat Inductor there (and passed the in-graph gate), on this GPU model and under the
Inductor mode the region is compiled with. Elsewhere the region is a miss, recorded as pending
with the reason "timing needed at this size", which ``llm-inductor tune --pending`` fills by
verification and timing alone, without an LLM.

The records live beside the entries, never inside them: adding a size changes neither the
entry's id (so neither the FX-cache key of a graph served at another size) nor a pack's
signature. Each record is signed on its own, over its content hash, with the entry's
trust rules (a trusted signer, the same torch and triton major.minor, this GPU model).

The bucket is the exact sizes (``s0=4096,s1=128256``): correctness at one size is never
assumed from another (int32 offsets overflow; masks that assume a power of two break).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

SIZES_SCHEMA = 1
TIMING_NEEDED = "timing needed at this size"
_SYMBOL = re.compile(r"s\d+")


class SizeRecordError(ValueError):
    """A size record that cannot be used; ``reason`` is malformed | schema | tampered."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def bucket(sizes: Mapping[str, int]) -> str:
    """The canonical text of a size assignment: ``s0=4096,s1=128256`` (symbols in numeric order)."""
    return ",".join(f"{s}={int(sizes[s])}" for s in sorted(sizes, key=lambda s: int(s[1:])))


def parse_bucket(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in filter(None, text.split(",")):
        name, _, value = part.partition("=")
        if not _SYMBOL.fullmatch(name) or not value.isdigit():
            raise SizeRecordError("malformed", f"size bucket {text!r} is not 's0=N,s1=M,...'")
        out[name] = int(value)
    return out


@dataclass
class SizeRecord:
    """One family entry at one size, on one GPU model, against one Inductor mode."""

    entry_id: str  # the family entry's id (key:content16)
    gpu: str  # the GPU model ("cpu" under the interpreter)
    inductor_mode: str  # the Inductor it was timed against (default | max-autotune-no-cudagraphs)
    sizes: dict[str, int]  # the family's symbols at this size
    verified: bool  # every correctness draw at these sizes passed
    won: bool  # verified, timed to beat Inductor by the margin, and the in-graph gate passed (where it ran)
    speedup: float | None = None  # Inductor time / candidate time
    candidate_us: float | None = None
    inductor_us: float | None = None
    graph_ab: dict[str, Any] = field(default_factory=dict)  # the in-graph gate at these sizes ({} where it did not run)
    why: str = ""  # what decided ``won``, in words
    versions: dict[str, str] = field(default_factory=dict)  # torch, triton, gpu it was measured under
    created: float = field(default_factory=time.time)
    schema: int = SIZES_SCHEMA
    signature: str | None = None  # hex Ed25519 over content_hash
    signer: str | None = None

    _UNSIGNED = ("signature", "signer", "created")

    @property
    def bucket(self) -> str:
        return bucket(self.sizes)

    @property
    def key(self) -> str:
        """What a lookup names: entry, GPU model, Inductor mode and sizes."""
        return record_key(self.entry_id, self.gpu, self.inductor_mode, self.sizes)

    @property
    def servable_here(self) -> bool:
        """What the record itself says (its trust is the store's to judge): the kernel won at this size."""
        return self.verified and self.won

    def signed_payload(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in self._UNSIGNED}

    @property
    def content_hash(self) -> str:
        blob = json.dumps(self.signed_payload(), sort_keys=True, default=str).encode()
        return hashlib.sha256(b"llm_inductor size record\0" + blob).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["content_hash"] = self.content_hash
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, d: Any) -> SizeRecord:
        if not isinstance(d, dict):
            raise SizeRecordError("malformed", "size record is not a JSON object")
        d = dict(d)
        if d.get("schema") != SIZES_SCHEMA:
            raise SizeRecordError("schema", f"unknown size-record schema {d.get('schema')!r} (reads {SIZES_SCHEMA})")
        recorded = d.pop("content_hash", None)
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            rec = cls(**{k: v for k, v in d.items() if k in names})
        except TypeError as e:
            raise SizeRecordError("malformed", f"size record fields do not fit: {e}") from None
        problems = _type_problems(rec)
        if problems:
            raise SizeRecordError("malformed", f"size record fields of the wrong type: {problems}")
        if recorded is not None and recorded != rec.content_hash:
            raise SizeRecordError("tampered", f"content hash mismatch for size record {rec.key}: it was altered")
        return rec

    @classmethod
    def from_json(cls, text: str | bytes) -> SizeRecord:
        try:
            d = json.loads(text.decode("utf-8") if isinstance(text, (bytes, bytearray)) else text)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SizeRecordError("malformed", f"size record is not JSON: {e}") from None
        return cls.from_dict(d)


def record_key(entry_id: str, gpu: str, inductor_mode: str, sizes: Mapping[str, int]) -> str:
    return f"{entry_id}|{gpu}|{inductor_mode}|{bucket(sizes)}"


def _type_problems(rec: SizeRecord) -> list[str]:
    wrong = [
        name
        for name, types in (
            ("entry_id", str),
            ("gpu", str),
            ("inductor_mode", str),
            ("sizes", dict),
            ("verified", bool),
            ("won", bool),
            ("graph_ab", dict),
            ("why", str),
            ("versions", dict),
            ("created", (int, float)),
            ("signature", (str, type(None))),
            ("signer", (str, type(None))),
        )
        if not isinstance(getattr(rec, name), types)
    ]
    for name in ("speedup", "candidate_us", "inductor_us"):
        v = getattr(rec, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            wrong.append(name)
    if isinstance(rec.sizes, dict) and not all(
        isinstance(k, str) and _SYMBOL.fullmatch(k) and type(v) is int and v >= 0 for k, v in rec.sizes.items()
    ):
        wrong.append("sizes")
    return wrong
