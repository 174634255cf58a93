"""End to end on the CPU (LLM_INDUCTOR_INTERPRET=1): `cache add` on one machine, a pack, a hit on another.

"Machines" are cache directories; every compile runs in a fresh process, so
nothing is served from memory. The region comes from compiling the tiny RMSNorm
model (tests/data/cache_data/compile_tiny.py); the kernel is tests/data/cache_data/rmsnorm_candidate.py.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from llm_inductor.cache import sign
from llm_inductor.cache.trust import current_versions, forget_reports
from llm_inductor.cli import main
from support.cache_entries import open_test_store
from support.paths import CACHE_DATA, TESTS

pytestmark = pytest.mark.slow


def _env(root: Path, cache: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_INDUCTOR_", "OPENAI_", "TRITON_INTERPRET"))}
    env.update(
        LLM_INDUCTOR_CACHE_DIR=str(root / cache),
        TORCHINDUCTOR_CACHE_DIR=str(root / "inductor"),
        LLM_INDUCTOR_MIN_REGION_US="0",
        PYTHONPATH=str(TESTS),
        **extra,
    )
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)


def _compile(env: dict[str, str]) -> dict:
    proc = _run([str(CACHE_DATA / "compile_tiny.py")], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cache(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return _run(["-m", "llm_inductor.cli", "cache", *args], env)


@pytest.fixture(scope="module")
def machine_a(tmp_path_factory):
    """Machine A: compile (writes the region file), `cache add` the kernel, export a pack."""
    pytest.importorskip("llm_inductor.verify.engine", reason="the verifier has not landed yet")
    root = tmp_path_factory.mktemp("e2e")
    first = _compile(_env(root, "A", LLM_INDUCTOR_INTERPRET="1"))
    assert first["stats"]["pending"] == 1 and first["stats"]["substituted"] == 0
    (region,) = (root / "A" / "regions").glob("region_*.py")
    pack = root / "team.jsonl.gz"
    with pytest.MonkeyPatch.context() as mp:  # the CLI in this process: no interpreter start-up per command
        mp.setenv("LLM_INDUCTOR_CACHE_DIR", str(root / "A"))
        mp.setenv("LLM_INDUCTOR_INTERPRET", "1")
        assert main(["cache", "add", str(region), str(CACHE_DATA / "rmsnorm_candidate.py")]) == 0
        assert main(["cache", "export", str(pack)]) == 0
    return root, region, pack


class _CountingEndpoint(http.server.BaseHTTPRequestHandler):
    calls: list[str] = []

    def do_POST(self):  # noqa: N802
        _CountingEndpoint.calls.append(self.path)
        self.send_response(500)
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *args):
        pass


def test_a_fresh_process_on_another_machine_hits_with_zero_provider_calls(machine_a):
    root, region, pack = machine_a
    trust_a = str(root / "A" / "keys" / "local.pub")
    env_b = _env(root, "B", LLM_INDUCTOR_TRUSTED_KEYS=trust_a, LLM_INDUCTOR_INTERPRET="1")
    imported = _cache(env_b, "import", str(pack))  # a real `llm-inductor` process: exit code and output
    assert imported.returncode == 0 and "imported 1 entry (1 served here" in imported.stdout, imported.stderr
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CountingEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1"
        out = _compile({**env_b, "OPENAI_BASE_URL": endpoint, "OPENAI_API_KEY": "test-key"})
    finally:
        server.shutdown()
    assert _CountingEndpoint.calls == []
    stats = out["stats"]
    assert (stats["hits"], stats["substituted"], stats["misses"], stats["fallbacks"]) == (1, 1, 0, 0), stats
    assert stats.get("kernel_calls", 1) >= 1
    assert out["max_err"] < 1e-5  # fp32 RMSNorm of 33 elements: a few ulps
    assert len(out["kernels"]) == 1  # the kernel module was written and imported from B's cache


@pytest.mark.parametrize("why", ["untrusted_key", "torch_version"])
def test_entry_is_a_miss_until_cache_verify_re_verifies_it(machine_a, tmp_path, monkeypatch, why):
    root, _, pack = machine_a
    forget_reports()
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(tmp_path / "C"))
    monkeypatch.setenv("LLM_INDUCTOR_INTERPRET", "1")
    assert main(["cache", "import", str(pack)]) == 0  # signed by A, whose key C does not trust
    store = open_test_store(tmp_path / "C", policy=None)
    (original,) = store.entries()
    if why == "torch_version":  # an entry C itself signed, made under another torch
        store.remove([original.entry_id])
        older = dataclasses.replace(
            original, versions={**original.versions, "torch": "2.9.1"}, signature=None, signer=None
        )
        original = store.put(older)
    assert str(store.judge(original)).startswith(why)
    # a compile on C misses, says why, and records the region: `cache verify` verifies at its sizes.
    # Inductor's cache is the module's, as for machine B: the llm pass runs before Inductor looks it up.
    env_c = {**_env(tmp_path, "C", LLM_INDUCTOR_INTERPRET="1"), "TORCHINDUCTOR_CACHE_DIR": str(root / "inductor")}
    compiled = _run([str(CACHE_DATA / "compile_tiny.py")], env_c)
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    assert json.loads(compiled.stdout.strip().splitlines()[-1])["stats"]["substituted"] == 0
    assert "llm-inductor cache verify" in compiled.stderr and original.key[:16] in compiled.stderr
    assert main(["cache", "verify"]) == 0
    hit = open_test_store(tmp_path / "C", policy=None).lookup(original.key)
    assert hit is not None and hit.kernel_source == original.kernel_source
    assert hit.versions == current_versions("cpu")
    assert hit.signer == sign.local_key(tmp_path / "C").public.fingerprint  # re-signed with C's local key
    assert hit.provenance["reverified"]["from"] == original.entry_id
    assert hit.verification["accepted"] is True


def test_cache_add_rejects_a_wrong_kernel(machine_a, tmp_path, monkeypatch, capsys):
    _, region, _ = machine_a
    wrong = tmp_path / "wrong.py"
    wrong.write_text((CACHE_DATA / "rmsnorm_candidate.py").read_text().replace("mean_sq + eps", "mean_sq + 0.5"))
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(tmp_path / "D"))
    monkeypatch.setenv("LLM_INDUCTOR_INTERPRET", "1")
    assert main(["cache", "add", str(region), str(wrong)]) == 1
    assert "rejected (wrong_values)" in capsys.readouterr().err
    assert open_test_store(tmp_path / "D").local.rows() == []
