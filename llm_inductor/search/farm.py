"""The tuning farm: verifications as Dask tasks, one worker process per GPU, on one machine or many.

``llm-inductor tune`` verifies on every visible GPU when there are two or more (a ``LocalCluster``
scheduler in this process, and one ``dask worker`` process per GPU, started with its own
``CUDA_VISIBLE_DEVICES``), or on a running cluster (``--cluster ADDRESS``). A task is one
candidate's verification (``verdict.default_verifier``), and needs ``1/slots`` of a worker's ``GPU``
resource: ``slots`` candidates share a GPU as in the single-GPU path (their CPU stages overlap; the
engine's ``gpu_share`` gate times one at a time in each worker process).

- **Isolation.** The task runs in the Dask worker, which is our code; the candidate runs only in the
  sandboxed verification subprocess that the engine starts from there, never in the worker (which
  holds a client connection and could reach other tasks). The worker processes are started as
  ``python -m distributed.cli.dask_worker``: they never re-import the user's ``__main__``.
- **Timing.** A verification times its candidate interleaved with Inductor's code on one GPU, so a
  speed verdict never compares two GPUs. A cluster whose workers have more than one GPU model is
  refused.
- **Failures.** A worker (or its machine) that dies with a task in flight costs the task a retry on
  another worker (the scheduler's ``allowed-failures``); a task that outlives every try comes back as
  ``harness:worker_lost``, never a verdict. A candidate that kills its own sandbox is the engine's
  ``crash`` verdict, and the worker lives on: the two are told apart by where the process died.
- **Security.** A plain ``tcp://`` scheduler lets anyone who reaches it run code on every worker.
  Only a loopback one is accepted, unless the user says ``allow_insecure``; across machines use
  ``tls://`` with Dask's TLS configuration (``distributed.comm.tls.*``).
- **Progress.** Every ``PROGRESS_SECONDS`` while tasks are in flight, one line per run of changes:
  each worker's GPU, its running and finished verifications.

Dask is optional (``pip install 'llm_inductor[farm]'``): without it, tuning stays on one GPU.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from llm_inductor._errors import UsageError
from llm_inductor.config import Config
from llm_inductor.passes import regionfile
from llm_inductor.verify.result import VerifyResult

log = logging.getLogger(__name__)

Engine = Callable[[str, str, Config, str], VerifyResult]  # (region_path, source, cfg, inductor_mode), on a worker

STARTUP_SECONDS = 180.0  # workers importing torch and distributed on a loaded machine
PROGRESS_SECONDS = 15.0
INSTALL_HINT = "pip install 'llm_inductor[farm]' (dask and distributed)"
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def dask_available() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as e:
        raise UsageError(f"the tuning farm needs Dask: {INSTALL_HINT}") from e
    return distributed


def is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_address(address: str, allow_insecure: bool = False) -> str:
    """The scheduler address, or a UsageError for one that would let others run code here."""
    scheme = address.split("://", 1)[0] if "://" in address else "tcp"
    if scheme not in ("tcp", "tls", "inproc"):
        raise UsageError(f"--cluster {address}: use tcp://HOST:PORT (loopback only) or tls://HOST:PORT")
    host = urlsplit(address if "://" in address else f"tcp://{address}").hostname or ""
    if scheme == "tcp" and not is_loopback(host) and not allow_insecure:
        raise UsageError(
            f"--cluster {address}: a plain tcp:// scheduler on {host or '?'} lets anyone who can reach it run code "
            "on every worker. Use tls://HOST:PORT with Dask's TLS configuration (distributed.comm.tls.ca-file, "
            ".scheduler.cert, .worker.cert, .client.cert), or pass --insecure-cluster if that network is yours alone."
        )
    return address if "://" in address else f"tcp://{address}"


# ---------------------------------------------------------------------------------------------- the task


def _payload(region_path: str, source: str, cfg: Config, mode: str, remote: bool) -> dict[str, Any]:
    """What a worker needs: the region file and its sidecar as text (a remote worker has no access to
    ours), the candidate, and the config without the store's secrets (a worker never writes the store)."""
    path = Path(region_path)
    return {
        "name": path.name,
        "script": path.read_text(),
        "sidecar": regionfile.sidecar_of(path).read_text(),
        "source": source,
        "cfg": cfg.replace(redis_url=None, signing_key=None),
        "mode": mode,
        "remote": remote,
    }


