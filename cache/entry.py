"""A cache entry: one verified kernel for one ``KernelKey``.

``content_hash`` covers everything that decides what runs and why it was trusted
(key, kernel source, region file and sidecar, verification and speed records,
versions); the signature signs ``content_hash``. ``entry_id`` = ``key:content16``
is what a compiled graph names in its ``llm_inductor::kernel`` call, so a graph
replayed from Inductor's FX cache finds exactly the kernel it was compiled with.

Schema 1 (every field below is part of it):
  key, key_fields       the ``KernelKey`` digest and its fields (``KernelKey.to_dict``)
  kernel_source         the candidate module: ``forward(*inputs)`` plus its Triton kernels
  region_source/_meta   the region file and its sidecar: the reference it was verified against
  verification          the verifier's record (``VerifyResult.to_dict()``)
  speed                 per GPU model: {"speedup", "candidate_us", "inductor_us", "roofline_pct", "floor_us",
                        "graph_ab" (the in-graph A/B), "timings" (the verifier's)}
  envelope              the sizes verified (the validity envelope)
  provenance            provider, model, prompt hash, tokens, cost, time (provider "manual" for ``cache add``)
  versions              {"torch", "triton", "gpu"} it was verified under ("cpu" for CPU entries)
  status                served | slows_graph
  signature, signer     Ed25519 over ``content_hash`` and the signer's key fingerprint (``cache/sign.py``)
An entry of another schema is a miss, never a wrong kernel (``EntryError("schema")``).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

ENTRY_SCHEMA = 1


class EntryError(ValueError):
    """An entry that cannot be used; ``reason`` is malformed | schema | tampered."""

    def __init__(self, reason: str, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.key = key


_DICT_FIELDS = ("key_fields", "region_meta", "verification", "speed", "envelope", "provenance", "versions")
_TYPES: dict[str, Any] = {
    **{name: dict for name in _DICT_FIELDS},
    **{name: str for name in ("key", "kernel_source", "region_source", "status")},
    "created": (int, float),
    "signature": (str, type(None)),
    "signer": (str, type(None)),
}


@dataclass
class Entry:
    key: str  # KernelKey digest
    key_fields: dict[str, Any]  # KernelKey.to_dict()
    kernel_source: str
    region_source: str
    region_meta: dict[str, Any]  # the sidecar
    verification: dict[str, Any] = field(default_factory=dict)
    speed: dict[str, Any] = field(default_factory=dict)  # per GPU model
    envelope: dict[str, Any] = field(default_factory=dict)  # sizes verified
    provenance: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)  # torch, triton, gpu
    status: str = "served"  # served | slows_graph | revoked
    created: float = field(default_factory=time.time)
    schema: int = ENTRY_SCHEMA
    signature: str | None = None  # hex Ed25519 over content_hash
    signer: str | None = None  # hex public key fingerprint

    _UNSIGNED = ("signature", "signer", "created")

    def signed_payload(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in self._UNSIGNED}

    @property
    def content_hash(self) -> str:
        blob = json.dumps(self.signed_payload(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()

    @property
    def entry_id(self) -> str:
        return f"{self.key}:{self.content_hash[:16]}"

    # ------------------------------------------------------------ views for listings
    @property
    def key16(self) -> str:
        return self.key[:16]

    @property
    def device(self) -> str:
        return str(self.key_fields.get("device") or self.region_meta.get("device") or "?")

    @property
    def ops(self) -> list[str]:
        return [str(o) for o in self.region_meta.get("ops", [])]

    @property
    def shapes(self) -> list[str]:
        """Input specs as 'float32[8,33]' strings, from the sidecar."""
        out = []
        for spec in self.region_meta.get("inputs", []):
            dtype = str(spec.get("dtype", "?")).replace("torch.", "")
            out.append(f"{dtype}[{','.join(str(s) for s in spec.get('shape', []))}]")
        return out

    def speedup(self, gpu: str | None = None) -> float | None:
        """Region speedup over Inductor on this GPU model (any model when gpu is None)."""
        records = [self.speed.get(gpu)] if gpu is not None else list(self.speed.values())
        values = [r.get("speedup") for r in records if isinstance(r, dict)]
        values = [float(v) for v in values if isinstance(v, (int, float))]
        return max(values) if values else None

    @classmethod
    def from_verification(
        cls,
        result: Any,
        *,
        region_source: str,
        region_meta: dict[str, Any],
        kernel_source: str,
        provenance: dict[str, Any],
        versions: dict[str, str],
        speed: dict[str, Any] | None = None,
    ) -> Entry:
        """An unsigned entry for a kernel the verifier accepted (a ``VerifyResult``) on ``versions["gpu"]``.

        Speed records of other GPU models (``speed``) are kept; this GPU's is replaced.
        """
        timings = dict(getattr(result, "timings", None) or {})  # empty under the CPU interpreter: speed not judged
        us = lambda name: None if timings.get(name) is None else 1e3 * timings[name]  # noqa: E731
        record = {  # the same record as the tuner's (llm_inductor/search/winners.py)
            "speedup": timings.get("speedup"),
            "candidate_us": us("candidate_ms"),
            "inductor_us": us("inductor_ms"),
            "roofline_pct": timings.get("pct_of_roofline"),
            "floor_us": us("floor_ms"),
            "graph_ab": {},
            "timings": timings,
        }
        return cls(
            key=region_meta["key"],
            key_fields=region_meta["key_fields"],
            kernel_source=kernel_source,
            region_source=region_source,
            region_meta=region_meta,
            verification=result.to_dict(),
            speed={**(speed or {}), versions["gpu"]: record},
            envelope=dict(getattr(result, "envelope", None) or {}),
            provenance=provenance,
            versions=dict(versions),
        )

    # ------------------------------------------------------------ serialization
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["content_hash"] = self.content_hash
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, d: Any) -> Entry:
        """Build an entry from its dict; raises EntryError (a ValueError) for anything but an intact one."""
        if not isinstance(d, dict):
            raise EntryError("malformed", "entry is not a JSON object")
        d = dict(d)
        key = d.get("key") if isinstance(d.get("key"), str) else None
        if d.get("schema") != ENTRY_SCHEMA:
            raise EntryError(
                "schema", f"unknown entry schema {d.get('schema')!r} (this build reads {ENTRY_SCHEMA})", key
            )
        recorded = d.pop("content_hash", None)
        names = {f.name for f in fields(cls)}
        required = ("key", "key_fields", "kernel_source", "region_source", "region_meta")
        missing = [k for k in required if k not in d]
        if missing:
            raise EntryError("malformed", f"entry lacks {missing}", key)
        try:
            entry = cls(**{k: v for k, v in d.items() if k in names})
        except TypeError as e:
            raise EntryError("malformed", f"entry fields do not fit schema {ENTRY_SCHEMA}: {e}", key) from None
        wrong = [f.name for f in fields(cls) if not isinstance(getattr(entry, f.name), _TYPES.get(f.name, object))]
        if wrong:
            raise EntryError("malformed", f"entry fields of the wrong type: {wrong}", key)
        if recorded is not None and recorded != entry.content_hash:
            raise EntryError("tampered", f"content hash mismatch for key {entry.key[:16]}: the entry was altered", key)
        return entry

    @classmethod
    def from_json(cls, text: str | bytes) -> Entry:
        """Parse an entry; raises EntryError (a ValueError) on bad JSON, an unknown schema or a hash mismatch."""
        try:
            d = json.loads(text.decode("utf-8") if isinstance(text, (bytes, bytearray)) else text)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise EntryError("malformed", f"entry is not JSON: {e}") from None
        return cls.from_dict(d)
