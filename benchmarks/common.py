"""What a case is, and the results file every suite writes into.

A ``Case`` builds a ``Workload`` once per process; every mode of the case runs on
that one workload, so eager, Inductor, max-autotune and ``llm`` see the same
inputs and weights. A ``Workload`` makes a ``Step`` per compile: ``outputs()`` is
one computation from the initial state (what the correctness check compares, and
the call that triggers compilation), ``run()`` is one timed step.

The results file is one JSON document: ``runs`` (one per process: device,
versions, commit, settings) and ``rows`` (one per suite/case/mode). It is written
atomically after every mode, so a killed run loses at most the mode in flight.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = 1

# A row's status. "running" is written before a mode starts: a row still "running"
# when a later run reads the file means the process died inside that mode.
OK, FAILED, INCORRECT, RUNNING, INTERRUPTED = "ok", "failed", "incorrect", "running", "interrupted"
DONE = (OK, FAILED, INCORRECT)

BASELINES = ("eager", "inductor", "max-autotune")
LLM_MODES = {"llm": BASELINES, "llm-max-autotune": ("max-autotune",)}  # mode → baselines it is compared with


@dataclass
class Step:
    outputs: Callable[[], list[Any]]  # tensors the check compares (first call compiles)
    run: Callable[[], Any]  # one timed step
    train: bool = False  # a training step: CUDA events around the whole step, optimizer included


@dataclass
class Workload:
    kind: str  # fwd | fwd+bwd | prefill | train
    make_step: Callable[[Callable[[Any], Any]], Step]  # compile wrapper (identity for eager) → Step
    reference: Callable[[Any], list[Any]]  # dtype (float64, else float32) → the outputs in that precision, as float32
    flops: float | None = None  # None: counted with FlopCounterMode on the eager step
    bytes: float = 0.0  # the least traffic a perfect implementation needs
    notes: str = ""


@dataclass(frozen=True)
class Case:
    name: str
    suite: str
    kind: str
    shape: Callable[[bool], str]  # tiny → shape text
    build: Callable[[str, bool], Workload]  # (device, tiny) → workload
    est_s: dict[str, float] = field(default_factory=dict)  # seconds per mode on the H200, for the budget
    matmul: bool = False  # max-autotune spends its time here


def estimate_s(case: Case, mode: str, device: str, tiny: bool) -> float:
    """Seconds a mode of a case is expected to take (compile cold and warm, check, timing)."""
    if device != "cuda" or tiny:
        return 4.0 if case.suite == "regions" else 30.0
    return case.est_s.get(mode) or case.est_s.get("default", 20.0)


# ---------------------------------------------------------------------------- results file


def empty_doc() -> dict[str, Any]:
    return {"schema": SCHEMA, "runs": {}, "rows": []}


def load(path: str | Path) -> dict[str, Any]:
    from llm_inductor._errors import UsageError

    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such results file") from None
    except ValueError as e:
        raise UsageError(f"{path}: not JSON ({e}); it is not a results file of benchmarks/run.py") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise UsageError(
            f"{path}: results schema {doc.get('schema') if isinstance(doc, dict) else '?'!r}, expected {SCHEMA}"
        )
    doc.setdefault("runs", {})
    doc.setdefault("rows", [])
    return doc


def save(path: str | Path, doc: dict[str, Any]) -> None:
    """Annotate speedups and write atomically (a reader never sees half a file)."""
    annotate(doc["rows"])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True, default=str))
    tmp.replace(path)


def row_key(row: dict[str, Any]) -> tuple[str, str, str]:
    return (row["suite"], row["case"], row["mode"])


def upsert(doc: dict[str, Any], row: dict[str, Any]) -> None:
    rows = doc["rows"]
    for i, old in enumerate(rows):
        if row_key(old) == row_key(row):
            rows[i] = row
            return
    rows.append(row)


def find(doc: dict[str, Any], suite: str, case: str, mode: str) -> dict[str, Any] | None:
    return next((r for r in doc["rows"] if row_key(r) == (suite, case, mode)), None)


def _preference(row: dict[str, Any]) -> tuple[int, float]:
    return (row.get("status") == OK, row.get("started") or 0.0)


def merge(docs: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """Union of runs and rows; for a row in several files, an ok one wins, then the newest. Returns notes."""
    out, notes = empty_doc(), []
    best: dict[tuple[str, str, str], dict[str, Any]] = {}
    for doc in docs:
        out["runs"].update(doc.get("runs", {}))
        for row in doc.get("rows", []):
            k = row_key(row)
            if k in best and _preference(row) != _preference(best[k]):
                kept = max((best[k], row), key=_preference)
                notes.append(f"{'/'.join(k)}: kept the {kept.get('status')} row of run {kept.get('run_id')}")
                best[k] = kept
            else:
                best.setdefault(k, row)
    out["rows"] = sorted(best.values(), key=lambda r: (r["suite"], r["case"], r["mode"]))
    annotate(out["rows"])
    return out, notes


def annotate(rows: list[dict[str, Any]]) -> None:
    """``speedup_over`` on each llm row: baseline median / llm median, for baselines that ran ok in the same case."""
    by_case: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_case.setdefault((r["suite"], r["case"]), {})[r["mode"]] = r
    for modes in by_case.values():
        for mode, baselines in LLM_MODES.items():
            r = modes.get(mode)
            if r is None:
                continue
            r["speedup_over"] = {}
            if r.get("status") != OK or not r.get("median_ms"):
                continue
            for b in baselines:
                base = modes.get(b)
                if base is not None and base.get("status") == OK and base.get("median_ms"):
                    r["speedup_over"][b] = base["median_ms"] / r["median_ms"]


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{os.getpid()}"
