"""The region file, the compile path's hand-off to the tune path: its paths, its sidecar, its reads and its write.

The contract (docs/contracts.md, "Region file"):

    ``region_<key16>.py``, plain Python, with its metadata in a sidecar ``region_<key16>.json``::

        import torch
        def forward(in0, in1):                              # the region in plain PyTorch (aten ops allowed)
            ...
            return out                                      # a tensor or a tuple of tensors
        def make_inputs(seed=0, device="cpu", sizes=None):  # sizes: {"s0": 7, ...} overrides symbolic dims
            ...                                             # fresh inputs with the region's shapes, strides, dtypes;
            return (in0, in1)                               # index inputs drawn in their valid range

    The sidecar holds the key (``key``, ``key16``, ``key_fields``, and ``legacy_key``, the schema-1
    digest), the input and output specs (``dtype``, ``shape``, ``stride``, ``aligned``, and
    ``index_high`` for index inputs), the symbolic dims with the sizes seen (``symbols``) and the
    input dims that carry them (``bindings``), the ops, the estimated cost, and the torch version
    that exported it. One file serves as the prompt's reference, the verifier's ground truth and a
    reproducible test case.

    A region file that arrived with a cache entry (a pack, Redis, a teammate) is another author's
    code: ``cache verify``, ``cache add`` and the runtime op never import it. They use the region
    this package rebuilds from the key (``passes/rebuild.py``).

No other module parses or writes a sidecar's JSON. ``Sidecar`` is the typed view of one,
validated when it is built; every field may be absent (a region handed to ``llm-inductor
verify`` may come without a sidecar, or with part of one), and a reader names what it needs
with ``require``. Fields this build does not know are kept, so a rewrite loses nothing.
Graph files (``graph_<key16>.py``, ``search/graphs.py``) are rendered the same way; their
sidecar adds ``regions``, the key16s of the regions the graph holds.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from llm_inductor._errors import UsageError
from llm_inductor._files import atomic_write, read_source
from llm_inductor.cache.key import KernelKey, TensorSpec

REGION_SCHEMA = 2  # 2: the key names the returned values and index bounds (KEY_SCHEMA 2)
PREFIX = "region"  # region_<key16>.py; graph files use "graph"

_MADE_BY = (
    "region files written by a compile (LLM_INDUCTOR_CACHE_DIR/regions) or by `llm-inductor regions "
    "--export DIR` have one beside them (docs/contracts.md, 'Region file')"
)
_FIX = "regenerate it with a compile or `llm-inductor regions --export DIR`"


# ---------------------------------------------------------------------------- paths


def script_path(directory: str | Path, key16: str, prefix: str = PREFIX) -> Path:
    return Path(directory) / f"{prefix}_{key16}.py"


def sidecar_path(directory: str | Path, key16: str, prefix: str = PREFIX) -> Path:
    return sidecar_of(script_path(directory, key16, prefix))


def sidecar_of(path: str | Path) -> Path:
    """The sidecar beside a region script (a sidecar path is returned as it is)."""
    return Path(path).with_suffix(".json")


def script_of(path: str | Path) -> Path:
    """The region script beside a sidecar (a script path is returned as it is)."""
    return Path(path).with_suffix(".py")


def key16_of(path: str | Path) -> str:
    """The key16 a region file's name carries: ``region_<key16>.py`` → ``<key16>``."""
    return Path(path).stem.removeprefix(f"{PREFIX}_")


def is_region_file(path: str | Path) -> bool:
    """A ``region_*.py`` with its sidecar beside it."""
    p = Path(path)
    return p.suffix == ".py" and p.name.startswith(f"{PREFIX}_") and sidecar_of(p).is_file()


def region_scripts(directory: str | Path) -> list[Path]:
    """The ``region_*.py`` files in a directory, sorted; none when it does not exist."""
    folder = Path(directory)
    return sorted(folder.glob(f"{PREFIX}_*.py")) if folder.is_dir() else []


def region_sidecars(directory: str | Path) -> list[Path]:
    """The ``region_*.json`` files in a directory, sorted; none when it does not exist."""
    folder = Path(directory)
    return sorted(folder.glob(f"{PREFIX}_*.json")) if folder.is_dir() else []


# ---------------------------------------------------------------------------- the sidecar


