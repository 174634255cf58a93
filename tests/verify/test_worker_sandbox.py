"""A verification worker cannot open the signing key or the kernel cache (issue 11, item 8; Landlock)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llm_inductor.cache import sign
from llm_inductor.verify import sandbox
from llm_inductor.verify.engine import verify
from support.paths import KERNELS, REGIONS

SOFTMAX = REGIONS / "region_softmax.py"

PROBE = """
import os
seen = []
for path in {paths!r}:
    try:
        with open(path, "rb") as f:
            f.read(1)
        seen.append("read")
    except PermissionError:
        seen.append("denied")
try:
    open({plant!r}, "w").write("planted")
    seen.append("wrote")
except PermissionError:
    seen.append("denied")
raise RuntimeError("probe " + " ".join(seen))
"""

needs_landlock = pytest.mark.skipif(sandbox.abi_version() < 1, reason="Landlock is not available on this kernel")


@needs_landlock
def test_a_worker_cannot_read_the_signing_key_nor_touch_the_cache(tmp_path, monkeypatch):
    cache = Path(os.environ["LLM_INDUCTOR_CACHE_DIR"])
    local = sign.local_key(cache)  # <cache>/keys/local.key
    team_key, _ = sign.generate(tmp_path / "team", "team")
    monkeypatch.setenv("LLM_INDUCTOR_SIGNING_KEY", str(team_key))
    readable = tmp_path / "not_a_secret.txt"
    readable.write_text("fine")
    paths = [str(team_key), local.source, str(readable)]
    probe = PROBE.format(paths=paths, plant=str(cache / "keys" / "planted.pub"))
    result = verify(SOFTMAX, probe, device="cpu", static_policy=False)
    assert result.reason == "compile_error" and "probe denied denied read denied" in result.message, result.message
    assert not (cache / "keys" / "planted.pub").exists()


@needs_landlock
def test_a_confined_worker_still_verifies_a_kernel():
    # the worker imports torch and triton before confining itself, and runs the interpreter after
    result = verify(SOFTMAX, (KERNELS / "softmax.py").read_text(), device="cpu")
    assert result.accepted, result.message


def test_protected_paths_are_carved_out_of_an_allowed_tree(tmp_path):
    (tmp_path / "cache" / "keys").mkdir(parents=True)
    (tmp_path / "cache" / "regions").mkdir()
    (tmp_path / "scratch").mkdir()
    (tmp_path / "key.pem").write_text("k")
    (tmp_path / "other.txt").write_text("o")
    rules = dict(sandbox.grants({str(tmp_path): sandbox.READ}, [str(tmp_path / "cache"), str(tmp_path / "key.pem")]))
    assert set(rules) == {tmp_path / "scratch", tmp_path / "other.txt"}
    assert sandbox.grants({str(tmp_path / "cache" / "regions"): sandbox.READ}, [str(tmp_path / "cache")]) == []
