"""Everything a prompt says about one region, gathered once per region and search.

The region file and its sidecar, the target device, Inductor's own kernel with its
time, the roofline floor, and verified winners for similar regions from the cache.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_inductor._errors import UsageError
from llm_inductor.config import Config
from llm_inductor.search.gpu_facts import GpuFacts, floor_ms, gpu_facts
from llm_inductor.search.reference import cpu_reference, inductor_reference

log = logging.getLogger(__name__)

_SIDECAR_KEYS = ("key", "key16", "inputs", "outputs", "symbols")


@dataclass
class RegionContext:
    path: Path  # region_<key16>.py
    source: str
    meta: dict[str, Any]  # the sidecar
    facts: GpuFacts
    floor_ms: float | None
    reference: dict[str, Any]  # reference.inductor_reference()
    examples: list[dict[str, Any]] = field(default_factory=list)  # similar.similar_winners()

    @property
    def key(self) -> str:
        return self.meta["key"]

    @property
    def key16(self) -> str:
        return self.meta["key16"]

    @property
    def inductor_ms(self) -> float | None:
        return self.reference.get("inductor_ms")

    @property
    def params(self) -> str:
        return ", ".join(f"in{i}" for i in range(len(self.meta["inputs"])))

    def summary(self) -> str:
        """``key16 (ops) <- shapes``: one line for progress and tables."""
        ops = sorted(set(self.meta.get("ops", [])))
        shapes = " ".join(f"{_dt(s['dtype'])}[{','.join(s['shape'])}]" for s in self.meta["inputs"])
        return f"{self.key16} ({', '.join(ops[:5])}{', …' if len(ops) > 5 else ''}) <- {shapes}"


def _dt(dtype: str) -> str:
    return dtype.replace("torch.", "")


def read_region(path: str | Path) -> tuple[str, dict[str, Any]]:
    """The region file's text and its sidecar; UsageError (exit 2) if either is missing or malformed."""
    path = Path(path)
    sidecar = path.with_suffix(".json")
    if not path.is_file():
        raise UsageError(f"region file not found: {path}")
    if not sidecar.is_file():
        raise UsageError(f"region sidecar not found: {sidecar} (export regions with `llm-inductor regions --export`)")
    source = path.read_text()
    try:
        meta = json.loads(sidecar.read_text())
    except ValueError as e:
        raise UsageError(f"malformed region sidecar {sidecar}: {e}") from None
    missing = [k for k in _SIDECAR_KEYS if k not in meta]
    if missing or "def forward(" not in source or "def make_inputs(" not in source:
        what = f"sidecar keys {missing}" if missing else "forward() or make_inputs()"
        raise UsageError(f"malformed region {path}: no {what}. Region files follow the contract in docs/contracts.md.")
    return source, meta


def load_context(path: str | Path, cfg: Config, store: Any = None, device: str = "cuda") -> RegionContext:
    from llm_inductor.search.similar import similar_winners

    source, meta = read_region(path)
    reference = inductor_reference(path, cfg.cache_path) if device == "cuda" else cpu_reference()
    examples: list[dict[str, Any]] = []
    if store is not None:
        try:
            examples = similar_winners(meta, store, cfg)
        except Exception as e:  # retrieval is a help, never a reason to stop
            log.warning("llm_inductor: no similar winners for %s: %s", meta["key16"], e)
    return RegionContext(Path(path), source, meta, gpu_facts(device), floor_ms(meta, device), reference, examples)


def spec_lines(meta: dict[str, Any]) -> list[str]:
    lines = []
    for kind in ("inputs", "outputs"):
        for i, s in enumerate(meta[kind]):
            name = f"in{i}" if kind == "inputs" else f"out{i}"
            extra = f", integer values in [0, {s['index_high']})" if s.get("index_high") else ""
            tail = "" if s.get("aligned", True) else ", storage offset not 16-byte aligned"
            lines.append(f"- {name}: {s['dtype']} shape [{', '.join(s['shape'])}] stride ({', '.join(s['stride'])}){extra}{tail}")
    if meta.get("symbols"):
        seen = ", ".join(f"{k} = {v}" for k, v in meta["symbols"].items())
        lines.append(f"- symbolic dims (seen: {seen}) vary at run time; read them from the inputs.")
    return lines
