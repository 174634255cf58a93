"""Judging one input draw: the worker's records and tensors against the parent's references.

Checks run in a fixed order and the first failure is the reason, so a reason is
always the most specific one: a torch op in the wrapper is ``torch_compute``
even though its values may also be wrong; an unwritten element is
``unwritten_output`` rather than a NaN mismatch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from llm_inductor.verify.compare import Verdict, judge, same_bits, strides_match, unwritten
from llm_inductor.verify.draws import Draw
from llm_inductor.verify.gpu_share import GATE
from llm_inductor.verify.loaded_region import TensorMeta


@dataclass
class Finding:
    check: str  # the CheckResult that failed
    reason: str  # a code from result.REASONS
    message: str


@dataclass
class Expected:
    """What the parent knows about one draw, out of the candidate's reach."""

    draw: Draw
    inputs: list[torch.Tensor]  # the parent's own copies, on the device
    specs: list[TensorMeta]
    ref64: list[torch.Tensor]
    eager: list[torch.Tensor]  # eager PyTorch in the region's dtypes
    inductor: Callable[[], list[torch.Tensor]]  # Inductor's outputs, computed when first judged
    exact: list[bool] = field(default_factory=list)  # per output: nearly constant reference → no floor
    # per output, at an extra size: its reference's scale at the region's own sizes (compare.judge's zero_scale)
    scales: list[float] = field(default_factory=list)
    _ind: list[torch.Tensor] | None = None
    _memos: dict[int, dict[Any, Any]] = field(default_factory=dict)  # per output: judge's reference side
    device: str = "cpu"  # where judging computes (the tensors stay on the host): the verification device

    @property
    def ind(self) -> list[torch.Tensor]:
        """Lazy: a candidate rejected before any value is compared never costs an Inductor compile."""
        if self._ind is None:
            self._ind = self.inductor()
        return self._ind

    def verdicts(self, outs: list[torch.Tensor]) -> list[Verdict]:
        exact = self.exact or [False] * len(outs)
        ind = self.ind  # before the gate: computing it takes the gate itself
        dev = self.device
        with GATE.shared(self.device):  # judging streams through the GPU: never while a candidate is timed
            return [
                judge(
                    o,
                    r,
                    {"inductor": i, "eager": e},
                    exact=x,
                    memo=self._memos.setdefault(j, {}),
                    device=dev,
                    zero_scale=self.scales[j] if j < len(self.scales) else None,
                )
                for j, (o, r, i, e, x) in enumerate(zip(outs, self.ref64, ind, self.eager, exact))
            ]


def isolation(rec: dict[str, Any], where: str) -> Finding | None:
    """Tripwires, streams and the dispatch guard, from one worker record."""
    if rec.get("tamper"):
        return Finding("isolation", "tamper", f"{where}: the candidate replaced {', '.join(rec['tamper'][:5])}")
    if rec.get("new_threads"):
        names = f" ({', '.join(rec['thread_names'])})" if rec.get("thread_names") else ""
        return Finding(
            "isolation", "thread", f"{where}: {rec['new_threads']} new thread(s) alive after the call{names}"
        )
    if rec.get("foreign_streams"):
        return Finding(
            "isolation",
            "stream",
            f"{where}: {rec['foreign_streams']} launch(es) on a stream other than "
            "the caller's; work must be ordered on the current stream",
        )
    if rec.get("violations"):
        return Finding(
            "guard",
            "torch_compute",
            f"{where}: torch ops ran outside Triton launches: "
            f"{', '.join(rec['violations'])}; only allocation, views and copies may run in the wrapper",
        )
    return None


def judge_run(
    exp: Expected, records: list[dict[str, Any]], data: dict[str, Any], deterministic: bool = True
) -> tuple[Finding | None, list[Verdict]]:
    """First failing check for one draw (all its calls), and the last call's verdicts."""
    outs_by_call: list[list[torch.Tensor]] = data["outputs"]
    label = exp.draw.label()
    n = len(records)
    for k, rec in enumerate(records):
        where = f"{label}, call {k + 1} of {n}"
        found = isolation(rec, where)
        if found:
            return found, []
        if rec["launches"] == 0:
            return Finding("launch", "no_launch", f"{where}: no Triton kernel was launched"), []
        if "bad_outputs" in rec:
            return Finding(
                "outputs", "output_mismatch", f"{where}: forward returned {rec['bad_outputs']}, not tensors"
            ), []
        if rec.get("reused_output"):
            return Finding(
                "outputs",
                "cached_output",
                f"{where}: an output shares storage with an output handed "
                "out earlier; allocate outputs afresh in every call",
            ), []
        found = structure(rec["outputs"], exp.specs, where)
        if found:
            return found, []
    for j in range(len(exp.specs)):
        dtype = str(outs_by_call[0][j].dtype)
        hole = unwritten([outs[j] for outs in outs_by_call], [rec["poison"]["fills"].get(dtype) for rec in records])
        if hole:
            count, idx = hole
            total = outs_by_call[0][j].numel()
            return Finding(
                "written",
                "unwritten_output",
                f"{label}, output {j}: {count} of {total} elements "
                f"were never written (poison left, first at {list(idx)})",
            ), []
    for k, rec in enumerate(records):
        if rec.get("inputs_changed"):
            return Finding(
                "inputs_unchanged",
                "input_mutated",
                f"{label}, call {k + 1}: input(s) "
                f"{rec['inputs_changed']} changed during the call; a kernel must not write its inputs",
            ), []
    for was, now, j in zip(exp.inputs, data["inputs_after"][-1], range(len(exp.inputs))):
        if not same_bits(was, now.to(was.device)):  # the parent's own check of the last call
            diff = _first_diff(was, now.to(was.device))
            return Finding(
                "inputs_unchanged",
                "input_mutated",
                f"{label}, call {n}: input {j} changed "
                f"during the call (first at {diff}); a kernel must not write its inputs",
            ), []
    per_call = _verdicts_per_call(exp, outs_by_call)
    good = [all(v.ok for v in verdicts) for verdicts in per_call]
    if not all(good):
        k = good.index(False)
        j, bad = next((j, v) for j, v in enumerate(per_call[k]) if not v.ok)
        if any(good):
            right = [i + 1 for i, g in enumerate(good) if g]
            return Finding(
                "stateful",
                "stateful",
                f"{label}: calls {right} were right but call {k + 1} of {n} "
                f"was wrong on the same inputs (output {j}: {bad.detail})",
            ), per_call[k]
        check = "nan_inf" if bad.reason == "nan_mismatch" else "values"
        return Finding(check, bad.reason, f"{label}, output {j}: {bad.detail}"), per_call[k]
    if deterministic:
        for k in range(1, n):
            for j, (a, b) in enumerate(zip(outs_by_call[0], outs_by_call[k])):
                if not same_bits(a, b):
                    return Finding(
                        "deterministic",
                        "nondeterministic",
                        f"{label}: calls 1 and {k + 1} on the same "
                        f"inputs differ in output {j} (first at {_first_diff(a, b)})",
                    ), per_call[-1]
    return None, per_call[-1]