class SidecarError(ValueError):
    """A sidecar field of the wrong type, or one a reader needs that is missing; ``field`` names (the first) one."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _field_error(name: str, problem: str) -> SidecarError:
    return SidecarError(name, f"sidecar field {name!r} {problem}" if name else f"the sidecar {problem}")


def _bad(name: str, value: Any, expected: str) -> SidecarError:
    return _field_error(name, f"is {value!r:.60} ({type(value).__name__}); expected {expected}")


def _text(name: str, v: Any) -> str:
    if not isinstance(v, str):
        raise _bad(name, v, "a string")
    return v


def _text_or_none(name: str, v: Any) -> str | None:
    return None if v is None else _text(name, v)


def _integer(name: str, v: Any) -> int:
    if type(v) is not int:
        raise _bad(name, v, "an integer")
    return v


def _mapping(name: str, v: Any) -> Mapping[str, Any]:
    if not isinstance(v, dict):
        raise _bad(name, v, "a JSON object")
    return MappingProxyType(v)


def _texts(name: str, v: Any) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise _bad(name, v, "a list of strings")
    return tuple(_text(f"{name}[{i}]", x) for i, x in enumerate(v))


def _size(name: str, v: Any) -> str:
    """A size or stride: an integer or an expression over canonical symbols, kept as text."""
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise _bad(name, v, 'a size (an integer, or an expression such as "s0*4")')
    return str(v)


def _spec(name: str, v: Any) -> TensorSpec:
    if not isinstance(v, dict):
        raise _bad(name, v, "a JSON object with dtype, shape and stride")
    for f in ("dtype", "shape", "stride"):
        if f not in v:
            raise _field_error(f"{name}.{f}", "is missing")
    dims = {}
    for f in ("shape", "stride"):
        if not isinstance(v[f], list):
            raise _bad(f"{name}.{f}", v[f], "a list of sizes")
        dims[f] = tuple(_size(f"{name}.{f}[{i}]", x) for i, x in enumerate(v[f]))
    aligned = v.get("aligned", True)
    if not isinstance(aligned, bool):
        raise _bad(f"{name}.aligned", aligned, "true or false")
    high = v.get("index_high")
    return TensorSpec(
        _text(f"{name}.dtype", v["dtype"]),
        dims["shape"],
        dims["stride"],
        aligned,
        None if high is None else _size(f"{name}.index_high", high),
    )


def _specs(name: str, v: Any) -> tuple[TensorSpec, ...]:
    if not isinstance(v, list):
        raise _bad(name, v, "a list of tensor specs")
    return tuple(_spec(f"{name}[{i}]", s) for i, s in enumerate(v))


def _symbols(name: str, v: Any) -> Mapping[str, int]:
    return MappingProxyType({k: _integer(f"{name}.{k}", n) for k, n in _mapping(name, v).items()})


def _bindings(name: str, v: Any) -> Mapping[str, tuple[int, int]]:
    out = {}
    for k, pair in _mapping(name, v).items():
        if not isinstance(pair, list) or len(pair) != 2:
            raise _bad(f"{name}.{k}", pair, "[input, dim]")
        out[k] = (_integer(f"{name}.{k}[0]", pair[0]), _integer(f"{name}.{k}[1]", pair[1]))
    return MappingProxyType(out)


_EMPTY: Mapping[str, Any] = MappingProxyType({})

# Each field's check (which returns its typed value) and its value when the field is absent.
_FIELDS: dict[str, tuple[Callable[[str, Any], Any], Any]] = {
    "region_schema": (_integer, None),
    "key": (_text, None),
    "key16": (_text, None),
    "key_fields": (_mapping, None),  # KernelKey.to_dict(); Sidecar.kernel_key() parses it
    "legacy_key": (_text_or_none, None),  # absent from region files of schema 1
    "device": (_text, None),
    "inputs": (_specs, ()),
    "outputs": (_specs, ()),
    "symbols": (_symbols, _EMPTY),
    "bindings": (_bindings, _EMPTY),
    "ops": (_texts, None),  # None: not recorded (verify reads them from the source)
    "anchor": (_text_or_none, None),
    "cost": (_mapping, _EMPTY),  # flops, bytes, est_us, share, hot
    "torch_version": (_text, None),
    "baseline_inductor_mode": (_text, None),  # set by the region pass under max-autotune
    "regions": (_texts, None),  # graph files only
    "family": (_mapping, None),  # an exact region's family: {"key", "key16", "symbols"} (passes/family.py)
}


@dataclass(frozen=True)
class Sidecar:
    """A region's sidecar: ``Sidecar(the JSON object)`` validates it, ``to_dict()`` gives it back unchanged.

    Raises ``SidecarError`` naming the first field of the wrong type. Change a field with
    ``with_fields``: the typed fields are derived from ``raw`` and cannot be given or replaced.
    """

    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    region_schema: int | None = field(init=False, compare=False)
    key: str | None = field(init=False, compare=False)
    key16: str | None = field(init=False, compare=False)
    key_fields: Mapping[str, Any] | None = field(init=False, compare=False, repr=False)
    legacy_key: str | None = field(init=False, compare=False, repr=False)
    device: str | None = field(init=False, compare=False)
    inputs: tuple[TensorSpec, ...] = field(init=False, compare=False)
    outputs: tuple[TensorSpec, ...] = field(init=False, compare=False)
    symbols: Mapping[str, int] = field(init=False, compare=False)
    bindings: Mapping[str, tuple[int, int]] = field(init=False, compare=False)
    ops: tuple[str, ...] | None = field(init=False, compare=False)
    anchor: str | None = field(init=False, compare=False)
    cost: Mapping[str, Any] = field(init=False, compare=False, repr=False)
    torch_version: str | None = field(init=False, compare=False, repr=False)
    baseline_inductor_mode: str | None = field(init=False, compare=False, repr=False)
    regions: tuple[str, ...] | None = field(init=False, compare=False, repr=False)
    family: Mapping[str, Any] | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.raw, Mapping):
            raise _bad("", self.raw, "a JSON object")
        raw = copy.deepcopy(dict(self.raw))  # the caller's dict may change later; this one does not
        object.__setattr__(self, "raw", MappingProxyType(raw))
        for name, (check, absent) in _FIELDS.items():
            object.__setattr__(self, name, check(name, raw[name]) if name in raw else absent)
        if self.key is not None and self.key16 is not None and self.key16 != self.key[:16]:
            raise _field_error("key16", f"is {self.key16!r}, but the key starts {self.key[:16]!r}")

    @classmethod
    def from_dict(cls, d: Any) -> Sidecar:
        return cls(d)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, exactly as read or built (unknown fields included); a copy."""
        return copy.deepcopy(dict(self.raw))

    def with_fields(self, **changes: Any) -> Sidecar:
        return Sidecar({**self.raw, **changes})

    @property
    def extra(self) -> dict[str, Any]:
        """The fields this build does not know."""
        return {k: v for k, v in self.raw.items() if k not in _FIELDS}

    def require(self, *names: str) -> Sidecar:
        """Self, if every named field is present (and not null); else a SidecarError naming the missing ones."""
        missing = [n for n in names if self.raw.get(n) is None]
        if missing:
            raise SidecarError(missing[0], f"the sidecar lacks {', '.join(missing)} (docs/contracts.md, 'Region file')")
        return self

    def kernel_key(self) -> KernelKey:
        """The key its ``key_fields`` describe (``KernelKey.from_dict``: KeyError/TypeError/ValueError if invalid)."""
        return KernelKey.from_dict(dict(self.require("key_fields").raw["key_fields"]))


