"""Where and with what a run happened: device, versions, commit, the settings that shape the numbers."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
# The source trees whose content decides the numbers; hashed so a run is identifiable without .git.
_SOURCES = ("llm_inductor", "passes", "cache", "benchmarks")


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:
        return None


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return platform.processor() or platform.machine() or "cpu"


def git_commit(given: str | None) -> dict[str, Any]:
    """The commit from git where the tree has .git (the device machine's copy may not), else what was given."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", *_SOURCES], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        if sha.returncode == 0:
            return {"commit": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip()), "source": "git"}
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "commit": given or os.environ.get("LLM_INDUCTOR_BENCH_COMMIT") or "unknown",
        "dirty": None,
        "source": "argument",
    }


def tree_hash() -> str:
    """sha256 over the .py files of the package and the benchmarks: names the code even without git."""
    h = hashlib.sha256()
    for top in _SOURCES:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            h.update(str(path.relative_to(ROOT)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def inductor_settings() -> dict[str, Any]:
    """The Inductor config keys that decide autotuning effort, as this process has them."""
    import torch._inductor.config as c

    cfg = c.get_config_copy()
    keep = ("max_autotune", "coordinate_descent", "autotune", "compile_threads", "fx_graph_cache", "triton.cudagraphs")
    return {
        k: v for k, v in sorted(cfg.items()) if any(s in k for s in keep) and isinstance(v, (bool, int, float, str))
    }


def llm_settings() -> dict[str, Any]:
    from llm_inductor.config import Config

    cfg = Config.load()[0]
    names = ("mode", "cache_dir", "packs", "interpret", "hot_threshold", "min_region_us", "strict")
    return {n: getattr(cfg, n) for n in names}


def _copy_ms(do_bench: Callable[..., Any], nbytes: int = 1 << 30) -> float:
    """Median ms of a device-to-device copy of nbytes (its buffers are freed on return)."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    return do_bench(lambda: dst.copy_(src), quantiles=[0.5])[0]


def measure_ceilings() -> dict[str, float]:
    """Copy bandwidth (bytes read + written) and bf16 matmul rate, do_bench medians with L2 flush."""
    from triton.testing import do_bench

    copy_ms = _copy_ms(do_bench)
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    mm_ms = do_bench(lambda: a @ b, quantiles=[0.5])[0]
    return {"copy_bytes_per_s": 2 * (1 << 30) / (copy_ms * 1e-3), "bf16_flops_per_s": 2 * 8192**3 / (mm_ms * 1e-3)}


def run_info(device: str, args: Any, settings: dict[str, Any], commit: str | None) -> dict[str, Any]:
    import triton

    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": device,
        "device_name": device_name(device),
        "host": platform.node(),
        "argv": sys.argv[1:],
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "triton": triton.__version__,
            "transformers": _version("transformers"),
            "llm_inductor": _version("llm_inductor"),
            "cuda": torch.version.cuda,
        },
        "git": git_commit(commit),
        "tree_hash": tree_hash(),
        "settings": settings,
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": props.name,
            "sm_count": props.multi_processor_count,
            "memory_gib": props.total_memory / 2**30,
        }
        info["sdpa"] = {
            "flash": torch.backends.cuda.flash_sdp_enabled(),
            "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
            "cudnn": getattr(torch.backends.cuda, "cudnn_sdp_enabled", lambda: None)(),
        }
    return info
