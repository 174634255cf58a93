r"""Where a served kernel's graph loses time outside the kernel: the in-graph gate's A/B, profiled.

    python benchmarks/studies/gate_overhead.py --cache DIR --region KEY16 --out OUT.json [--device cuda]

The family study (``family_travel.py``) found the cross-entropy kernel 2.49x faster than Inductor alone at
2048 rows, yet the graph with it slower (0.359 -> 0.391 ms) while the kernel alone took 0.144 ms. This
replays that gate for one recorded region: the region's graph file (``graphs/``), compiled by Inductor and
by ``backend="llm"`` with the family's entry serving it, and reports per graph:

- ``do_bench`` (L2 flushed, median ms), as the gate times it;
- the host's time per call with no synchronisation in the loop (launch cost: where it exceeds the GPU's
  time, the GPU waits for the host);
- the kernel op's own host time per call, and ``torch.profiler``'s top host and device events.

Nothing here decides anything; it explains a gate verdict. ``--device cpu`` runs the plumbing on the CPU
under the Triton interpreter (tests of the script, no timing that counts).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", required=True, type=Path, help="the study's kernel cache (LLM_INDUCTOR_CACHE_DIR)")
    ap.add_argument("--region", required=True, help="the region's key16, as `regions` and the study print it")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    a = ap.parse_args(argv)
    os.environ["LLM_INDUCTOR_CACHE_DIR"] = str(a.cache)
    import torch

    import llm_inductor
    import llm_inductor.compile.state as _state
    from llm_inductor.cache.store import MemoryStore
    from llm_inductor.config import Config
    from llm_inductor.search.families import _as_region_entry
    from llm_inductor.search.gate import host_us_per_call
    from llm_inductor.search.graphs import graph_for

    cfg, _ = Config.load()
    region = a.cache / "regions" / f"region_{a.region}.py"
    graph = graph_for(a.region, cfg)
    if graph is None or not region.is_file():
        raise SystemExit(f"no region file or graph file for {a.region} under {a.cache}: compile it there first")
    family = json.loads(region.with_suffix(".json").read_text()).get("family") or {}
    entry = _state.store(cfg).lookup(str(family.get("key", "")))
    if entry is None:
        raise SystemExit(f"the family of {a.region} has no served entry in {a.cache}")
    _state.set_store(MemoryStore([_as_region_entry(entry, region)]))

    spec = importlib.util.spec_from_file_location("llm_graph", graph)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    inputs = mod.make_inputs(seed=0, device=a.device)

    def without(*x: Any) -> Any:
        return mod.forward(*x)

    def with_kernel(*x: Any) -> Any:
        return mod.forward(*x)

    graphs = {
        "inductor": torch.compile(without, backend="inductor"),
        "llm": torch.compile(with_kernel, backend=llm_inductor.backend("cache", interpret=a.device == "cpu")),
    }
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    row: dict[str, Any] = {"region": a.region, "graph": graph.name, "entry": entry.entry_id, "device": a.device}
    with torch.no_grad():
        for name, f in graphs.items():
            _state.reset()
            f(*inputs)
            r: dict[str, Any] = {"substituted": _state.stats()["substituted"]}
            if a.device == "cuda":
                from triton.testing import do_bench

                r["do_bench_ms"] = float(do_bench(lambda f=f: f(*inputs)))
            r["host_us_per_call"] = host_us_per_call(lambda f=f: f(*inputs), a.device, 200 if a.device == "cuda" else 3)
            acts = [torch.profiler.ProfilerActivity.CPU]
            if a.device == "cuda":
                acts.append(torch.profiler.ProfilerActivity.CUDA)
            with torch.profiler.profile(activities=acts) as prof:
                for _ in range(20 if a.device == "cuda" else 2):
                    f(*inputs)
                sync()
            r["profile"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
            row[name] = r
    if row["llm"]["substituted"] != 1:
        row["warning"] = "the kernel was not substituted in the llm graph: the comparison says nothing"
    from llm_inductor.compile import runtime

    k = runtime._lookup(next(iter(runtime._kernels)))
    op_inputs = runtime._conform(k, list(inputs_for_region(region, a.device)))
    row["op_host_us_per_call"] = host_us_per_call(
        lambda: torch.ops.llm_inductor.kernel.default(k.entry_id, op_inputs), a.device, 200 if a.device == "cuda" else 3
    )
    row["forward_host_us_per_call"] = host_us_per_call(
        lambda: k.forward(*op_inputs), a.device, 200 if a.device == "cuda" else 3
    )
    # Where the host's time goes, by Python function: the llm graph's call against the op called directly
    row["cprofile_llm_graph"] = python_profile(lambda: graphs["llm"](*inputs), sync, 50 if a.device == "cuda" else 2)
    row["cprofile_op"] = python_profile(
        lambda: torch.ops.llm_inductor.kernel.default(k.entry_id, op_inputs), sync, 50 if a.device == "cuda" else 2
    )
    a.out.write_text(json.dumps(row, indent=1))
    print(
        json.dumps(
            {
                k: v
                for k, v in row.items()
                if k in ("region", "entry", "op_host_us_per_call", "forward_host_us_per_call")
            }
        )
    )
    for name in ("inductor", "llm"):
        print(name, {k: v for k, v in row[name].items() if k != "profile"})
        print(row[name]["profile"])
    print(row["cprofile_llm_graph"], row["cprofile_op"], sep="\n")
    return 0


def python_profile(fn: Any, sync: Any, n: int) -> str:
    """cProfile of n calls (no grad), the top functions by their own time."""
    import cProfile
    import io
    import pstats

    import torch

    with torch.no_grad():
        fn()
        sync()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n):
            fn()
        prof.disable()
        sync()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(30)
    return text.getvalue()


def inputs_for_region(region: Path, device: str) -> list[Any]:
    """The region file's own inputs at its sizes (what the op is called with in the graph)."""
    spec = importlib.util.spec_from_file_location("llm_region", region)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return list(mod.make_inputs(seed=0, device=device))


if __name__ == "__main__":
    sys.exit(main())