def _verdicts_per_call(exp: Expected, outs_by_call: list[list[torch.Tensor]]) -> list[list[Verdict]]:
    """Every call's verdicts; a call whose outputs are bit for bit an earlier call's has that call's verdicts."""
    judged: list[tuple[list[torch.Tensor], list[Verdict]]] = []
    out = []
    for outs in outs_by_call:
        same = next(
            (v for seen, v in judged if len(seen) == len(outs) and all(same_bits(a, b) for a, b in zip(seen, outs))),
            None,
        )
        if same is None:
            same = exp.verdicts(outs)
            judged.append((outs, same))
        out.append(same)
    return out


def poison_split(exp: Expected, records: list[dict[str, Any]], data: dict[str, Any]) -> Finding | None:
    """Do calls on the same inputs agree within each poisoning and differ across them? Then the outputs follow
    what fresh memory held. (Call order alone, as in a kernel that changes every other call, does not split so.)"""
    kinds = [rec["poison"]["marked"] for rec in records]
    outs_by_call: list[list[torch.Tensor]] = data["outputs"]
    if len(set(kinds)) < 2 or any(len(outs) != len(exp.specs) for outs in outs_by_call):
        return None
    ok = [all(v.ok for v in exp.verdicts(outs)) for outs in outs_by_call]

    def split(same: Callable[[int, int], bool]) -> bool:
        firsts = {kind: kinds.index(kind) for kind in set(kinds)}
        agree = all(same(k, firsts[kind]) for k, kind in enumerate(kinds))
        return agree and not same(firsts[True], firsts[False])

    by_bits = split(lambda a, b: all(same_bits(x, y) for x, y in zip(outs_by_call[a], outs_by_call[b])))
    if not (by_bits or split(lambda a, b: ok[a] == ok[b])):
        return None
    seen = "right" if ok[kinds.index(True)] else "wrong"
    other = "right" if ok[kinds.index(False)] else "wrong"
    return Finding(
        "uninitialized",
        "uninitialized_read",
        f"{exp.draw.label()}: the outputs follow what fresh "
        f"allocations held: {seen} on every call that found the verifier's poison in them, {other} and "
        "different on every call that found data-like noise; the kernel reads memory it never wrote "
        "(a scratch buffer from torch.empty, or an output before storing it)",
    )


def structure(outs: list[dict[str, Any]], specs: list[TensorMeta], where: str) -> Finding | None:
    if len(outs) != len(specs):
        return Finding("outputs", "output_mismatch", f"{where}: {len(outs)} outputs, the region has {len(specs)}")
    for j, (o, s) in enumerate(zip(outs, specs)):
        got = f"{o['dtype'].replace('torch.', '')}{o['shape']} stride={tuple(o['stride'])}"
        if o["dtype"] != str(s.dtype) or tuple(o["shape"]) != s.shape:
            return Finding("outputs", "output_mismatch", f"{where}: output {j} is {got}, want {s.line()}")
        if not strides_match(s.shape, tuple(o["stride"]), s.stride):
            return Finding(
                "outputs",
                "stride_mismatch",
                f"{where}: output {j} is {got}, want {s.line()}; the graph downstream depends on the strides",
            )
    return None


def _first_diff(a: torch.Tensor, b: torch.Tensor) -> list[int]:
    if a.shape != b.shape:
        return [-1]
    if a.dtype.is_floating_point:
        view = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.int8}[a.element_size()]
        ne = a.contiguous().view(view) != b.contiguous().view(view)
    else:
        ne = a != b
    flat = ne.reshape(-1).nonzero()
    if not len(flat):
        return []
    return [int(i) for i in torch.unravel_index(flat[0, 0].cpu(), a.shape)]


def worst(verdicts: list[Verdict]) -> tuple[float, float]:
    """(candidate, inductor) mean rel error, the worst over outputs."""
    c = max((v.cand.mean_rel for v in verdicts if v.cand), default=0.0)
    i = max((v.yard["inductor"].mean_rel for v in verdicts if v.yard), default=0.0)
    return c, i
