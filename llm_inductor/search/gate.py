"""The in-graph gate: time the whole graph with and without a region winner, in one process.

A kernel that beats Inductor alone can still slow the model, for example when it
breaks Inductor's fusions with its neighbours (FIELD.md: standalone wins often give
1-3% end to end, or regress). So a winner is served only if the graph around it,
compiled by the llm backend with the winner substituted, is no slower than the same
graph compiled by Inductor alone. Both are compiled and timed in one child process
(``python -m llm_inductor.search.gate``) on the GPU, alternating, with L2 flushed.

On the CPU (interpret mode) nothing is timed: the gate is skipped and says so.

Each side's host time per call is measured too (calls queued with no synchronisation). Where the graph
with the kernel needs nearly as much host time as its measured time (``cache.sizes.host_bound``), it is
host-bound: the GPU waits for the kernel's launch path (on the H200, the cross-entropy kernel at 2048 rows:
156-255 us of host time for 122 us on the GPU). The note says so; the verdict is the measured time either
way, and a host-bound verdict depends on the speed of the host that measured it. So a graph that wins only
because this host launches fast enough does not pass (``cache.sizes.host_risk``): at 2048 rows the softmax
kernel's graph passed at 0.153 -> 0.094 ms with 101 us of host time per call, then ran at 0.190-0.291 ms in
the user's script, host-bound at 144-181 us, against Inductor's 0.153.

The child also records which of the graph's nodes Inductor put into one kernel with the region's, when it
compiled the graph without the kernel (``fused_with``): the nodes a region must be widened to, so that its
kernel keeps the fusions it would otherwise break. The note names them where the graph got slower.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llm_inductor.cache.sizes import HOST_VARIANCE, graph_faster, host_bound, host_risk
from llm_inductor.config import Config
from llm_inductor.search.graphs import graph_for

SERVED, SLOWS_GRAPH, UNGATED = "served", "slows_graph", "ungated"


def status_for(gate: dict[str, Any]) -> str:
    if gate.get("passed"):
        return SERVED
    return SLOWS_GRAPH if gate.get("measured") else UNGATED


def in_graph_gate(key16: str, entry: Any, cfg: Config, device: str, timeout: float = 900.0) -> dict[str, Any]:
    if device != "cuda":
        return {"measured": False, "passed": True, "note": "not measured (cpu)"}
    graph = graph_for(key16, cfg)
    if graph is None:
        return {"measured": False, "passed": False, "note": "not measured (no graph file recorded for this region)"}
    with tempfile.TemporaryDirectory(prefix="llm_gate_") as tmp:
        entry_path = Path(tmp) / "entry.json"
        entry_path.write_text(entry.to_json())
        cmd = [sys.executable, "-m", "llm_inductor.search.gate", str(graph), str(entry_path), "--scratch", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"measured": False, "passed": False, "note": f"not measured (graph A/B ran past {timeout:g}s)"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"measured": False, "passed": False, "note": f"not measured (graph A/B failed: {tail[0][:300]})"}
    return judge(json.loads(proc.stdout.strip().splitlines()[-1]), graph.name)


def judge(r: dict[str, Any], graph_name: str) -> dict[str, Any]:
    """The gate's verdict and note on the child's measurements ``r`` of the graph file ``graph_name``."""
    if not r.get("substituted"):
        return {**r, "measured": False, "passed": False, "note": "not measured (the region was not found in its graph)"}
    faster = graph_faster(r)
    risky = faster and host_risk(r)
    passed = faster and not risky
    verdict = "no slower" if faster else "slower"
    if host_bound(r) or risky:
        verdict += f"; host-bound: {r['with_host_us']:.0f} us of host time per call"
    if risky:
        verdict += f", slower than Inductor's graph on a host {HOST_VARIANCE:g}x slower to launch"
    fused = r.get("fused_with") or []
    if not faster and fused:
        ops = ", ".join(sorted({f["op"] for f in fused}))
        verdict += (
            f"; without the kernel, Inductor fused the region with {len(fused)} node(s) outside it ({ops}): "
            "a region widened to them keeps that fusion"
        )
    return {
        **r,
        "measured": True,
        "passed": passed,
        "graph": graph_name,
        "note": f"graph {r['without_ms']:.4f} ms -> {r['with_ms']:.4f} ms with the kernel ({verdict})",
    }


def host_us_per_call(fn: Any, device: str, n: int = 100) -> float:
    """Host time per call, with no synchronisation in the loop (the launches queue; their cost is the host's)."""
    import time

    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    fn()
    sync()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    host = time.perf_counter() - start
    sync()
    return 1e6 * host / n


def _bench(fn: Any, device: str) -> float:
    """Median ms: ``do_bench`` (L2 flushed) on the GPU; a plain clock on the CPU, where only tests run this."""
    if device == "cuda":
        from triton.testing import do_bench

        return float(do_bench(fn))
    import time

    runs = []
    for _ in range(5):
        start = time.perf_counter()
        fn()
        runs.append(1e3 * (time.perf_counter() - start))
    return sorted(runs)[2]


class FusionRecord:
    """Inductor's kernels of one compile, as the sets of FX node names each was made from.

    Read through Inductor's post-fusion scheduler hook (``_post_fusion_custom_pass``, a prototype API): where a
    torch lacks it, nothing is recorded. A compile served from Inductor's FX graph cache or AOTAutograd's cache
    never schedules, so both are off while it records: the compile is cold.
    """

    def __init__(self) -> None:
        self.kernels: list[set[str]] = []
        self.ops: dict[str, str] = {}  # node name → its op, e.g. "aten.mul.Tensor"
        self.failed = False  # the scheduler's nodes were not what this reads: nothing recorded

    @property
    def recorded(self) -> bool:
        """Whether a compile was recorded whole (not one served from a cache, nor one this could not read)."""
        return bool(self.kernels) and not self.failed

    def __call__(self, nodes: list[Any]) -> list[Any]:
        try:
            for node in nodes:
                names: set[str] = set()
                for sub in node.get_nodes():
                    for origin in getattr(sub.node, "origins", None) or ():
                        names.add(origin.name)
                        self.ops[origin.name] = str(origin.target)
                if names:
                    self.kernels.append(names)
        except Exception:  # noqa: BLE001  (a diagnostic: it must never cost the gate its measurement)
            self.failed = True
        return nodes

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        import torch._functorch.config as functorch_config
        import torch._inductor.config as inductor_config

        if not hasattr(inductor_config, "_post_fusion_custom_pass"):
            yield
            return

        aot_cache = {"enable_autograd_cache": False} if hasattr(functorch_config, "enable_autograd_cache") else {}
        with (
            inductor_config.patch(_post_fusion_custom_pass=self, fx_graph_cache=False),
            functorch_config.patch(**aot_cache),
        ):
            yield

    def fused_with(self, members: set[str]) -> list[dict[str, str]]:
        """The nodes outside ``members`` that share a kernel with one of them."""
        outside = {name for k in self.kernels if k & members for name in k - members}
        return [{"node": name, "op": self.ops.get(name, "?")} for name in sorted(outside)]


def _region_members(entry: Any) -> tuple[set[str], Any]:
    """A graph hook that keeps the node names of the entry's region (by its key or its family's) as compiled."""
    members: set[str] = set()

    def hook(gm: Any, kind: str, infos: list[Any]) -> None:
        for info in infos:
            if entry.key in (info.digest, info.family.digest if info.family is not None else None):
                members.update(n.name for n in info.region.nodes)

    return members, hook


def _ab(graph: Path, entry_path: Path, scratch: str, device: str = "cuda") -> dict[str, Any]:
    import torch

    import llm_inductor.compile.state as _state
    from llm_inductor.cache.entry import Entry
    from llm_inductor.cache.store import MemoryStore
    from llm_inductor.compile.dynamo_backend import backend

    entry = Entry.from_json(entry_path.read_text())
    _state.set_store(MemoryStore([entry]))
    spec = importlib.util.spec_from_file_location("llm_graph", graph)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # Dynamo resolves the traced function's globals through sys.modules
    spec.loader.exec_module(mod)
    inputs = mod.make_inputs(seed=0, device=device)

    # Two top-level functions: Dynamo caches per code object, so each keeps its own compiled graph.
    def without(*a: Any) -> Any:
        return mod.forward(*a)

    def with_kernel(*a: Any) -> Any:
        return mod.forward(*a)

    a = torch.compile(without, backend="inductor")
    # the backend itself, not its registered name: a checkout on sys.path has no entry point
    b = torch.compile(with_kernel, backend=backend("cache", cache_dir=scratch, interpret=device == "cpu"))
    without_kernels, with_kernels = FusionRecord(), FusionRecord()
    members, hook = _region_members(entry)
    with torch.no_grad():
        with without_kernels.recording():
            ref = a(*inputs)
        _state.reset()
        with with_kernels.recording(), _state.overridden(graph_hook=hook):
            out = b(*inputs)
        substituted = _state.stats()["substituted"]
        refs = ref if isinstance(ref, (tuple, list)) else (ref,)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        diff = max(((x.float() - y.float()).abs().max().item() for x, y in zip(refs, outs) if x.numel()), default=0.0)
        times: dict[str, list[float]] = {"without": [], "with": []}
        for _ in range(3):  # alternate, so drift (clocks, temperature) hits both sides alike
            times["without"].append(_bench(lambda: a(*inputs), device))
            times["with"].append(_bench(lambda: b(*inputs), device))
        n = 100 if device == "cuda" else 2
        without_host = host_us_per_call(lambda: a(*inputs), device, n)
        with_host = host_us_per_call(lambda: b(*inputs), device, n)
    return {
        "without_ms": sorted(times["without"])[1],
        "with_ms": sorted(times["with"])[1],
        "without_host_us": without_host,
        "with_host_us": with_host,
        "substituted": substituted,
        "max_abs_diff": diff,
        "gpu": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        # None where nothing was recorded (no post-fusion hook, the region not found): not "fused with nothing"
        "fused_with": without_kernels.fused_with(members) if without_kernels.recorded and members else None,
        "kernels_without": len(without_kernels.kernels) if without_kernels.recorded else None,
        "kernels_with": len(with_kernels.kernels) if with_kernels.recorded else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="time a graph file with and without a cache entry")
    p.add_argument("graph")
    p.add_argument("entry")
    p.add_argument("--scratch", default=tempfile.gettempdir())
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: tests only (interpret mode)")
    args = p.parse_args(argv)
    print(json.dumps(_ab(Path(args.graph), Path(args.entry), args.scratch, args.device)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
