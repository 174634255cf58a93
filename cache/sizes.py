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
        """What the record itself says (its trust is the store's to judge): the kernel won at this size, and its
        graph's win does not hang on this host's launch speed (``host_risk``)."""
        return self.verified and self.won and not host_risk(self.graph_ab or {})

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


# ---------------------------------------------------------------------- graphs compiled with dynamic shapes
#
# Such a graph runs at every size its guards admit, so one record cannot cover it. Sizes go in classes per
# symbol (powers of two: 1, 2-3, 4-7, 8-15, ...). A dynamic graph is served from a family only where, for
# every class combination its guards' ranges reach, a trusted record of this GPU model and Inductor mode
# says the kernel won, and none says it lost or was wrong. Unbounded ranges (Dynamo's default) are never
# covered: a user bounds them with ``torch._dynamo.mark_dynamic(x, dim, min=..., max=...)``.

RANGE_PREFIX = "range:"
MAX_CLASSES = 64  # class combinations a range may span and still be judged


def size_class(n: int) -> int:
    """1 for 1, 2 for 2-3, 3 for 4-7, ...: the power-of-two class of a size."""
    return max(int(n), 1).bit_length()


def range_text(ranges: Mapping[str, tuple[int, int]]) -> str:
    """``range:s0=2..8192,s1=128256..128256``: what a dynamic graph's family lookup names."""
    return RANGE_PREFIX + ",".join(
        f"{s}={int(ranges[s][0])}..{int(ranges[s][1])}" for s in sorted(ranges, key=lambda s: int(s[1:]))
    )


def parse_range(text: str) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for part in filter(None, text.removeprefix(RANGE_PREFIX).split(",")):
        name, _, span = part.partition("=")
        lo, _, hi = span.partition("..")
        if not _SYMBOL.fullmatch(name) or not lo.isdigit() or not hi.isdigit() or int(lo) > int(hi):
            raise SizeRecordError("malformed", f"size range {text!r} is not 'range:s0=LO..HI,...'")
        out[name] = (int(lo), int(hi))
    return out


@dataclass(frozen=True)
class RangeVerdict:
    served: bool
    why: str  # what is missing or lost, for the region's status
    answer: str  # a digest of the records that decided ("-": none), which AOTAutograd's token follows


def judge_range(
    store: Any, entry_id: str, gpu: str, inductor_mode: str, ranges: Mapping[str, tuple[int, int]]
) -> RangeVerdict:
    """Whether the trusted records cover every size class the ranges admit with a win, and none with a loss."""
    import itertools
    import math

    syms = sorted(ranges, key=lambda s: int(s[1:]))
    spans = [range(size_class(ranges[s][0]), size_class(ranges[s][1]) + 1) for s in syms]
    count = math.prod(len(span) for span in spans)
    if count > MAX_CLASSES:
        return RangeVerdict(False, f"its guards admit {count} size classes (at most {MAX_CLASSES} are judged)", "-")
    wanted = set(itertools.product(*spans))
    listed = getattr(store, "size_records", None)
    newest: dict[str, SizeRecord] = {}
    for rec, verdict, _ in listed(entry_id) if listed is not None else []:
        if not verdict.servable or rec.gpu != gpu or rec.inductor_mode != inductor_mode or set(rec.sizes) != set(syms):
            continue
        if tuple(size_class(rec.sizes[s]) for s in syms) in wanted and rec.created >= newest.get(rec.key, rec).created:
            newest[rec.key] = rec
    by_class: dict[tuple[int, ...], list[SizeRecord]] = {}
    for rec in newest.values():
        by_class.setdefault(tuple(size_class(rec.sizes[s]) for s in syms), []).append(rec)
    answer = hashlib.sha256("\n".join(sorted(r.content_hash for r in newest.values())).encode()).hexdigest()[:32]
    answer = answer if newest else "-"
    lost = sorted(r.bucket for rs in by_class.values() for r in rs if not r.servable_here)
    if lost:
        return RangeVerdict(
            False, f"not a winner at {lost[0]}" + (f" and {len(lost) - 1} more" if len(lost) > 1 else ""), answer
        )
    missing = len(wanted - set(by_class))
    if missing:
        return RangeVerdict(False, f"{missing} of {len(wanted)} size classes its guards admit are not timed", answer)
    return RangeVerdict(True, f"won in all {len(wanted)} size classes its guards admit", answer)


# Host time per call, as a share of the measured time, from which a graph is host-bound. Measured on the H200:
# 156-255 us of host time for 177-266 us measured (0.88-0.96) with the kernel, 47-90 for 359 (0.13-0.25) without.
HOST_BOUND_SHARE = 0.8


def host_bound(graph_ab: Mapping[str, Any]) -> bool:
    """An in-graph gate's A/B (``SizeRecord.graph_ab``) where the graph with the kernel took nearly as much host
    time per call as its measured time, or more: the GPU waited for the launches (search/gate.py)."""
    host, ms = graph_ab.get("with_host_us"), graph_ab.get("with_ms")
    return isinstance(host, (int, float)) and isinstance(ms, (int, float)) and host >= HOST_BOUND_SHARE * 1e3 * ms


# How much slower another host, or the same one at another moment, may launch the same graph. Measured on the
# H200: the softmax graph at 2048 rows took 101 us of host time per call in its gate and 144-181 us in the
# user's script; the cross-entropy graph at 2048 rows took 156 and 255 us on two machines.
HOST_VARIANCE = 2.0
# Timing noise the in-graph gate allows before "slower" is called (search/gate.py): an assumption until the
# H200 runs measure the drift.
GATE_NOISE = 0.01


def graph_faster(graph_ab: Mapping[str, Any], noise: float = GATE_NOISE) -> bool:
    """A gate's A/B where the graph with the kernel measured no slower than Inductor's, within the noise."""
    with_ms, without_ms = graph_ab.get("with_ms"), graph_ab.get("without_ms")
    if not (isinstance(with_ms, (int, float)) and isinstance(without_ms, (int, float))):
        return False
    return with_ms <= without_ms * (1.0 + noise)


def host_risk(graph_ab: Mapping[str, Any], noise: float = GATE_NOISE) -> bool:
    """A gate's A/B where the graph with the kernel would be slower than Inductor's on a host ``HOST_VARIANCE``
    times slower to launch. Each side costs the larger of its measured time and its scaled host time per call:
    back to back, a call cannot finish before its launches do. False where the A/B has no host times."""
    vals = [graph_ab.get(k) for k in ("with_ms", "with_host_us", "without_ms", "without_host_us")]
    if not all(isinstance(v, (int, float)) for v in vals):
        return False
    with_ms, with_host, without_ms, without_host = (float(v) for v in vals)  # type: ignore[arg-type]
    scaled = HOST_VARIANCE / 1e3
    return max(with_ms, scaled * with_host) > max(without_ms, scaled * without_host) * (1.0 + noise)
