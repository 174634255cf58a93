"""Kernel-cache latency: lookups per tier, and the compile overhead of a warm cache against plain Inductor.

    python benchmarks/studies/cache_latency.py --out benchmarks/results/cache_latency_cpu.json
    python benchmarks/studies/cache_latency.py --out benchmarks/results/cache_latency_h200.json --device cuda

Lookups (p20/p50/p80 in µs over --entries keys):
  memory   a key this store has looked up before (the dict in front of every tier)
  local    the first lookup of a key in a fresh store, entry in SQLite (parse + signature + policy)
  redis    the same with the entry only on the shared server (plus the copy into SQLite);
           needs redis-server on PATH or --redis-url, else reported as skipped
  pack     the same with the entry only in a pack named by LLM_INDUCTOR_PACKS
  miss     a key in no tier, every tier asked
  *_fetch  the tier's raw read alone, without parsing or judging
Compile: a tiny RMSNorm model compiled by backend="inductor" and by backend="llm"
with a cache holding a kernel for its region (inserted directly and signed with a
scratch cache's local key: this measures the cache, not the verifier). Each is
compiled --repeats times after torch._dynamo.reset(); the first compile is cold,
the rest hit Inductor's FX cache, which is when our overhead is most visible. On
a CPU the region is looked up but not substituted unless --interpret is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
KERNEL = ROOT / "tests" / "data" / "cache_data" / "rmsnorm_candidate.py"  # read as a file


def _quantiles(samples_s: list[float]) -> dict[str, float]:
    us = sorted(s * 1e6 for s in samples_s)
    q = statistics.quantiles(us, n=10) if len(us) > 1 else us * 9
    return {"n": len(us), "p20_us": q[1], "p50_us": statistics.median(us), "p80_us": q[7]}


def _time_each(fn: Callable[[Any], Any], items: list[Any]) -> list[float]:
    out = []
    for it in items:
        t = time.perf_counter()
        fn(it)
        out.append(time.perf_counter() - t)
    return out


def _synthetic_entries(n: int) -> list[Any]:
    """Entries for made-up CPU keys (never run: a lookup costs the same whatever the device).

    Each holds the real RMSNorm kernel and a region description of its size, so parsing,
    signature checks and the trust policy do the work they do on a real entry."""
    import hashlib

    from llm_inductor.cache.entry import Entry
    from llm_inductor.cache.trust import current_versions

    kernel, versions = KERNEL.read_text(), current_versions("cpu")
    spec = {"dtype": "torch.float32", "shape": ["8", "33"], "stride": ["33", "1"], "aligned": True}
    entries = []
    for i in range(n):
        key = hashlib.sha256(f"bench-{i}".encode()).hexdigest()
        meta = {
            "key": key,
            "key16": key[:16],
            "device": "cpu",
            "ops": ["pow", "mean", "add", "rsqrt", "mul", "mul"],
            "inputs": [spec, {**spec, "shape": ["33"], "stride": ["1"]}],
            "outputs": [spec],
            "symbols": {},
            "bindings": {},
        }
        entries.append(
            Entry(
                key=key,
                key_fields={"device": "cpu", "digest": key, "graph": [f"bench-{i}"]},
                kernel_source=kernel,
                region_source=f"# region bench-{i}\n",
                region_meta=meta,
                verification={"accepted": True},
                speed={"cpu": {"speedup": 1.25}},
                provenance={"provider": "benchmark"},
                versions=versions,
            )
        )
    return entries


def _store(cache_dir: Path, **env: str) -> Any:
    from llm_inductor.cache.tiered import TieredStore
    from llm_inductor.config import Config

    return TieredStore(Config.load(env={"LLM_INDUCTOR_CACHE_DIR": str(cache_dir), **env})[0])


def _start_redis(tmp: Path) -> tuple[str | None, Any]:
    import importlib.util

    exe = shutil.which("redis-server")
    if exe is None or importlib.util.find_spec("redis") is None:  # the GPU image has neither
        return None, None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return f"redis://127.0.0.1:{port}/0", proc


def lookups(n: int, redis_url: str | None, tmp: Path) -> dict[str, Any]:
    from llm_inductor.cache.pack import write_pack

    entries = _synthetic_entries(n)
    maker = _store(tmp / "maker", **({"LLM_INDUCTOR_REDIS_URL": redis_url} if redis_url else {}))
    signed = [maker.put(e) for e in entries]
    keys = [e.key for e in signed]
    trust = {"LLM_INDUCTOR_TRUSTED_KEYS": str(tmp / "maker" / "keys" / "local.pub")}
    out: dict[str, Any] = {}

    local = _store(tmp / "maker")
    out["local"] = _quantiles(_time_each(local.lookup, keys))
    out["memory"] = _quantiles(_time_each(local.lookup, keys))
    out["local_fetch"] = _quantiles(_time_each(local.local.bodies_for_key, keys))
    if local.lookup(keys[0]) is None:  # e.g. no cryptography package: nothing can be served
        raise SystemExit(f"benchmark entries are not served here: {local.judge(signed[0])}")

    if redis_url:
        shared = _store(tmp / "redis-reader", LLM_INDUCTOR_REDIS_URL=redis_url, **trust)
        out["redis"] = _quantiles(_time_each(shared.lookup, keys))
        out["redis_fetch"] = _quantiles(_time_each(shared.shared.bodies_for_key, keys))
    else:
        out["redis"] = {"skipped": "no redis-server on PATH or no redis package, and no --redis-url"}

    pack = tmp / "bench.jsonl.gz"
    write_pack(pack, signed)
    reader = _store(tmp / "pack-reader", LLM_INDUCTOR_PACKS=str(pack), **trust)
    t = time.perf_counter()
    reader.trust()  # reads every pack once: revocations travel in them
    out["pack_load_ms"] = (time.perf_counter() - t) * 1e3
    out["pack"] = _quantiles(_time_each(reader.lookup, keys))
    out["pack_fetch"] = _quantiles(_time_each(reader.packs[0].bodies_for_key, keys))

    absent = [f"{i:064x}" for i in range(n)]
    out["miss"] = _quantiles(_time_each(reader.lookup, absent))
    return out


_COMPILE = r"""
import json, os, sys, time, torch
import llm_inductor
from llm_inductor.compile import state as _state

