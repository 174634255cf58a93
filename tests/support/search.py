"""Shared pieces of the search tests: a real region, real Triton candidates, the verifier to use.

No tests here. The region comes from a real compile (so its key is the one a later
compile looks up); the candidates are real Triton kernels that the verifier runs
under the interpreter. ``verifier()`` is the real engine once it is importable,
else a small in-process stand-in with the same result shape (see ``_Result``).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

GOOD = """import torch
import triton
import triton.language as tl


@triton.jit
def _rms(X, W, Y, stride_x, stride_y, N, eps, BLOCK: tl.constexpr):
    # one program per row: read N + N, write N
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < N
    x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    r = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    tl.store(Y + row * stride_y + cols, x * r * w, mask=mask)


def forward(in0, in1):
    M, N = in0.shape
    out = torch.empty_strided(in0.shape, (N, 1), dtype=in0.dtype, device=in0.device)
    _rms[(M,)](in0, in1, out, in0.stride(0), out.stride(0), N, 1e-6, BLOCK=triton.next_power_of_2(N))
    return out
"""

SYNTAX_ERROR = GOOD.replace("def forward(in0, in1):", "def forward(in0, in1)")
# Divides the sum of squares by the padded block size instead of N: wrong numbers, right shape.
WRONG = GOOD.replace("tl.sum(x * x, axis=0) / N + eps", "tl.sum(x * x, axis=0) / BLOCK + eps")


def answer(code: str, words: str = "Here is the kernel.") -> str:
    return f"{words}\n\n```python\n{code}```\n"


class RMSNorm(torch.nn.Module):
    def __init__(self, dim: int = 33) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


COMPILE_SCRIPT = """
import torch, llm_inductor
from llm_inductor.compile import state as _state
torch.manual_seed(0)
w = torch.randn(33)
def f(x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w
x = torch.randn(8, 33)
with torch.no_grad():
    y = torch.compile(f, backend="llm")(x)
torch.testing.assert_close(y, f(x))
print("STATS", __import__("json").dumps(_state.stats()))
"""


def make_region(folder: Path) -> Path:
    """Compile the RMSNorm once with backend="llm" and return its region file (in folder)."""
    import llm_inductor
    from llm_inductor.compile import state as _state

    rows: list[Any] = []
    _state.reset()
    torch._dynamo.reset()
    try:
        w = torch.randn(33)
        f = lambda x: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w  # noqa: E731
        with torch.no_grad(), _state.overridden(export_dir=str(folder)):
            torch.compile(f, backend=llm_inductor.backend(mode="discover", min_region_us=0))(torch.randn(8, 33))
        rows = [row for r in _state.reports for row in r.regions if row.region_path]
    finally:
        torch._dynamo.reset()
    assert len(rows) == 1, f"expected one RMSNorm region, got {rows}"
    return Path(rows[0].region_path)


_SHARED: list[Path] = []


def shared_region(tmp_path: Path) -> Path:
    """make_region once per test session (it compiles); later calls reuse the files."""
    if not _SHARED or not _SHARED[0].is_file():
        _SHARED[:] = [make_region(tmp_path / "exported")]
    return _SHARED[0]


def copy_region(src: Path, cache_dir: Path) -> Path:
    """Put a region file (and sidecar) where the backend writes pending regions."""
    dst = cache_dir / "regions"
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst / src.name)
    shutil.copy(src.with_suffix(".json"), dst / src.with_suffix(".json").name)
    return dst / src.name


# ----------------------------------------------------------------------------- the verifier


def real_engine() -> Any:
    if importlib.util.find_spec("llm_inductor.verify.engine") is None:
        return None
    from llm_inductor.verify.engine import verify

    return verify


@dataclass
class _Result:
    """The shape of llm_inductor.verify.engine.VerifyResult, as far as the search reads it."""

    accepted: bool
    reason: str
    message: str
    timings: dict[str, Any] = field(default_factory=dict)
    envelope: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def feedback(self) -> str:
        return f"{self.reason}: {self.message}"


def _standin(region_path: str, source: str, cfg: Any) -> _Result:
    """Compile, run on three seeds, compare: just enough to stand in for the engine in these tests."""
    folder = Path(cfg.cache_dir) / "standin"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"cand_{abs(hash(source)):x}.py"
    path.write_text(source)
    try:
        compile(source, str(path), "exec")
    except SyntaxError as e:
        return _Result(False, "compile_error", f"SyntaxError: line {e.lineno}: {e.msg}")
    ref = _load(Path(region_path))
    try:
        cand = _load(path)
        for seed in range(3):
            inputs = ref.make_inputs(seed=seed)
            expected = ref.forward(*inputs)
            got = cand.forward(*[t.clone() for t in inputs])
            diff = (got - expected).abs().max().item()
            if not torch.allclose(got, expected, rtol=1.3e-6, atol=1e-5):
                return _Result(False, "wrong_values", f"output 0 differs on seed {seed}: max abs error {diff:.3g}")
    except Exception as e:
        return _Result(False, "runtime_error", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=2)}")
    return _Result(True, "ok", "correct on 3 seeds", envelope={"sizes": [{}]})


def _load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"m_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def verifier() -> Any:
    """(region_path, source, cfg) -> result: the real engine when it has landed, else the stand-in."""
    engine = real_engine()
    if engine is None:
        return _standin
    return lambda region_path, source, cfg: engine(region_path, source, device="auto", speed=None, config=cfg)


def with_timing(candidate_ms: float, inductor_ms: float) -> Any:
    """The verifier, with a GPU-style timing record injected into its result (the timing layer).

    On the CPU the engine judges correctness only; this is how the tests show the
    search what a GPU measurement would say, without a GPU.
    """
    inner = verifier()

    def verify(region_path: str, source: str, cfg: Any) -> Any:
        result = inner(region_path, source, cfg)
        d = result.to_dict() if not isinstance(result, dict) else dict(result)
        if d.get("accepted"):
            d["timings"] = {
                "candidate_ms": candidate_ms,
                "inductor_ms": inductor_ms,
                "speedup": inductor_ms / candidate_ms,
            }
        fb = result.feedback() if hasattr(result, "feedback") else d.get("message", "")
        d["feedback"] = fb
        return d

    return verify


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
