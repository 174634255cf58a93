"""Parent side of the worker: start, talk to, time out, and replace worker processes.

A worker is started as ``python -m llm_inductor.verify.worker`` (never by
re-importing the user's script), in a new session so the whole process group
can be killed, in a scratch directory, with an environment scrubbed of API
keys, tokens, secrets and the signing key. The worker then confines itself
(``sandbox.py``, Landlock) away from the kernel cache, the signing key and the
trusted key files before it takes a request; a region file is copied into its
scratch directory for it. Each request has a wall-clock
limit; past it the worker is killed and the candidate rejected with
``timeout``. A worker that dies (segfault, abort, ``os._exit``, the OOM killer)
while it runs candidate code fails with ``crash`` or ``oom``; the parent carries on.
One that never becomes ready, or dies before it takes its first request, raises
``WorkerStartError``: no candidate code ran in it (engine.verify retries those).

One worker serves one candidate (its imports and patches die with it). After
the first verification in a process, a spare is started ahead so the next
candidate does not wait for ``import torch``.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = 180.0  # import torch + triton on a loaded 2-core machine, or CUDA init
_SECRET = re.compile(r"(API_KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY|ACCESS_KEY)", re.IGNORECASE)
_DROP = {"LLM_INDUCTOR_SIGNING_KEY", "LLM_INDUCTOR_REDIS_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"}
_SIGNALS = {
    signal.SIGSEGV: "segmentation fault",
    signal.SIGBUS: "bus error",
    signal.SIGABRT: "abort",
    signal.SIGILL: "illegal instruction",
    signal.SIGFPE: "floating point exception",
}


class WorkerFailure(Exception):
    """The worker could not answer: the candidate is rejected with ``reason``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class WorkerStartError(RuntimeError):
    """The worker never became ready, before any candidate was involved: a harness problem, not a rejection."""


def worker_caches() -> dict[str, str]:
    """The compile caches verification workers write, by environment variable: their own, never this process's.

    A worker may write its compile caches, and the candidate runs in it. Were they this process's (Triton's
    ``~/.triton``, Inductor's ``/tmp/torchinductor_<user>``, CUDA's ``~/.nv``), a candidate could plant a Triton
    launcher (a shared object the host loads) or an Inductor output module under a key that a later compile
    looks up, and run native code in the verifier, or in the user's next ``torch.compile``, unverified. The
    parent's caches are protected paths (``protected_paths``), so a worker cannot open them at all.
    """
    root = Path(tempfile.gettempdir()) / f"llm_inductor_worker_caches_{os.getuid()}"
    return {
        "TRITON_CACHE_DIR": str(root / "triton"),
        "TORCHINDUCTOR_CACHE_DIR": str(root / "inductor"),
        "CUDA_CACHE_PATH": str(root / "nv"),
    }


