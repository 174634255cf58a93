"""Candidates that crash, hang, run too long or exhaust memory are rejected, and this process survives."""

from __future__ import annotations

import os

import pytest

from llm_inductor.config import Config
from llm_inductor.verify.engine import verify
from llm_inductor.verify.pool import scrubbed_env
from support.paths import ADVERSARIAL, KERNELS, REGIONS

SOFTMAX = REGIONS / "region_softmax.py"

# One kernel-cache path for the session, so a verification takes the spare worker the last one started
# (tests/verify/conftest.py says why). Not for test_worker_environment_has_no_secrets: it sets the secrets
# before it verifies, and a spare started earlier would not have seen them.
reuse_spare = pytest.mark.usefixtures("one_kernel_cache_path")


def cheat(name: str) -> str:
    return (ADVERSARIAL / f"{name}.py").read_text()


def short_timeout() -> Config:
    # Long enough for a loaded 2-core CI machine to import a candidate and run a draw of a
    # correct kernel (well under a second here), short enough to keep the suite fast.
    return Config.load()[0].replace(verify_timeout=8.0)


@pytest.mark.parametrize(
    "name, why", [("crash_exit", "exited with code 3"), ("abort", 'candidate.py", line 18 in forward')]
)
@reuse_spare
def test_a_dying_worker_rejects_the_candidate(name, why):
    pid = os.getpid()
    result = verify(SOFTMAX, cheat(name), device="cpu", static_policy=False)
    assert os.getpid() == pid
    assert result.reason == "crash" and why in result.message  # abort: faulthandler names the candidate's line
    assert result.check("worker").passed is False


@pytest.mark.parametrize("name", ["hang", "slow_kernel"])
@reuse_spare
def test_hanging_and_slow_candidates_time_out(name):
    result = verify(SOFTMAX, cheat(name), device="cpu", config=short_timeout())
    assert result.reason == "timeout", result.message
    assert "8 s limit" in result.message


@reuse_spare
def test_wild_store_is_rejected_whatever_the_mechanism():
    # Under the CPU interpreter a store 2^40 elements away may segfault or scribble; on a GPU it
    # is an illegal memory access. Any of these rejects it; none may take this process down.
    result = verify(SOFTMAX, cheat("wild_store"), device="cpu")
    assert not result.accepted
    assert result.reason in {"crash", "runtime_error", "wrong_values", "unwritten_output", "nan_mismatch"}


@reuse_spare
def test_out_of_memory_is_its_own_reason():
    result = verify(SOFTMAX, cheat("oom"), device="cpu")
    assert result.reason == "oom" and "line 13" in result.message
    # An out-of-memory may be the machine's: it became the candidate's by happening again when run alone.
    assert "the same again when run alone" in result.message and "try 1: oom" in result.check("harness").detail


@reuse_spare
def test_the_parent_keeps_going_after_a_crash():
    assert verify(SOFTMAX, cheat("abort"), device="cpu", static_policy=False).reason == "crash"
    good = verify(SOFTMAX, (KERNELS / "softmax.py").read_text(), device="cpu")
    assert good.accepted, good.feedback()


def test_worker_environment_has_no_secrets(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    monkeypatch.setenv("HF_TOKEN", "hf-secret")
    monkeypatch.setenv("LLM_INDUCTOR_SIGNING_KEY", "/keys/private.pem")
    monkeypatch.setenv("MY_SERVICE_SECRET", "s3")
    env = scrubbed_env("cpu")
    assert not {"OPENAI_API_KEY", "HF_TOKEN", "LLM_INDUCTOR_SIGNING_KEY", "MY_SERVICE_SECRET"} & set(env)
    assert env["TRITON_INTERPRET"] == "1" and env["PATH"] == os.environ["PATH"]
    # And inside a real worker: a candidate that reads the environment finds nothing.
    spy = (
        (KERNELS / "softmax.py")
        .read_text()
        .replace(
            "def forward(x):\n",
            "import os\n\n\ndef forward(x):\n"
            "    raise RuntimeError('seen: ' + repr([os.environ.get(k) for k in "
            "('OPENAI_API_KEY', 'HF_TOKEN', 'LLM_INDUCTOR_SIGNING_KEY')]))\n",
        )
    )
    result = verify(SOFTMAX, spy, device="cpu", static_policy=False)
    assert result.reason == "runtime_error"
    assert "seen: [None, None, None]" in result.message


def test_a_worker_that_cannot_start_is_a_harness_error_not_a_rejection(monkeypatch):
    from llm_inductor.verify import engine, pool

    monkeypatch.setattr(engine, "POOL", pool.Pool())
    monkeypatch.setattr(pool.sys, "executable", "/bin/false")  # the worker dies before it is ready
    result = verify(SOFTMAX, (KERNELS / "softmax.py").read_text(), device="cpu")
    assert result.harness_failure and not result.accepted and result.reason == "harness:worker_start"
    assert "did not start" in result.message and f"all {1 + engine.HARNESS_RETRIES} tries" in result.message
    assert [c.name for c in result.checks] == ["harness"]  # no check of the candidate's ran, none failed


@pytest.mark.parametrize("native", [False, True])
def test_inductor_pool_timer_threads_are_not_the_candidates(native):
    """Inductor's compile-pool timer restarts whenever the pool is used again; that is not a candidate's thread.

    On the H200 the post-timing check took the timer (started by the worker's own Inductor
    compile) for the candidate's and rejected correct kernels as 'thread'. A Timer carrying a
    function that is not the pool's own is still counted, and so is any other thread.
    """
    import threading

    from torch._inductor.compile_worker.timer import Timer

    from llm_inductor.verify.guard import Tripwires

    tw = Tripwires(native=native)
    # Long enough that a loaded CI machine cannot see a timer expire (and its thread end) mid-test;
    # quit() below ends them within a second.
    pool_timer = Timer(5.0, lambda: None)  # only its bound method is used: the pool passes its own
    timers = [Timer(5.0, pool_timer.quit), Timer(5.0, lambda: None)]  # the pool's kind, then a disguise
    stop = threading.Event()
    try:
        timers[0].record_call()
        assert tw.new_threads() == 0 and tw.new_thread_names() == []
        timers[1].record_call()
        assert tw.new_threads() == 1 and tw.new_thread_names() == ["subproc_worker_timer"]
        threading.Thread(target=stop.wait, name="candidate_thread", daemon=True).start()
        assert tw.new_threads() == 2 and tw.new_thread_names() == ["candidate_thread", "subproc_worker_timer"]
    finally:
        stop.set()
        for t in (*timers, pool_timer):
            t.quit()