class RMSNorm(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(dim))
    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight

backend, repeats, device, rows, dim = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
torch.manual_seed(0)
model = RMSNorm(dim).to(device)
x = torch.randn(rows, dim, device=device)
spent = {"region_pass_s": 0.0, "lookup_s": 0.0}

def timed(owner, name, slot):
    fn = getattr(owner, name)
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            spent[slot] += time.perf_counter() - t
    setattr(owner, name, wrapper)

if backend == "llm":
    from llm_inductor.compile import region_pass as _graph_pass
    from llm_inductor.cache.tiered import TieredStore
    timed(_graph_pass, "run", "region_pass_s")
    timed(TieredStore, "lookup", "lookup_s")
times, errs, passes = [], [], []
for _ in range(repeats):
    spent.update(region_pass_s=0.0, lookup_s=0.0)
    torch._dynamo.reset()
    _state.reset()
    compiled = torch.compile(model, backend=backend)
    t = time.perf_counter()
    with torch.no_grad():
        y = compiled(x)
    if device == "cuda":
        torch.cuda.synchronize()
    times.append(time.perf_counter() - t)
    errs.append((y - model(x)).abs().max().item())
    passes.append(dict(spent))
print(json.dumps({"times_s": times, "max_err": max(errs), "stats": llm_inductor.stats(), "ours": passes}))
"""


def _compile_run(
    backend: str, repeats: int, device: str, shape: tuple[int, int], env: dict[str, str]
) -> dict[str, Any]:
    cmd = [sys.executable, "-c", _COMPILE, backend, str(repeats), device, str(shape[0]), str(shape[1])]
    proc = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"compile run ({backend}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compile_overhead(device: str, repeats: int, shape: tuple[int, int], interpret: bool, tmp: Path) -> dict[str, Any]:
    from llm_inductor.cache.entry import Entry
    from llm_inductor.cache.trust import current_versions
    from llm_inductor.passes.regionfile import read_sidecar, region_scripts

    cache = tmp / "compile-cache"
    env = {
        "TORCHINDUCTOR_CACHE_DIR": str(tmp / "inductor"),
        "LLM_INDUCTOR_CACHE_DIR": str(cache),
        "LLM_INDUCTOR_MIN_REGION_US": "0",
    }
    if interpret:
        env.update(LLM_INDUCTOR_INTERPRET="1", TRITON_INTERPRET="1")
    _compile_run("llm", 1, device, shape, env)  # writes the region file of the model's hot region
    regions = region_scripts(cache / "regions")
    if len(regions) != 1:
        raise RuntimeError(f"expected one region for the RMSNorm model, found {regions}")
    meta = read_sidecar(regions[0]).to_dict()
    store = _store(cache)
    store.put(
        Entry(
            key=meta["key"],
            key_fields=meta["key_fields"],
            kernel_source=KERNEL.read_text(),
            region_source=regions[0].read_text(),
            region_meta=meta,
            versions=current_versions(device),
            provenance={"provider": "benchmark"},
        )
    )
    store.local.close()
    result: dict[str, Any] = {"shape": list(shape), "repeats": repeats, "interpret": interpret}
    for backend in ("inductor", "llm"):
        run = _compile_run(backend, repeats, device, shape, env)
        warm = run["times_s"][1:] or run["times_s"]
        result[backend] = {
            "cold_s": run["times_s"][0],
            "warm_p50_s": statistics.median(warm),
            "warm_s": warm,
            "max_err": run["max_err"],
        }
        if backend == "llm":
            result[backend]["stats"] = run["stats"]
            ours = run["ours"][1:] or run["ours"]
            result[backend]["region_pass_warm_p50_ms"] = statistics.median(o["region_pass_s"] for o in ours) * 1e3
            result[backend]["lookup_warm_p50_ms"] = statistics.median(o["lookup_s"] for o in ours) * 1e3
    result["warm_overhead_ms"] = (result["llm"]["warm_p50_s"] - result["inductor"]["warm_p50_s"]) * 1e3
    return result


def environment(device: str) -> dict[str, Any]:
    from importlib import metadata

    import torch

    info = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": metadata.version("triton"),
    }
    try:
        sys.path.insert(0, str(ROOT))
        from benchmarks.environment import git_commit

        info["git"] = git_commit(None)
    except Exception as e:  # the benchmark runs without the rest of benchmarks/ too
        info["git"] = {"error": str(e)}
    return info


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="JSON results file")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--entries", type=int, default=200)
    p.add_argument("--redis-url", help="default: start redis-server on a free port if it is on PATH")
    p.add_argument("--repeats", type=int, default=5, help="compiles per backend (the first is cold)")
    p.add_argument(
        "--shape", default=None, help="rows,dim of the RMSNorm input (default 8,33 on CPU, 4096,4096 on CUDA)"
    )
    p.add_argument("--interpret", action="store_true", help="on a CPU: substitute under the Triton interpreter")
    p.add_argument("--skip-compile", action="store_true")
    args = p.parse_args()
    shape = tuple(int(s) for s in (args.shape or ("4096,4096" if args.device == "cuda" else "8,33")).split(","))
    with tempfile.TemporaryDirectory(prefix="llm_inductor-bench-") as d:
        tmp = Path(d)
        url, proc = (args.redis_url, None) if args.redis_url else _start_redis(tmp)
        try:
            doc: dict[str, Any] = {"schema": 1, "suite": "cache_latency", "env": environment(args.device)}
            doc["lookup"] = lookups(args.entries, url, tmp)
            if not args.skip_compile:
                doc["compile"] = compile_overhead(args.device, args.repeats, shape, args.interpret, tmp)
        finally:
            if proc is not None:
                proc.kill()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    for tier, q in doc["lookup"].items():
        shown = (
            f"p50 {q['p50_us']:.1f} us (p20 {q['p20_us']:.1f}, p80 {q['p80_us']:.1f})"
            if isinstance(q, dict) and "p50_us" in q
            else q
        )
        print(f"{tier:12} {shown}")
    if "compile" in doc:
        c = doc["compile"]
        print(
            f"compile warm p50: inductor {c['inductor']['warm_p50_s'] * 1e3:.1f} ms, "
            f"llm {c['llm']['warm_p50_s'] * 1e3:.1f} ms "
            f"(overhead {c['warm_overhead_ms']:.1f} ms, "
            f"of which the region pass {c['llm']['region_pass_warm_p50_ms']:.2f} ms "
            f"and cache lookups {c['llm']['lookup_warm_p50_ms']:.3f} ms); llm stats {c['llm']['stats']}"
        )
    print(f"wrote {out}")
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
