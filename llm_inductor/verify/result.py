"""The verification record: one typed result per candidate, failure as a value.

``VerifyResult`` feeds three readers: the LLM's next turn (``feedback()``), the
cache's verification record (``to_dict()``) and the reports. ``reason`` is a
stable code (the list below); ``message`` says which check failed, on which
input draw, and by how much.

Three kinds of outcome, which callers must keep apart:

* a verdict on the candidate: ``ok`` or one of ``REASONS`` but ``degenerate_region``;
* a verdict on the region (``REGION_REASONS``): the same for every candidate, so it is
  no candidate's fault and never feedback; the tuner stops searching the region;
* a harness failure (``harness_failure``, reason ``harness:<what>``, ``HARNESS_REASONS``):
  the verifier itself could not run, and kept failing when retried; nothing was judged.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field
from typing import Any

# Reason codes, grouped by the layer that produces them. Codes starting with
# "policy:" come from the static policy (policy.py names them).
REASONS = {
    "ok": "accepted",
    # the worker and its isolation
    "compile_error": "the candidate does not import or its kernel does not compile",
    "runtime_error": "the candidate raised while running",
    "crash": "the worker died (segfault, abort, illegal memory access, exit)",
    "timeout": "a step ran past the per-step wall-clock limit",
    "oom": "the candidate ran out of memory",
    "tamper": "the candidate replaced a torch, triton or harness function",
    "thread": "the candidate started a thread or process",
    "stream": "the candidate launched on a stream other than the caller's",
    # the dynamic guard
    "torch_compute": "a torch op other than allocation, view or copy ran outside Triton launches",
    "no_launch": "no Triton kernel was launched",
    # outputs and inputs
    "output_mismatch": "wrong number of outputs, or wrong shape or dtype",
    "stride_mismatch": "an output's strides differ from the reference's",
    "unwritten_output": "an output element was never written (it kept the poison)",
    "input_mutated": "an input changed during the call",
    "cached_output": "an output tensor was handed out again by a later call",
    # values
    "wrong_values": "values differ from the float64 reference beyond tolerance",
    "low_precision": "errors look like rounding to a lower precision than the region's",
    "nan_mismatch": "NaN/Inf positions differ from the reference",
    "stale_output": "outputs belong to other inputs (an earlier draw, or seed 0's)",
    "stateful": "the same inputs gave a right answer on one call and a wrong one on another",
    "nondeterministic": "two calls on the same inputs disagree bit for bit",
    "uninitialized_read": "the outputs follow what fresh allocations held: the kernel reads memory it never wrote",
    "wrong_at_size": "right at the region's sizes, wrong at another size of a symbolic dim",
    # the region (compare.judge): the same verdict for every candidate
    "degenerate_region": "the region's float64 reference is zero up to rounding: its outputs are rounding noise, "
    "which no kernel can be judged against; the region is not worth tuning",
    "no_host_reference": "an op of the region has no host (CPU) kernel, so its float64 reference cannot run: "
    "no candidate can be judged against it; the region is not tuned",
    # speed (GPU only)
    "slower": "not faster than Inductor by the speed margin in both measurements",
    "suspicious_speed": "faster than the roofline floor allows",
}


# Verdicts on the region, not on the candidate: every candidate gets the same one.
REGION_REASONS = {"degenerate_region", "no_host_reference"}

# Harness failures (engine.verify retries them; these are what is left when every retry failed too).
HARNESS_REASONS = {
    "harness:worker_start": "a verification worker did not start, or died before it took the candidate",
    "harness:internal": "the worker's own code raised outside the candidate's calls (a verifier bug)",
    "harness:parent_oom": "the verifying process ran out of memory computing the references or comparing",
    "harness:host_memory": "a draw of the region at these sizes needs more host memory than this host's budget "
    "leaves beside its round's own draws: not retried; run it on a host with more memory, or at smaller sizes",
    "harness:device": "the verifying process's device failed (a CUDA error outside any candidate code)",
    "harness:worker_lost": "every tuning-farm worker (a Dask worker, its GPU or its machine) that took the "
    "verification died with it in flight",
    "harness:verifier_error": "the verifier raised instead of returning a result (the tuner's name: search/verdict.py)",
}


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str = ""


@dataclass
class VerifyResult:
    accepted: bool
    reason: str
    message: str
    checks: list[CheckResult] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=dict)
    envelope: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    harness_failure: bool = False  # nothing was judged: the verifier could not run (reason "harness:<what>")
    # GPU memory, bytes: worker_peak (its max_memory_allocated), flush (do_bench's L2-flush buffer, left out of
    # the bound), working_set (inputs + outputs at the largest drawn size), cap (the worker's limit)
    memory: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VerifyResult:
        checks = [CheckResult(**c) for c in d.get("checks", [])]
        return cls(**{**d, "checks": checks})

    def check(self, name: str) -> CheckResult | None:
        return next((c for c in self.checks if c.name == name), None)

    def summary(self) -> str:
        """One line for logs and the CLI."""
        if self.accepted:
            speed = self.timings.get("speedup")
            tail = f", {speed:.2f}x over Inductor" if isinstance(speed, (int, float)) else ""
            return f"accepted on {self.device}{tail}"
        if self.harness_failure or self.reason in REGION_REASONS:
            return f"not judged ({self.reason}): {self.message}"
        return f"rejected ({self.reason}): {self.message}"

    def feedback(self) -> str:
        """Concise text for the LLM's next turn: what failed, where, and by how much."""
        lines = [self.summary()]
        if not self.accepted and self.reason in REASONS:
            lines.append(f"meaning: {REASONS[self.reason]}")
        elif self.reason in HARNESS_REASONS:
            lines.append(f"meaning: {HARNESS_REASONS[self.reason]}; not the candidate's doing")
        elif self.reason.startswith("policy:"):
            lines.append(
                "The candidate may import only torch, triton, triton.language and math; the wrapper may only "
                "allocate, view, reshape and read sizes; all arithmetic belongs in @triton.jit kernels."
            )
        failed = [c for c in self.checks if not c.passed]
        for c in failed[:4]:
            lines.append(f"check {c.name}: {c.detail}")
        t = self.timings
        if t.get("measurements"):
            rows = ", ".join(
                f"candidate {m['candidate_ms']:.4f} ms vs inductor {m['inductor_ms']:.4f} ms" for m in t["measurements"]
            )
            lines.append(f"timing: {rows}; roofline floor {t.get('floor_ms', float('nan')):.4f} ms")
            if "pct_of_roofline" in t:
                lines.append(f"candidate reaches {t['pct_of_roofline']:.0f}% of the roofline")
        return "\n".join(lines)


def versions(device: str, gpu_name: str | None = None) -> dict[str, Any]:
    import torch
    import triton

    return {
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "device": device,
        "gpu": gpu_name,
        "interpreter": device == "cpu",
    }
