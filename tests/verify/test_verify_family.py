"""Family region files (passes/family.py): a kernel is verified across the sizes of its family.

The family's file draws inputs at any size of its symbols, so the verifier checks a candidate at the
sizes seen and at 1, an odd size below and one above for every symbol. A kernel right at the sizes
seen only is rejected for that reason. A size the family's own reference cannot run at (a view whose
other sizes stayed literal) is outside the family's domain: recorded, and no verdict.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import llm_inductor
from llm_inductor.compile import state as _state
from llm_inductor.verify.engine import verify
from support.paths import KERNELS

pytestmark = pytest.mark.usefixtures("one_kernel_cache_path")


def family_file(fn, *inputs, into: Path) -> tuple[Path, dict[str, int]]:
    """The family region file of fn's one region (inference), and the sizes it saw."""
    seen = []
    _state.reset()
    torch._dynamo.reset()
    compiled = torch.compile(fn, backend=llm_inductor.backend(mode="discover", min_region_us=0))
    with torch.no_grad(), _state.overridden(graph_hook=lambda gm, kind, infos: seen.extend(infos)):
        compiled(*inputs)
    (info,) = seen
    assert info.family is not None and info.family.key.family
    return info.family.write(into), dict(info.family.symbols)


def rms(x, w):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))


def test_a_general_kernel_is_verified_at_every_size_of_its_family(tmp_path):
    path, symbols = family_file(rms, torch.randn(5, 12), torch.randn(12), into=tmp_path)
    assert symbols == {"s0": 5, "s1": 12}
    result = verify(path, (KERNELS / "rmsnorm.py").read_text(), device="cpu")
    assert result.accepted, result.message
    # every symbol at the size seen, 1, an odd size below and an odd size above
    assert result.envelope["sizes"] == {"s0": [1, 3, 5, 7], "s1": [1, 7, 12, 19]}
    assert result.envelope["outside_sizes"] == {}


def test_a_kernel_fitted_to_the_sizes_seen_is_rejected_for_that(tmp_path):
    path, _ = family_file(rms, torch.randn(5, 12), torch.randn(12), into=tmp_path)
    # One 16-wide block, no loop: right at 12 columns (and 7), wrong at 19.
    fitted = (KERNELS / "rmsnorm.py").read_text().replace("block = triton.next_power_of_2(n_cols)", "block = 16")
    assert fitted != (KERNELS / "rmsnorm.py").read_text()
    result = verify(path, fitted, device="cpu")
    assert not result.accepted
    assert result.reason == "wrong_at_size", result.message
    assert "s1=19" in result.message and "while the region's own sizes passed" in result.message


def heads_sum(x):
    b, d = x.shape
    return (x.view(b, 4, d // 4) * 2.0).sum(-1)


SUM_HEADS = """
import torch
import triton
import triton.language as tl


@triton.jit
def _k(x_ptr, out_ptr, W, BLOCK: tl.constexpr):
    i = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + i * W + cols, mask=cols < W, other=0.0)
    tl.store(out_ptr + i, tl.sum(x * 2.0, axis=0))


def forward(x):
    b = x.shape[0]
    out = torch.empty((b, 4), dtype=x.dtype, device=x.device)
    w = x.shape[1] // 4
    _k[(b * 4,)](x, out, w, BLOCK=triton.next_power_of_2(w))
    return out
"""


def test_sizes_outside_the_familys_domain_are_recorded_not_judged(tmp_path):
    # The view's 4 and 3 are literals (no input dim is 4 or 3), so the family's reference runs only where
    # s1 = 12: at s1 = 1, 7 and 19 it raises. Those sizes are outside the family, and the kernel is judged
    # at every other one.
    path, symbols = family_file(heads_sum, torch.randn(5, 12), into=tmp_path)
    assert symbols == {"s0": 5, "s1": 12}
    assert "[s0, 4, 3]" in path.read_text()
    result = verify(path, SUM_HEADS, device="cpu")
    assert result.accepted, result.message
    assert sorted(result.envelope["outside_sizes"]) == [
        "draw 's1=1' (s0=5, s1=1)",
        "draw 's1=19' (s0=5, s1=19)",
        "draw 's1=7' (s0=5, s1=7)",
    ]
    assert all("reference fails there" in why for why in result.envelope["outside_sizes"].values())
    assert result.envelope["sizes"] == {"s0": [1, 3, 5, 7], "s1": [12]}
