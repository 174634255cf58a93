"""Compile the tests' tiny RMSNorm model with backend="llm" in a fresh process; print the outcome as JSON.

The environment says which cache to use (LLM_INDUCTOR_CACHE_DIR, ...). Prints
{"stats": llm_inductor.stats(), "max_err": |compiled - eager|_max, "kernels": files under <cache>/kernels}.
"""
import json
import os
from pathlib import Path

import torch

import llm_inductor


class RMSNorm(torch.nn.Module):
    def __init__(self, dim: int = 33, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


torch.manual_seed(0)
model = RMSNorm()
x = torch.randn(8, 33)
with torch.no_grad():
    expected = model(x)
    got = torch.compile(model, backend="llm")(x)
kernels = Path(os.environ["LLM_INDUCTOR_CACHE_DIR"]) / "kernels"
print(json.dumps({
    "stats": llm_inductor.stats(),
    "max_err": (got - expected).abs().max().item(),
    "kernels": sorted(p.name for p in kernels.glob("*.py")) if kernels.is_dir() else [],
}))
