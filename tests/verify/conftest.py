"""The verifier's tests: one kernel-cache path for the tests that never touch the kernel cache.

The verifier neither reads nor writes the kernel cache, but its workers are confined away from it
(``pool.protected_paths``), and the pool starts a new worker instead of its spare when that path has changed
since the spare started. With the per-test cache directory of the top-level conftest, every test's first
verification therefore waited for a fresh worker (``import torch`` and triton, about 5 s here) while the spare
the previous test had started was thrown away. A module that marks itself with
``pytest.mark.usefixtures("one_kernel_cache_path")`` runs with one cache path for the whole session, so a
spare started in one test serves the next, as it does for the candidates of a tuning run.

Tests that read the worker's environment, the cache directory or its keys keep their own directory per
test, so their workers start after their own settings: test_worker_sandbox, and in test_verify_isolation
the environment test (its other tests take the fixture one by one). test_verify_harness makes a pool of
its own per test, so a spare never carries over there anyway.
"""

from __future__ import annotations

import pytest

from llm_inductor.compile import state as _state


@pytest.fixture(scope="session")
def _verifier_cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("verifier_llm_cache")


@pytest.fixture
def one_kernel_cache_path(_verifier_cache_dir, monkeypatch):
    monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(_verifier_cache_dir))
    _state.set_config(None)  # re-read from the environment
    _state.set_store(None)
    yield _verifier_cache_dir
    _state.set_config(None)
    _state.set_store(None)