def _stage_region(root: Path, payload: dict[str, Any]) -> Path:
    """The region's files in the worker's own folder, one per region content (the engine's per-region work,
    such as Inductor's compiled baseline, is then found again by the region's next candidates)."""
    import hashlib

    digest = hashlib.sha256((payload["script"] + payload["sidecar"]).encode()).hexdigest()[:16]
    folder = root / "regions" / digest
    script = folder / payload["name"]
    if not script.is_file():
        tmp = Path(tempfile.mkdtemp(dir=root, prefix="region-"))
        (tmp / payload["name"]).write_text(payload["script"])
        regionfile.sidecar_of(tmp / payload["name"]).write_text(payload["sidecar"])
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.rename(folder)
        except OSError:  # another thread staged it first
            shutil.rmtree(tmp, ignore_errors=True)
    return script


def verify_task(payload: dict[str, Any], engine: Engine | None = None) -> dict[str, Any]:
    """Runs in a Dask worker: one verification, as a dict (``VerifyResult.to_dict``) with the worker's name.
    ``engine`` (default: ``verdict.default_verifier``) must be importable there: it travels by reference."""
    from distributed import get_worker

    from llm_inductor.search.verdict import default_verifier

    engine = engine or default_verifier
    worker = get_worker()
    root = Path(worker.local_directory) / "llm_inductor"
    root.mkdir(parents=True, exist_ok=True)
    cfg = payload["cfg"]
    if payload["remote"]:  # the caller's paths mean nothing on this machine
        cfg = cfg.replace(cache_dir=str(root / "cache"))
    result = engine(str(_stage_region(root, payload)), payload["source"], cfg, payload["mode"])
    out = result.to_dict()
    out["farm_worker"] = worker.name
    return out


