"""A cache entry: one verified kernel for one ``KernelKey``.

``content_hash`` covers everything that decides what runs and why it was trusted
(key, kernel source, region file and sidecar, verification and speed records,
versions); the signature signs ``content_hash``. ``entry_id`` = ``key:content16``
is what a compiled graph names in its ``llm_inductor::kernel`` call, so a graph
replayed from Inductor's FX cache finds exactly the kernel it was compiled with.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

ENTRY_SCHEMA = 1


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

    def to_json(self) -> str:
        d = asdict(self)
        d["content_hash"] = self.content_hash
        return json.dumps(d, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Entry":
        """Parse an entry; raises ValueError for an unknown schema or a hash mismatch."""
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError("entry is not a JSON object")
        if d.get("schema") != ENTRY_SCHEMA:
            raise ValueError(f"unknown entry schema {d.get('schema')!r} (this build reads {ENTRY_SCHEMA})")
        recorded = d.pop("content_hash", None)
        names = {f.name for f in fields(cls)}
        entry = cls(**{k: v for k, v in d.items() if k in names})
        if recorded is not None and recorded != entry.content_hash:
            raise ValueError(f"content hash mismatch for key {entry.key[:16]}: the entry was altered")
        return entry