# ---------------------------------------------------------------------------- reading and writing


@dataclass(frozen=True)
class RegionFile:
    """A region file as text and its sidecar, read, never imported (``verify.loaded_region`` imports one)."""

    path: Path  # region_<key16>.py
    source: str
    sidecar: Sidecar  # empty (Sidecar()) for a region read without one

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def ops(self) -> list[str]:
        """The sidecar's ops; without them, the ATen ops the source calls."""
        if self.sidecar.ops is not None:
            return list(self.sidecar.ops)
        return sorted({line.split("(")[0].split(".")[-2] for line in self.source.splitlines() if "torch.ops." in line})


def read_sidecar(path: str | Path, *, require: tuple[str, ...] = (), optional: bool = False) -> Sidecar:
    """The sidecar of a region file (``path`` is the script or the sidecar), validated.

    A missing, unreadable, non-JSON or invalid sidecar, or one that lacks a field in
    ``require``, is a UsageError (exit 2) naming the file, the field and the fix. With
    ``optional``, a missing sidecar is an empty ``Sidecar()``.
    """
    side = sidecar_of(path)
    fix = _FIX + (", or delete it to trace the region" if optional else "")
    if not side.is_file():
        if optional:
            return Sidecar()
        raise UsageError(f"region sidecar {side} does not exist; {_MADE_BY}")
    try:
        text = side.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read region sidecar {side}: {e}") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise UsageError(f"malformed region sidecar {side}: not JSON ({e}); {fix}") from None
    try:
        return Sidecar(data).require(*require)
    except SidecarError as e:
        raise UsageError(f"malformed region sidecar {side}: {e}; {fix}") from None


def load(path: str | Path, *, require: tuple[str, ...] = (), sidecar_optional: bool = False) -> RegionFile:
    """The region script's text and its sidecar as one; UsageError (exit 2) if either is missing or malformed."""
    path = Path(path)
    source = read_source(path, "region file")
    return RegionFile(path, source, read_sidecar(path, require=require, optional=sidecar_optional))


def write_sidecar(path: str | Path, sidecar: Sidecar) -> None:
    """Replace a region file's sidecar (``path``: the script or the sidecar), atomically."""
    atomic_write(sidecar_of(path), json.dumps(sidecar.to_dict(), indent=1, sort_keys=True))


def write(directory: str | Path, key16: str, source: str, sidecar: Sidecar, prefix: str = PREFIX) -> Path:
    """Write ``<prefix>_<key16>.py`` and its sidecar, each atomically; returns the script's path.

    The sidecar goes first: writers test the script's existence for "already written",
    so a script is never seen without its sidecar beside it.
    """
    py = script_path(directory, key16, prefix)
    py.parent.mkdir(parents=True, exist_ok=True)
    write_sidecar(py, sidecar)
    atomic_write(py, source)
    return py


def family_dir(regions: str | Path) -> Path:
    """Where the family files (passes/family.py) of the region files in ``regions`` go: a folder of their own,
    so that everything that lists a cache's compiled regions (``region_scripts``) sees those only."""
    return Path(regions) / "families"
