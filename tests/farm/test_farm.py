"""The tuning farm (search/farm.py): verifications as Dask tasks on worker processes of their own.

Two CPU workers under the Triton interpreter stand in for two GPUs. They verify a loopback LLM's answers in
parallel and store what the serial path stores; a worker killed mid-task costs a retry, never a verdict; a
candidate that kills its own sandbox is still a crash. The address and cluster checks refuse what would let
others run code on the workers, or compare timings across GPU models.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

distributed = pytest.importorskip("distributed")
import dask  # noqa: E402

from llm_inductor._errors import UsageError  # noqa: E402
from llm_inductor.cache.store import MemoryStore  # noqa: E402
from llm_inductor.config import Config  # noqa: E402
from llm_inductor.search import farm as farm_mod  # noqa: E402
from llm_inductor.search.farm import Farm, check_address, choose  # noqa: E402
from llm_inductor.search.search_state import load_state  # noqa: E402
from llm_inductor.search.tune import tune  # noqa: E402
from llm_inductor.search.verdict import is_harness, verify_candidate  # noqa: E402
from support.loopback import LoopbackLLM, Reply, sequence  # noqa: E402
from support.paths import ADVERSARIAL, KERNELS, REGIONS, ROOT  # noqa: E402
from support.search import GOOD, WRONG, answer, copy_region, read_jsonl, shared_region  # noqa: E402

SOFTMAX = REGIONS / "region_softmax.py"
TESTS = ROOT / "tests"


@pytest.fixture(scope="module")
def farm():
    """Two CPU workers; a task survives one lost worker (allowed-failures 1) and not two."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), saved) if p)  # support.farm_engine
    os.environ["LLM_INDUCTOR_INTERPRET"] = "1"
    try:
        with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
            f = Farm.local(2, device="cpu", stream=None)
        yield f
        f.close()
    finally:
        os.environ.pop("LLM_INDUCTOR_INTERPRET", None)
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def _cfg() -> Config:
    return Config.load({"interpret": True})[0]


def _pids(farm: Farm) -> dict[str, int]:
    info = farm.client.scheduler_info()["workers"]
    return {str(info[a]["name"]): pid for a, pid in farm.client.run(os.getpid).items()}


def _kill_where_running(farm: Farm, times: int) -> list[str]:
    """Kill the worker process that runs the farm's only task, ``times`` times over (each after the scheduler
    gave the task to a worker again); the nannies start new ones."""
    killed = []
    deadline = time.time() + 120
    while len(killed) < times and time.time() < deadline:
        busy = [a for a, keys in farm.client.processing().items() if keys]
        if busy:
            info = farm.client.scheduler_info()["workers"]
            name = str(info[busy[0]]["name"])
            pid = farm.client.run(os.getpid, workers=[busy[0]])[busy[0]]
            time.sleep(1.0)  # well into the verification (it takes seconds under the interpreter)
            os.kill(pid, signal.SIGKILL)
            killed.append(name)
            while busy[0] in farm.client.scheduler_info()["workers"] and time.time() < deadline:
                time.sleep(0.2)  # until the scheduler saw it die
        time.sleep(0.2)
    return killed


def _in_thread(fn, *args):
    box: dict = {}
    t = threading.Thread(target=lambda: box.setdefault("out", fn(*args)))
    t.start()
    return t, box


def test_a_worker_killed_mid_task_costs_a_retry_not_a_verdict(farm):
    t, box = _in_thread(farm, str(SOFTMAX), (KERNELS / "softmax.py").read_text(), _cfg())
    killed = _kill_where_running(farm, 1)
    t.join(300)
    assert len(killed) == 1
    result = box["out"]
    assert result.accepted and result.reason == "ok", result.feedback()  # judged on the next worker
    farm.client.wait_for_workers(2, timeout=120)  # the nanny started a new one


def test_a_task_that_outlives_every_try_is_a_harness_failure(farm):
    t, box = _in_thread(verify_candidate, farm, str(SOFTMAX), (KERNELS / "softmax.py").read_text(), _cfg(), None)
    killed = _kill_where_running(farm, 2)  # allowed-failures 1: the second death ends the task
    t.join(300)
    assert len(killed) == 2
    out = box["out"]
    assert is_harness(out["outcome"]) and out["outcome"] == "harness:worker_lost", out
    assert not out["accepted"] and "died with it in flight" in out["message"]
    farm.client.wait_for_workers(2, timeout=120)


def test_a_candidate_that_kills_its_sandbox_is_a_crash_and_the_worker_lives(farm):
    before = _pids(farm)
    from support.farm_engine import without_policy

    farm.engine = without_policy
    try:
        result = farm(str(SOFTMAX), (ADVERSARIAL / "crash_exit.py").read_text(), _cfg())
    finally:
        farm.engine = None
    assert result.reason == "crash" and "exited with code 3" in result.message
    assert _pids(farm) == before  # the sandbox died, not the Dask worker


