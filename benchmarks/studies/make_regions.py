"""Regenerate the region files under tests/data/kernels/regions/ from small models.

    python benchmarks/studies/make_regions.py [NAME ...]                          # the checked-in test regions
    python benchmarks/studies/make_regions.py --field --device cuda --out DIR   # FIELD.md's shapes (the H200 benchmark)

Each model is compiled with backend="llm" (cache mode, every region hot) so the
backend writes its real region file and sidecar; they are copied here under a
readable name. The files are checked in: the verifier's tests must not change
when the partitioner does. Shapes are small and awkward on purpose (the Triton
interpreter runs them on CPU): 6x42x123, 33x781, 2x3x17x32.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parents[2] / "tests" / "data" / "kernels" / "regions"


class RMSNorm(torch.nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(d))

    def forward(self, x):
        v = x.float().pow(2).mean(-1, keepdim=True)
        return (x.float() * torch.rsqrt(v + 1e-6)).to(x.dtype) * self.w


class Softmax(torch.nn.Module):
    def forward(self, x):
        return torch.softmax(x.float(), -1)


class SoftmaxLowPrecisionIO(torch.nn.Module):  # FIELD.md's softmax: bf16 in and out, fp32 math
    def forward(self, x):
        return torch.softmax(x.float(), -1).to(x.dtype)


class BiasGelu(torch.nn.Module):
    def __init__(self, k: int, n: int) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(k, n)

    def forward(self, x):
        return F.gelu(self.lin(x))


class CrossEntropy(torch.nn.Module):
    def forward(self, logits, target):
        return F.cross_entropy(logits.float(), target, reduction="none")


class Rope(torch.nn.Module):
    def forward(self, q, cos, sin):
        h = q.shape[-1] // 2
        return q * cos + torch.cat((-q[..., h:], q[..., :h]), -1) * sin


class SumSquares(torch.nn.Module):
    def forward(self, x):
        return (x * x).sum(-1)


NAMES = (
    "rmsnorm",
    "rmsnorm_bf16",
    "softmax",
    "softmax_bf16_wide",
    "bias_gelu",
    "cross_entropy",
    "cross_entropy_bf16_wide",
    "rope",
    "sumsq_dyn",
)


# name → (model, example inputs) at the CPU test shapes, and at FIELD.md's shapes for the H200 benchmark.
def _inputs(name: str, field: bool, device: str) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    bf16 = torch.bfloat16
    if name == "rmsnorm":
        return RMSNorm(123), (torch.randn(6, 42, 123),)
    if name == "rmsnorm_bf16":
        m, n = (8192, 4096) if field else (6 * 42, 123)
        shape = (m, n) if field else (6, 42, 123)
        return RMSNorm(n).to(bf16), (torch.randn(*shape, dtype=bf16),)
    if name == "softmax":
        return Softmax(), (torch.randn(33, 781),)
    if name == "softmax_bf16_wide":  # rows longer than one block: the two-pass path
        return SoftmaxLowPrecisionIO(), (torch.randn(*((4096, 32000) if field else (5, 9001)), dtype=bf16),)
    if name == "bias_gelu":
        m, k, n = (8192, 4096, 4096) if field else (33, 48, 40)
        dtype = bf16 if field else torch.float32
        return BiasGelu(k, n).to(dtype), (torch.randn(m, k, dtype=dtype),)
    if name == "cross_entropy":
        return CrossEntropy(), (torch.randn(33, 781), torch.randint(0, 781, (33,)))
    if name == "cross_entropy_bf16_wide":  # bf16 logits, rows over several chunks
        m, v = (4096, 128256) if field else (6, 9001)
        return CrossEntropy(), (torch.randn(m, v, dtype=bf16), torch.randint(0, v, (m,)))
    if name == "rope":
        b, h, sq, d = (8, 32, 2048, 128) if field else (2, 3, 17, 32)
        dtype = bf16 if field else torch.float32
        return Rope(), tuple(torch.randn(*s, dtype=dtype) for s in ((b, h, sq, d), (sq, d), (sq, d)))
    if name == "sumsq_dyn":  # a reduction over a symbolic dim
        return SumSquares(), (torch.randn(*((8192, 4096) if field else (6, 781))),)
    raise SystemExit(f"unknown region {name!r}; known: {', '.join(NAMES)}")


def build(name: str, field: bool, device: str) -> None:
    torch.manual_seed(0)
    model, inputs = _inputs(name, field, device)
    model = model.to(device)
    inputs = tuple(t.to(device) for t in inputs)
    if name == "sumsq_dyn":
        torch._dynamo.mark_dynamic(inputs[0], 1)
    with torch.no_grad():
        torch.compile(model, backend="llm")(*inputs)


def export(
    names: list[str],
    out: Path,
    field: bool = False,
    device: str = "cpu",
    parallel: bool = False,
) -> dict[str, str]:
    """Compile each model in a fresh process and copy its one hot region to out/region_<name>.py (+ .json).

    ``parallel`` starts every child at once (the benchmark's GPU host has cores to spare). Returns
    name -> error for the ones that failed; the others are written.
    """
    out.mkdir(parents=True, exist_ok=True)
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as root:
        children = []
        logs: dict[str, str] = {}
        for name in names:
            tmp = Path(root) / name
            env = dict(os.environ, LLM_INDUCTOR_MIN_REGION_US="0", LLM_INDUCTOR_CACHE_DIR=str(tmp))
            cmd = [sys.executable, __file__, "--child", name, "--device", device] + (["--field"] if field else [])
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            children.append((name, tmp, proc))
            if not parallel:
                logs[name] = _finish(proc)
        for name, tmp, proc in children:
            log = logs[name] if name in logs else _finish(proc)
            found = sorted((tmp / "regions").glob("region_*.py"))
            if proc.returncode != 0 or len(found) != 1:
                tail = " | ".join((log or "").strip().splitlines()[-3:])
                errors[name] = (
                    f"expected one hot region, found {[p.name for p in found]} (exit {proc.returncode}); {tail}"
                )
                continue
            shutil.copy(found[0], out / f"region_{name}.py")
            shutil.copy(found[0].with_suffix(".json"), out / f"region_{name}.json")
    return errors


def _finish(proc: subprocess.Popen, timeout: float = 600.0) -> str:
    """Wait for a child, reading its output as it goes (a full pipe would block it); returns its log."""
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        log, _ = proc.communicate()
    return log or ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(NAMES))
    parser.add_argument("--field", action="store_true", help="FIELD.md's shapes (bf16) instead of the test shapes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one model per process: each starts with empty caches
        build(args.names[0], args.field, args.device)
        return 0
    errors = export(args.names, args.out, args.field, args.device)
    for name, err in errors.items():
        print(f"{name}: {err}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