def scrubbed_env(device: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP and not _SECRET.search(k)}
    env.update(worker_caches())
    if device == "cpu":
        env["TRITON_INTERPRET"] = "1"
    else:
        env.pop("TRITON_INTERPRET", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # a segfault leaves a Python traceback in the log
    return env


def protected_paths() -> list[str]:
    """What a worker must never open: the kernel cache (its keys and database), the signing key, trusted keys,
    and this process's compile caches (Triton's, Inductor's, CUDA's: ``worker_caches``).

    From the environment (the worker may start before any config is known); the home directory,
    where the default cache lives, is out of a worker's reach anyway (``sandbox.worker_trees``).
    """
    from llm_inductor._errors import LLMInductorError
    from llm_inductor.config import Config

    try:
        cfg = Config.load()[0]
    except LLMInductorError:
        cfg = Config()
    paths = {str(cfg.cache_path), str(Config().cache_path), *cfg.trusted_keys}
    if cfg.signing_key:
        paths.add(cfg.signing_key)
    if os.environ.get("TRITON_CACHE_DIR") != worker_caches()["TRITON_CACHE_DIR"]:  # not from inside a worker
        from llm_inductor.verify.sandbox import writable_caches

        paths.update(writable_caches())  # this process's compile caches (worker_caches says why)
    return sorted(os.path.realpath(os.path.expanduser(p)) for p in paths)


_said_unconfined: list[str] = []


def scratch_root(device: str) -> str | None:
    """Tensors cross between the processes through files: on a GPU host they can be gigabytes,
    so they go to /dev/shm (memory) when it has room; containers often give it only 64 MB."""
    if device == "cuda" and os.path.isdir("/dev/shm"):
        try:
            if shutil.disk_usage("/dev/shm").free > 32 << 30:
                return "/dev/shm"
        except OSError:
            pass
    return None


class Worker:
    def __init__(self, device: str) -> None:
        self.device = device
        self.dir = Path(tempfile.mkdtemp(prefix="llm_inductor_verify_", dir=scratch_root(device)))
        self.log_path = self.dir / "worker.log"
        self._log = open(self.log_path, "wb")
        self.protect = protected_paths()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llm_inductor.verify.worker",
                "--device",
                device,
                *(a for p in self.protect for a in ("--protect", p)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=self.dir,
            env=scrubbed_env(device),
            start_new_session=True,
        )
        self._buf = b""
        self.ready: dict[str, Any] | None = None
        self.sent = 0  # requests taken: before the first, nothing of a candidate's has run here

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        if self.ready is None:
            try:
                self.ready = self._read(timeout, "worker startup")
            except WorkerFailure as e:
                raise WorkerStartError(
                    f"the verification worker did not start ({e}); run 'python -m llm_inductor.verify.worker "
                    f"--device {self.device}' to see why"
                ) from None
            confined = str(self.ready.get("sandbox", "off: an older worker"))
            if confined.startswith("off") and not _said_unconfined:
                _said_unconfined.append(confined)
                log.warning(
                    "llm_inductor: verification workers run unconfined (%s): candidate code can read what "
                    "you can, the signing key included; only the environment is scrubbed",
                    confined[5:],
                )

    def request(self, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.wait_ready()
        if msg.get("op") == "load":
            msg = {**msg, "region": self._stage(msg["region"])}
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            died = self._died("sending a request")
            if not self.sent:
                raise WorkerStartError(f"the verification worker died before its first request: {died}") from None
            raise died from None
        self.sent += 1
        return self._read(timeout, f"step '{msg.get('op')}'")

    def _stage(self, region: str) -> str:
        """A copy of the region file and its sidecar in the scratch directory: the confined worker cannot read
        them where they are (the kernel cache, the user's home)."""
        from llm_inductor.passes.regionfile import sidecar_of

        src = Path(region)
        folder = self.dir / "region"
        folder.mkdir(exist_ok=True)
        for f in (src, sidecar_of(src)):
            if f.is_file():
                shutil.copyfile(f, folder / f.name)
        return str(folder / src.name)

    def _read(self, timeout: float, what: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise WorkerFailure("timeout", f"{what} ran past its {timeout:.0f} s limit; the worker was killed")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise self._died(what)
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def _died(self, what: str) -> WorkerFailure:
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.returncode
        tail = self.log_tail()
        if code is not None and code < 0:
            sig = -code
            if sig == signal.SIGKILL:
                return WorkerFailure("oom", f"the worker was killed during {what} (SIGKILL: likely the OOM killer)")
            name = _SIGNALS.get(signal.Signals(sig), signal.Signals(sig).name)
            return WorkerFailure("crash", f"the worker died during {what}: {name}. {tail}")
        return WorkerFailure("crash", f"the worker exited with code {code} during {what}. {tail}")

    def log_tail(self, lines: int = 6) -> str:
        """The worker's last words: faulthandler's fatal error line and the candidate's frames first."""
        try:
            text = [line.strip() for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return ""
        key = [line for line in text if line.startswith("Fatal Python error") or "candidate.py" in line]
        return " | ".join(key[:lines] or text[-lines:])[:1200]

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None and self.ready is not None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(b'{"op": "bye"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()
        for f in (self.proc.stdin, self.proc.stdout, self._log):
            try:
                f.close()  # type: ignore[union-attr]
            except OSError:
                pass
        for p in sorted(self.dir.glob("**/*"), reverse=True):
            try:
                p.unlink() if p.is_file() else p.rmdir()
            except OSError:
                pass
        try:
            self.dir.rmdir()
        except OSError:
            pass


class Pool:
    """Hands out fresh workers; keeps one spare started ahead once a process has verified before."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spare: dict[str, Worker] = {}
        self._taken: dict[str, int] = {}

    def take(self, device: str, alone: bool = False) -> Worker:
        """A fresh worker. ``alone``, for a retry after a harness failure or an out-of-memory: a new process even
        where a spare is ready (it was started beside the failure), and no spare started beside it."""
        with self._lock:
            w = self._spare.pop(device, None)
            self._taken[device] = self._taken.get(device, 0) + 1
            # a spare confined before the cache or key settings changed would keep the new ones in reach
            if alone or w is None or w.proc.poll() is not None or w.protect != protected_paths():
                if w is not None:
                    w.close()
                w = Worker(device)
            if self._taken[device] > 1 and not alone:
                self._spare[device] = Worker(device)
        return w

    def shutdown(self) -> None:
        with self._lock:
            spares, self._spare = list(self._spare.values()), {}
        for w in spares:
            w.close()


POOL = Pool()
atexit.register(POOL.shutdown)