def test_the_farm_verifies_a_loopback_llms_answers_in_parallel_and_stores_what_the_serial_path_stores(
    farm, tmp_path, monkeypatch
):
    monkeypatch.setenv("LLM_INDUCTOR_INTERPRET", "1")
    outcomes, winners = {}, {}
    for path in ("serial", "farm"):
        cache = tmp_path / path
        monkeypatch.setenv("LLM_INDUCTOR_CACHE_DIR", str(cache))
        region = copy_region(shared_region(tmp_path), cache)
        with LoopbackLLM(sequence(Reply.text(answer(WRONG)), Reply.text(answer(GOOD)))) as llm:
            monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
            monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
            cfg, _ = Config.load({"model": "loopback-model", "candidates": 2, "rounds": 1, "verify_parallel": 1})
            store = MemoryStore()
            done_before = dict(farm._done)
            report = tune([region], config=cfg, store=store, progress=False, farm=farm if path == "farm" else None)
            assert len(llm.seen) == 2
        tried = read_jsonl(cache / "search" / "attempts.jsonl")
        outcomes[path] = sorted(a["outcome"] for a in tried)
        assert [r.outcome for r in report.rows] == ["winner"]
        entry = store.lookup(load_state(cfg, region.stem.removeprefix("region_")).key)
        winners[path] = entry.kernel_source if entry else None
        if path == "farm":
            state = load_state(cfg, region.stem.removeprefix("region_"))
            spans = [(a["verify_started"], a["verify_ended"]) for a in state.attempts]
            assert max(s for s, _ in spans) < min(e for _, e in spans)  # the two verifications overlapped
            assert {n: c - done_before.get(n, 0) for n, c in farm._done.items()} == {"gpu0": 1, "gpu1": 1}
    assert outcomes["farm"] == outcomes["serial"] == ["ok", "wrong_values"]
    assert winners["farm"] == winners["serial"] == GOOD


def test_progress_names_each_workers_gpu_and_work(farm):
    line = farm.progress_line()
    assert line.startswith("farm: gpu0 ") and " | gpu1 " in line and "running" in line and "done" in line
    assert farm.gpus == {"gpu0": "cpu", "gpu1": "cpu"} and farm.parallel == 2


# ---------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:8786", "127.0.0.1:8786", "tcp://localhost:1", "tcp://[::1]:1"])
def test_a_loopback_scheduler_is_accepted(address):
    assert check_address(address).startswith("tcp://")


def test_a_plain_tcp_scheduler_elsewhere_is_refused_unless_the_user_says_so():
    with pytest.raises(UsageError) as e:
        check_address("tcp://10.1.2.3:8786")
    assert "run code" in str(e.value) and "tls://" in str(e.value) and "--insecure-cluster" in str(e.value)
    assert check_address("tcp://10.1.2.3:8786", allow_insecure=True) == "tcp://10.1.2.3:8786"
    assert check_address("tls://10.1.2.3:8786") == "tls://10.1.2.3:8786"
    with pytest.raises(UsageError, match="use tcp://HOST:PORT"):
        check_address("ucx://10.1.2.3:8786")


def test_the_cli_refuses_an_insecure_cluster_before_anything_runs(tmp_path):
    from llm_inductor.cli import main

    assert main(["tune", str(SOFTMAX), "--cluster", "tcp://10.1.2.3:8786"]) == 2


def test_choose_defaults_to_no_farm_without_two_gpus_and_says_why_without_dask(monkeypatch, capsys):
    monkeypatch.setattr(farm_mod, "visible_gpus", lambda: 1)
    assert choose(None, None, "cuda") is None
    monkeypatch.setattr(farm_mod, "visible_gpus", lambda: 2)
    monkeypatch.setattr(farm_mod, "dask_available", lambda: False)
    assert choose(None, None, "cuda", stream=__import__("sys").stderr) is None
    assert "2 GPUs are visible, but Dask is not installed" in capsys.readouterr().err
    with pytest.raises(UsageError, match="only 2 GPU"):
        choose(None, 3, "cuda")
    with pytest.raises(UsageError, match="--farm -1"):
        choose(None, -1, "cpu")
    assert choose(None, 1, "cpu") is None  # one worker: verify in this process
    lazy = choose(None, 2, "cpu")
    assert lazy is not None and lazy.parallel == 2 and lazy._farm is None  # nothing started until a verification
    lazy.close()


def _cluster(**worker_kwargs):
    return distributed.LocalCluster(
        n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None, **worker_kwargs
    )


def test_a_cluster_without_gpu_resources_is_refused_with_the_fix():
    with _cluster() as cluster, pytest.raises(UsageError, match="--resources GPU=1"):
        Farm.connect(cluster.scheduler_address, stream=None)


def test_a_cluster_of_two_gpu_models_is_refused(monkeypatch):
    models = iter(["NVIDIA H200", "NVIDIA A100"])
    monkeypatch.setattr(farm_mod, "_gpu_name", lambda: next(models))
    with _cluster(resources={"GPU": 1}) as cluster, pytest.raises(UsageError, match="2 GPU models"):
        Farm.connect(cluster.scheduler_address, stream=None)