def _default_slots(device: str, workers: int) -> int:
    """Candidates each worker verifies at once: the one-GPU engine's parallelism, spread over the workers."""
    from llm_inductor.verify.engine import default_parallel

    return max(1, default_parallel(device) // workers) if device == "cuda" else 1


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------------------------------------- the farm


@dataclass
class Farm:
    """A verifier (``verdict.Verifier``) whose verifications run on a Dask cluster; start with ``local`` or
    ``connect``. Usable as a context manager: ``close`` stops what it started."""

    client: Any
    slots: int
    remote: bool
    gpus: dict[str, str] = field(default_factory=dict)  # worker name -> GPU model
    stream: TextIO | None = None
    engine: Engine | None = None  # what a task runs (tests: the engine with other options); default_verifier
    _cluster: Any = None
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _scratch: str | None = None
    _done: dict[str, int] = field(default_factory=dict)  # worker name -> verifications it returned
    _lost: int = 0  # verifications that outlived every worker that took them
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _last_line: str = ""

    # ------------------------------------------------------------------ starting
    @classmethod
    def local(
        cls, workers: int, device: str = "cuda", slots: int | None = None, stream: TextIO | None = sys.stderr
    ) -> Farm:
        """A scheduler in this process and ``workers`` worker processes on this machine: one per GPU (``device``
        "cuda": GPU i gets ``CUDA_VISIBLE_DEVICES=i``), or, under the interpreter ("cpu"), CPU workers."""
        distributed = _distributed()
        if workers < 1:
            raise UsageError(f"a farm needs at least one worker, not {workers}")
        slots = slots if slots is not None else _default_slots(device, workers)
        cluster = distributed.LocalCluster(
            n_workers=0, host="127.0.0.1", scheduler_port=0, dashboard_address=None, processes=True
        )
        scratch = tempfile.mkdtemp(prefix="llm_inductor-farm-")
        farm = cls(client=distributed.Client(cluster, set_as_default=False), slots=slots, remote=False, stream=stream)
        farm._cluster, farm._scratch = cluster, scratch
        try:
            for i in range(workers):
                farm._procs.append(_start_worker(cluster.scheduler_address, f"gpu{i}", i, device, slots, scratch))
            farm._wait(workers)
        except BaseException:
            farm.close()
            raise
        farm._start_progress()
        return farm

    @classmethod
    def connect(
        cls, address: str, allow_insecure: bool = False, slots: int = 1, stream: TextIO | None = sys.stderr
    ) -> Farm:
        """A running cluster: its workers must declare a ``GPU`` resource (``dask worker ADDR --resources GPU=1``)."""
        distributed = _distributed()
        address = check_address(address, allow_insecure)
        try:
            client = distributed.Client(address, timeout=30, set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise UsageError(f"--cluster {address}: no Dask scheduler answered ({e}); is it running?") from e
        farm = cls(client=client, slots=slots, remote=True, stream=stream)
        try:
            farm._wait(1)
        except BaseException:
            farm.close()
            raise
        farm._start_progress()
        return farm

    def _wait(self, n: int) -> None:
        try:
            self.client.wait_for_workers(n, timeout=STARTUP_SECONDS)
        except TimeoutError as e:
            dead = [p.args[-1] for p in self._procs if p.poll() is not None]
            raise UsageError(
                f"the tuning farm's workers did not start within {STARTUP_SECONDS:g} s"
                + (f" (exited: {', '.join(map(str, dead))})" if dead else "")
            ) from e
        info = self.client.scheduler_info()["workers"]
        without = [w["name"] for w in info.values() if "GPU" not in (w.get("resources") or {})]
        if without:
            raise UsageError(
                f"the cluster's worker(s) {', '.join(map(str, without))} declare no GPU resource: start one worker "
                "per GPU with `CUDA_VISIBLE_DEVICES=i dask worker ADDRESS --resources GPU=1`"
            )
        self.gpus = {str(k): str(v) for k, v in self.client.run(_worker_gpu).values()}
        models = sorted(set(self.gpus.values()))
        if len(models) > 1:
            raise UsageError(
                f"the cluster's workers have {len(models)} GPU models ({', '.join(models)}): timings are compared "
                "only within one model; run one cluster per model"
            )

    @property
    def workers(self) -> int:
        return len(self.client.scheduler_info()["workers"])

    @property
    def parallel(self) -> int:
        """Verifications the farm takes at once: its workers times their slots."""
        return max(1, self.workers * self.slots)

    # ------------------------------------------------------------------ verifying
    def __call__(self, region_path: str, source: str, cfg: Config, inductor_mode: str | None = None) -> VerifyResult:
        from llm_inductor.search.verdict import baseline_mode

        distributed = _distributed()
        payload = _payload(region_path, source, cfg, inductor_mode or baseline_mode(region_path), self.remote)
        fut = self.client.submit(verify_task, payload, self.engine, resources={"GPU": 1.0 / self.slots}, pure=False)
        try:
            out = fut.result()
        except distributed.KilledWorker as e:
            with self._lock:
                self._lost += 1
            return VerifyResult(
                accepted=False,
                reason="harness:worker_lost",
                message=f"every farm worker that took this verification died with it in flight ({e})",
                device="cuda" if self.gpus and "cpu" not in self.gpus.values() else "cpu",
                harness_failure=True,
            )
        finally:
            fut.release()
        name = str(out.pop("farm_worker", "?"))
        with self._lock:
            self._done[name] = self._done.get(name, 0) + 1
        return VerifyResult.from_dict(out)

    def with_mode(self, inductor_mode: str) -> Any:
        return lambda region_path, source, cfg: self(region_path, source, cfg, inductor_mode)

    # ------------------------------------------------------------------ progress
    def activity(self) -> dict[str, dict[str, Any]]:
        """Per worker: its GPU, verifications running now and finished by this farm."""
        info = self.client.scheduler_info()["workers"]
        processing = self.client.processing()
        rows = {}
        for addr, w in info.items():
            name = str(w["name"])
            with self._lock:
                done = self._done.get(name, 0)
            rows[name] = {"gpu": self.gpus.get(name, "?"), "running": len(processing.get(addr, ())), "done": done}
        return rows

    def progress_line(self) -> str:
        parts = [f"{n} {r['running']} running, {r['done']} done" for n, r in sorted(self.activity().items())]
        lost = self._lost
        return "farm: " + " | ".join(parts) + (f" | {lost} lost to dead workers" if lost else "")

    def _start_progress(self) -> None:
        if self.stream is None:
            return
        models = sorted(set(self.gpus.values())) or ["?"]
        print(f"farm: {len(self.gpus)} worker(s) on {', '.join(models)}, {self.slots} slot(s) each", file=self.stream)

        def loop() -> None:
            while not self._stop.wait(PROGRESS_SECONDS):
                try:
                    line = self.progress_line()
                except Exception:  # the cluster is closing
                    return
                if line != self._last_line and self.stream is not None:
                    print(line, file=self.stream, flush=True)
                    self._last_line = line

        threading.Thread(target=loop, name="llm_inductor-farm-progress", daemon=True).start()

    # ------------------------------------------------------------------ stopping
    def close(self) -> None:
        self._stop.set()
        for closing in (self.client, self._cluster):
            if closing is not None:
                try:
                    closing.close()
                except Exception as e:  # a farm that fails to stop must not fail the run it served
                    log.debug("llm_inductor: closing the farm: %s", e)
        for p in self._procs:
            if p.poll() is None:
                p.terminate()
        for p in self._procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def __enter__(self) -> Farm:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _worker_gpu(dask_worker: Any) -> tuple[str, str]:
    return str(dask_worker.name), _gpu_name()


def _start_worker(
    address: str, name: str, index: int, device: str, slots: int, scratch: str
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["CUDA_VISIBLE_DEVICES"] = str(index) if device == "cuda" else ""
    folder = Path(scratch) / name
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--name", name]
    cmd += ["--nthreads", str(slots), "--resources", "GPU=1", "--no-dashboard", "--local-directory", str(folder)]
    cmd += ["--death-timeout", "60", "--nanny"]
    log_file = open(folder / "worker.log", "wb")  # noqa: SIM115 (kept open for the worker's life)
    return subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=folder)


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class LocalFarm:
    """``Farm.local``, started by the first verification that needs it (a run with nothing to verify starts
    no cluster); ``parallel`` is known before that."""

    def __init__(self, workers: int, device: str, slots: int | None = None, stream: TextIO | None = sys.stderr):
        _distributed()  # no Dask: say so now, not at the first verification
        slots = slots if slots is not None else _default_slots(device, workers)
        self.workers, self.device, self.slots, self.stream = workers, device, slots, stream
        self._farm: Farm | None = None
        self._lock = threading.Lock()

    @property
    def parallel(self) -> int:
        return self.workers * self.slots

    def started(self) -> Farm:
        with self._lock:
            if self._farm is None:
                self._farm = Farm.local(self.workers, self.device, self.slots, self.stream)
            return self._farm

    def __call__(self, region_path: str, source: str, cfg: Config, inductor_mode: str | None = None) -> VerifyResult:
        return self.started()(region_path, source, cfg, inductor_mode)

    def with_mode(self, inductor_mode: str) -> Any:
        return lambda region_path, source, cfg: self(region_path, source, cfg, inductor_mode)

    def close(self) -> None:
        with self._lock:
            if self._farm is not None:
                self._farm.close()
                self._farm = None


def choose(
    cluster: str | None, workers: int | None, device: str, allow_insecure: bool = False, stream: TextIO = sys.stderr
) -> Farm | LocalFarm | None:
    """The farm ``llm-inductor tune`` verifies on: the cluster at ``cluster``; ``workers`` local workers (0 or 1:
    none, verification stays in this process); by default one worker per visible GPU where there are two or
    more and Dask is installed."""
    if cluster:
        return Farm.connect(cluster, allow_insecure, stream=stream)
    if workers is None:
        gpus = visible_gpus() if device == "cuda" else 0
        if gpus < 2:
            return None
        if not dask_available():
            print(f"{gpus} GPUs are visible, but Dask is not installed: tuning uses one. {INSTALL_HINT}", file=stream)
            return None
        workers = gpus
    if workers < 0:
        raise UsageError(f"--farm {workers}: give a number of workers (0: verify in this process)")
    if device == "cuda" and workers > visible_gpus():
        raise UsageError(f"--farm {workers}: only {visible_gpus()} GPU(s) are visible here, one worker each")
    return LocalFarm(workers, device, stream=stream) if workers >= 2 else None
