"""The cache tests' fixture for the shared tier: a real redis-server on 127.0.0.1, on a free port."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from llm_inductor.cache.trust import forget_reports
from support.ports import free_port


@pytest.fixture
def redis_server(tmp_path):
    """(url, process, client) of a fresh redis-server; skips without the redis package or the server."""
    redis = pytest.importorskip("redis", reason="the redis package is not installed (pip install 'llm-inductor[dev]')")
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(exe):
        pytest.skip("redis-server is not installed (apt-get install -y redis-server; .ci/run installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_timeout=0.5)
    deadline = time.time() + 10
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"redis-server on port {port} did not start")
            time.sleep(0.05)
    forget_reports()
    yield f"redis://127.0.0.1:{port}/0", proc, client
    proc.kill()
    proc.wait()
