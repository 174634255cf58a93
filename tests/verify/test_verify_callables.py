"""Candidate code wherever Triton calls it, and poison the candidate cannot predict (issue 11, items 3 and 4).

The guard runs in this process here, on candidates imported from files as the
worker imports them (the interpreter rewrites kernels from their source), so the
tests see which ops it charges to the candidate and which to Triton.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from llm_inductor.verify import guard
from llm_inductor.verify.engine import verify
from support.paths import KERNELS, REGIONS

# One kernel-cache path for the session: each verification takes the spare worker the last one started
# (tests/verify/conftest.py says why).
pytestmark = pytest.mark.usefixtures("one_kernel_cache_path")

CANDIDATE = """
import torch
import triton
import triton.language as tl


@triton.jit
def _copy(src_ptr, dst_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(dst_ptr + offs, tl.load(src_ptr + offs, mask=offs < n), mask=offs < n)


@triton.heuristics({"BLOCK": lambda args: HEURISTIC})
@triton.jit
def _copy_h(src_ptr, dst_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(dst_ptr + offs, tl.load(src_ptr + offs, mask=offs < n), mask=offs < n)


@triton.autotune(configs=[triton.Config({"BLOCK": 64}, pre_hook=lambda nargs: PRE_HOOK)], key=["n"])
@triton.jit
def _copy_a(src_ptr, dst_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(dst_ptr + offs, tl.load(src_ptr + offs, mask=offs < n), mask=offs < n)


def plain(x):
    out = torch.empty_like(x)
    _copy[(triton.cdiv(x.numel(), 64),)](x, out, x.numel(), BLOCK=64)
    return out


def gridded(x):
    out = torch.empty_like(x)
    _copy[lambda meta: (GRID, triton.cdiv(x.numel(), meta["BLOCK"]))[1:]](x, out, x.numel(), BLOCK=64)
    return out


def heuristic(x):
    out = torch.empty_like(x)
    _copy_h[(triton.cdiv(x.numel(), 64),)](x, out, x.numel())
    return out


def hooked(x):
    out = torch.empty_like(x)
    _copy_a[(triton.cdiv(x.numel(), 64),)](x, out, x.numel())
    return out
"""


@pytest.fixture
def load(tmp_path, monkeypatch):
    """Import a candidate from a file under the interpreter, with the worker's launch hooks installed."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    guard.install_launch_hooks(lambda: None)

    def _load(**holes: str):
        src = CANDIDATE
        for hole, code in {"HEURISTIC": "64", "PRE_HOOK": "None", "GRID": "0", **holes}.items():
            src = src.replace(hole, code)
        path = tmp_path / f"cand_{len(list(tmp_path.iterdir()))}.py"
        path.write_text(src)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return _load


def run(module, fn: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    x = torch.arange(100, dtype=torch.float32)
    g = guard.DispatchGuard(candidate=vars(module))
    with g:
        out = getattr(module, fn)(x)
    return x, out, g.violations


@pytest.mark.parametrize("fn", ["plain", "gridded", "heuristic", "hooked"])
def test_triton_own_ops_pass_and_pure_callables_are_fine(load, fn):
    # The interpreter stages arguments through torch (new_empty, set_, copy_) inside the launch.
    x, out, violations = run(load(), fn)
    assert violations == [] and torch.equal(out, x)


@pytest.mark.parametrize(
    "fn, holes",
    [
        ("gridded", {"GRID": "x.mul(2)"}),  # called by Triton in the middle of the launch
        ("heuristic", {"HEURISTIC": "args['src_ptr'].mul(2) is not None and 64"}),
        ("hooked", {"PRE_HOOK": "nargs['dst_ptr'].copy_(nargs['src_ptr'] * 2)"}),
    ],
)
def test_torch_compute_in_a_callable_triton_calls_is_the_candidates(load, fn, holes):
    _, _, violations = run(load(**holes), fn)
    assert "aten.mul.Tensor" in violations


def test_torch_compute_in_an_interpreted_kernel_body_is_the_candidates(load, tmp_path):
    # Under the interpreter a kernel body is Python; the policy forbids torch there, the guard backs it up.
    module = load()
    body = (
        Path(module.__file__)
        .read_text()
        .replace(
            "    tl.store(dst_ptr + offs, tl.load(src_ptr + offs, mask=offs < n), mask=offs < n)"
            "\n\n\n@triton.heuristics",
            "    torch.ones(2).mul(3)\n"
            "    tl.store(dst_ptr + offs, tl.load(src_ptr + offs, mask=offs < n), mask=offs < n)"
            "\n\n\n@triton.heuristics",
            1,
        )
    )
    path = tmp_path / "cand_body.py"
    path.write_text(body)
    spec = importlib.util.spec_from_file_location("cand_body", path)
    patched = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(patched)
    _, _, violations = run(patched, "plain")
    assert "aten.mul.Tensor" in violations


def test_poison_is_drawn_per_call_from_a_source_torch_seeds_cannot_reach():
    seen = set()
    for _ in range(2):
        torch.manual_seed(0)  # what a candidate could do before its first allocation
        t = torch.empty(4)
        guard.Poison(marked=True).fill(t)
        seen.add(t.view(torch.int32)[0].item())
        torch.manual_seed(0)
        noise = torch.empty(4)
        guard.Poison(marked=False).fill(noise)
        seen.add(tuple(noise.tolist()))
    assert len(seen) == 4  # two NaN payloads and two noise fills, all different
    assert bool(t.isnan().all()) and bool(noise.isfinite().all())


def test_marked_integer_and_bool_poison_differs_from_the_previous_marked_call():
    for dtype in (torch.bool, torch.uint8, torch.int32):
        first = guard.Poison(marked=True)
        first.value(dtype)
        for _ in range(20):
            assert guard.Poison(marked=True, unlike=first.fills).value(dtype) != first.fills[str(dtype)]


def test_a_heuristics_and_autotune_kernel_is_accepted():
    src = (KERNELS / "softmax_tuned.py").read_text()
    result = verify(REGIONS / "region_softmax.py", src, device="cpu")
    assert result.accepted, result.feedback()
    assert result.check("uninitialized").passed and result.check("guard").passed
