"""Inductor's own kernel for a region, with its time and the roofline floor: the bar to beat.

The code comes from ``torch._inductor.utils.run_and_get_code`` in a child process
(``python -m llm_inductor.search.baseline REGION.py``), never in the caller: online
mode calls this from inside a compile, where a nested ``torch.compile`` is unsafe.
Results are cached per region and GPU under ``<cache_dir>/search/reference/``.
On a machine without a GPU, Inductor writes C++ rather than Triton, so the prompt
says so instead of showing it, and nothing is timed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

MAX_CODE_CHARS = 12_000  # about 3k tokens: the kernels, not Inductor's whole wrapper module
_TRITON_KERNEL = re.compile(r"async_compile\.triton\(\s*'(\w+)',\s*'''(.*?)'''", re.S)
_CALL = re.compile(r"^(?P<indent>[ \t]*)def call\((?:self, )?args\):$", re.M)


def _gpu_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def cpu_baseline() -> dict[str, Any]:
    return {
        "available": False,
        "device": "cpu",
        "note": "No GPU on this machine: Inductor generates C++ for the CPU, which is not shown, "
        "and speed is not judged (correctness only, under the Triton interpreter).",
    }


def inductor_baseline(region_path: str | Path, cache_dir: Path, timeout: float = 600.0) -> dict[str, Any]:
    """{available, device, code, kernels, inductor_ms, note}; cached; failures become a note."""
    from llm_inductor.search.verdict import baseline_mode

    region_path = Path(region_path)
    if not torch.cuda.is_available():
        return cpu_baseline()
    mode = baseline_mode(str(region_path))  # the Inductor the candidates must beat, as the verifier
    name = re.sub(r"\W+", "_", _gpu_name())
    tag = "" if mode == "default" else f"-{mode}"
    cached = cache_dir / "search" / "reference" / f"{region_path.stem}-{name}-{torch.__version__}{tag}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    cmd = [sys.executable, "-m", "llm_inductor.search.baseline", str(region_path), "--mode", mode]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"available": False, "device": _gpu_name(), "note": f"Inductor's compile ran past {timeout:g}s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return {"available": False, "device": _gpu_name(), "note": f"Inductor failed on this region: {tail[0][:300]}"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(result))
    return result


def extract_kernels(code: str) -> str:
    """The Triton kernels of an Inductor output module and its ``call`` (launch grids), trimmed."""
    parts = [f"# kernel {name}\n{src.strip()}\n" for name, src in _TRITON_KERNEL.findall(code)]
    call = _launcher(code)
    if call:
        parts.append("# Inductor's launcher\n" + call)
    text = "\n".join(parts) if parts else code
    if len(text) > MAX_CODE_CHARS:
        text = text[:MAX_CODE_CHARS] + f"\n# ... trimmed ({len(text) - MAX_CODE_CHARS} more characters)\n"
    return text


def _launcher(code: str) -> str | None:
    """Inductor's ``call(args)`` (a module function, or ``Runner.call`` since torch 2.8), dedented."""
    m = _CALL.search(code)
    if m is None:
        return None
    indent = len(m.group("indent"))
    lines = [m.group(0)[indent:]]
    for line in code[m.end() + 1 :].splitlines():
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        lines.append(line[indent:])
    return "\n".join(lines).rstrip() + "\n"


def _measure(region_path: Path, mode: str = "default", gpu_lock: Path | None = None) -> dict[str, Any]:
    """Compile the region and time it. With ``gpu_lock`` (a file), the timing holds its lock: processes that
    share the GPU compile side by side and time one at a time."""
    import contextlib
    import fcntl
    import importlib.util

    from torch._inductor.utils import run_and_get_code
    from triton.testing import do_bench

    spec = importlib.util.spec_from_file_location("llm_region", region_path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # Dynamo resolves the traced function's globals through sys.modules
    spec.loader.exec_module(mod)
    inputs = mod.make_inputs(seed=0, device="cuda")
    compiled = torch.compile(mod.forward, backend="inductor", mode=None if mode == "default" else mode)
    with torch.no_grad(), contextlib.ExitStack() as stack:
        _, codes = run_and_get_code(compiled, *inputs)
        if gpu_lock is not None:
            fcntl.flock(stack.enter_context(open(gpu_lock, "a")), fcntl.LOCK_EX)
        ms = do_bench(lambda: compiled(*inputs), quantiles=[0.5, 0.2, 0.8])
    code = "\n".join(codes)
    return {
        "available": True,
        "device": _gpu_name(),
        "code": extract_kernels(code),
        "kernels": len(_TRITON_KERNEL.findall(code)),
        "inductor_ms": float(ms[0]),
        "inductor_ms_p20_p80": [float(ms[1]), float(ms[2])],
        "mode": mode,
        "note": f"torch.compile {mode} mode; do_bench median (L2 flushed between runs)",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("region")
    p.add_argument("--mode", default="default", help="torch.compile mode of the Inductor to measure")
    p.add_argument("--gpu-lock", type=Path, help="a file whose lock the timing holds (one timing at a time)")
    args = p.parse_args(argv)
    print(json.dumps(_measure(Path(args.region), args.mode, args.gpu_lock)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
