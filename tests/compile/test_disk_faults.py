"""A cache hit on a cache directory that cannot be written still serves, and the script never sees the error.

Writes fail by injection (as root, chmod does not make a directory read-only): every
write under the cache directory raises ENOSPC (a full disk) or EROFS (a read-only mount).
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest
import torch

import llm_inductor
from llm_inductor.cache.store import MemoryStore
from llm_inductor.compile import region_pass as _graph_pass
from llm_inductor.compile import runtime as _runtime
from llm_inductor.compile import state as _state
from support.util import RMSNorm, rmsnorm_entry, serve


@pytest.fixture
def failing_writes(monkeypatch, tmp_path):
    """Make every file write and mkdir under the cache directory fail with the given errno."""

    def install(code: int) -> Path:
        monkeypatch.setattr(_runtime, "_kernels", {})  # kernels this process imported earlier would hide the write
        monkeypatch.setattr(_runtime, "_warned_unwritable", False)
        monkeypatch.setattr(_graph_pass, "_warned_unrecorded", set())
        root = Path(os.environ["LLM_INDUCTOR_CACHE_DIR"]).resolve()

        def under(path) -> bool:
            return Path(path).resolve().is_relative_to(root)

        def fail(path):
            raise OSError(code, os.strerror(code), str(path))

        real_open, real_mkdir = Path.open, Path.mkdir

        def open_(self, mode="r", *a, **k):
            if any(c in mode for c in "wax+") and under(self):
                fail(self)
            return real_open(self, mode, *a, **k)

        def mkdir(self, *a, **k):
            if under(self):
                fail(self)
            return real_mkdir(self, *a, **k)

        monkeypatch.setattr(Path, "open", open_)
        monkeypatch.setattr(Path, "mkdir", mkdir)
        return root

    return install


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS], ids=["full_disk", "read_only"])
def test_a_hit_serves_from_memory_when_the_kernel_file_cannot_be_written(tmp_path, failing_writes, caplog, code):
    model, x, entry = rmsnorm_entry(tmp_path)
    _state.set_store(MemoryStore([entry]))
    root = failing_writes(code)
    with caplog.at_level(logging.WARNING, logger="llm_inductor"):
        out = serve(model, x, interpret=True)
        out2 = serve(model, 2 * x, interpret=True)  # a second graph: the warning is not repeated
    with torch.no_grad():
        torch.testing.assert_close(out, model(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out2, model(2 * x), atol=1e-5, rtol=1e-5)
    stats = llm_inductor.stats()
    assert stats["substituted"] == 1 and stats["kernel_calls"] == 1 and stats["runtime_fallbacks"] == 0
    said = [r.getMessage() for r in caplog.records if "cannot write kernel modules" in r.getMessage()]
    assert len(said) == 1 and os.strerror(code) in said[0]
    assert not (root / "kernels").exists()


def test_a_failing_kernel_on_an_unwritable_cache_still_computes_the_region(tmp_path, failing_writes):
    """The runtime fallback writes nothing: it runs the region's ops from the key."""
    model, x, entry = rmsnorm_entry(tmp_path)
    entry.kernel_source = entry.kernel_source.replace(
        "    m, n = x.shape\n", "    m, n = x.shape\n    raise RuntimeError('boom')\n"
    )
    _state.set_store(MemoryStore([entry]))
    failing_writes(errno.ENOSPC)
    out = serve(model, x, interpret=True)
    with torch.no_grad():
        torch.testing.assert_close(out, model(x), atol=1e-5, rtol=1e-5)
    assert llm_inductor.stats()["runtime_fallbacks"] == 1


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS], ids=["full_disk", "read_only"])
def test_a_miss_on_an_unwritable_cache_is_one_warning_and_inductors_code(tmp_path, failing_writes, caplog, code):
    """Hot misses cannot be recorded: Inductor compiles them as ever, the user hears it once, nothing falls back."""
    model = RMSNorm(16)
    failing_writes(code)
    with caplog.at_level(logging.WARNING, logger="llm_inductor"):
        for rows in (3, 5):  # two graphs, each with a hot miss
            x = torch.randn(rows, 16)
            with torch.no_grad():
                torch.testing.assert_close(serve(model, x), model(x))
    said = [r.getMessage() for r in caplog.records if "cannot record regions" in r.getMessage()]
    assert len(said) == 1 and os.strerror(code) in said[0]
    stats = llm_inductor.stats()
    assert stats["misses"] == 1 and stats["fallbacks"] == 0
