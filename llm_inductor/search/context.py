"""Everything a prompt says about one region, gathered once per region and search.

The region file and its sidecar, the target device, Inductor's own kernel with its
time, the roofline floor, and verified winners for similar regions from the cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_inductor._errors import UsageError
from llm_inductor.config import Config
from llm_inductor.passes import regionfile
from llm_inductor.passes.regionfile import RegionFile, Sidecar
from llm_inductor.search.baseline import cpu_baseline, inductor_baseline
from llm_inductor.search.gpu_facts import GpuFacts, floor_ms, gpu_facts

log = logging.getLogger(__name__)

_SIDECAR_FIELDS = ("key", "key16", "inputs", "outputs", "symbols")  # what a prompt and a search need


@dataclass
class RegionContext:
    path: Path  # region_<key16>.py
    source: str
    sidecar: Sidecar
    facts: GpuFacts
    floor_ms: float | None
    baseline: dict[str, Any]  # baseline.inductor_baseline()
    examples: list[dict[str, Any]] = field(default_factory=list)  # similar.similar_winners()

    @property
    def key(self) -> str:
        return str(self.sidecar.key)

    @property
    def key16(self) -> str:
        return str(self.sidecar.key16)

    @property
    def inductor_ms(self) -> float | None:
        return self.baseline.get("inductor_ms")

    @property
    def params(self) -> str:
        return ", ".join(f"in{i}" for i in range(len(self.sidecar.inputs)))

    def summary(self) -> str:
        """``key16 (ops) <- shapes``: one line for progress and tables."""
        ops = sorted(set(self.sidecar.ops or ()))
        shapes = " ".join(f"{_dt(s.dtype)}[{','.join(s.shape)}]" for s in self.sidecar.inputs)
        return f"{self.key16} ({', '.join(ops[:5])}{', …' if len(ops) > 5 else ''}) <- {shapes}"


def _dt(dtype: str) -> str:
    return dtype.replace("torch.", "")


def read_region(path: str | Path) -> RegionFile:
    """The region file's text and its sidecar; UsageError (exit 2) if either is missing or malformed."""
    region = regionfile.load(path, require=_SIDECAR_FIELDS)
    if "def forward(" not in region.source or "def make_inputs(" not in region.source:
        raise UsageError(
            f"malformed region {region.path}: no forward() or make_inputs(). "
            "Region files follow the contract in docs/contracts.md."
        )
    return region


def load_context(path: str | Path, cfg: Config, store: Any = None, device: str = "cuda") -> RegionContext:
    from llm_inductor.search.similar import similar_winners

    region = read_region(path)
    side = region.sidecar
    baseline = inductor_baseline(path, cfg.cache_path) if device == "cuda" else cpu_baseline()
    examples: list[dict[str, Any]] = []
    if store is not None:
        try:
            examples = similar_winners(side, store, cfg)
        except Exception as e:  # retrieval is a help, never a reason to stop
            log.warning("llm_inductor: no similar winners for %s: %s", side.key16, e)
    return RegionContext(Path(path), region.source, side, gpu_facts(device), floor_ms(side, device), baseline, examples)


def spec_lines(side: Sidecar) -> list[str]:
    lines = []
    for kind, specs in (("inputs", side.inputs), ("outputs", side.outputs)):
        for i, s in enumerate(specs):
            name = f"in{i}" if kind == "inputs" else f"out{i}"
            extra = f", integer values in [0, {s.index_high})" if s.index_high else ""
            tail = "" if s.aligned else ", storage offset not 16-byte aligned"
            lines.append(
                f"- {name}: {s.dtype} shape [{', '.join(s.shape)}] stride ({', '.join(s.stride)}){extra}{tail}"
            )
    if side.symbols:
        seen = ", ".join(f"{k} = {v}" for k, v in side.symbols.items())
        lines.append(f"- symbolic dims (seen: {seen}) vary at run time; read them from the inputs.")
    return lines
