"""Regenerate the region files under tests/kernels/regions/ from small models.

    python tests/kernels/make_regions.py [NAME ...]

Each model is compiled with backend="llm" (cache mode, every region hot) so the
backend writes its real region file and sidecar; they are copied here under a
readable name. The files are checked in: the verifier's tests must not change
when the partitioner does. Shapes are small and awkward on purpose (the Triton
interpreter runs them on CPU): 6x42x123, 33x781, 2x3x17x32.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent / "regions"


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
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(48, 40)

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


def build(name: str) -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        if name == "rmsnorm":
            torch.compile(RMSNorm(123), backend="llm")(torch.randn(6, 42, 123))
        elif name == "rmsnorm_bf16":
            torch.compile(RMSNorm(123).bfloat16(), backend="llm")(torch.randn(6, 42, 123, dtype=torch.bfloat16))
        elif name == "softmax":
            torch.compile(Softmax(), backend="llm")(torch.randn(33, 781))
        elif name == "softmax_bf16_wide":  # rows longer than one block: the two-pass path
            torch.compile(SoftmaxLowPrecisionIO(), backend="llm")(torch.randn(5, 9001, dtype=torch.bfloat16))
        elif name == "bias_gelu":
            torch.compile(BiasGelu(), backend="llm")(torch.randn(33, 48))
        elif name == "cross_entropy":
            torch.compile(CrossEntropy(), backend="llm")(torch.randn(33, 781), torch.randint(0, 781, (33,)))
        elif name == "cross_entropy_bf16_wide":  # bf16 logits, rows over several chunks
            logits = torch.randn(6, 9001, dtype=torch.bfloat16)
            torch.compile(CrossEntropy(), backend="llm")(logits, torch.randint(0, 9001, (6,)))
        elif name == "rope":
            torch.compile(Rope(), backend="llm")(torch.randn(2, 3, 17, 32), torch.randn(17, 32), torch.randn(17, 32))
        elif name == "sumsq_dyn":  # a reduction over a symbolic dim
            x = torch.randn(6, 781)
            torch._dynamo.mark_dynamic(x, 1)
            torch.compile(SumSquares(), backend="llm")(x)


NAMES = ("rmsnorm", "rmsnorm_bf16", "softmax", "softmax_bf16_wide", "bias_gelu", "cross_entropy",
         "cross_entropy_bf16_wide", "rope", "sumsq_dyn")


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":  # one model per process: each starts with empty caches
        build(sys.argv[2])
        return 0
    HERE.mkdir(parents=True, exist_ok=True)
    for name in sys.argv[1:] or NAMES:
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, LLM_INDUCTOR_MIN_REGION_US="0", LLM_INDUCTOR_CACHE_DIR=tmp)
            subprocess.run([sys.executable, __file__, "--child", name], env=env, check=True)
            found = sorted((Path(tmp) / "regions").glob("region_*.py"))
            if len(found) != 1:
                raise SystemExit(f"{name}: expected one hot region, found {[p.name for p in found]}")
            shutil.copy(found[0], HERE / f"region_{name}.py")
            shutil.copy(found[0].with_suffix(".json"), HERE / f"region_{name}.json")
            print(f"{name}: {found[0].name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
