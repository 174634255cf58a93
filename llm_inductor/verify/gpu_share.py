"""Sharing one GPU between verifications: timing alone, and admission by memory.

Several candidates are verified at once (``engine.verify_many``): their CPU-side
stages (the static policy, the worker's imports and the candidate's Triton
compiles, the draws and the checks) overlap on the machine's cores. Two rules
keep that from changing a verdict:

* **Timing gets the whole GPU.** Every GPU step (a worker request, the parent's
  Inductor reference) runs on the gate's shared side; a timing request takes its
  exclusive side, which waits until the shared steps in flight end and holds new
  ones back until it is done. Writers go first, so timing is never starved.
* **Admission by memory.** Each worker runs under a memory cap
  (``torch.cuda.set_per_process_memory_fraction``) derived from the region's working
  set, instead of a prediction of each candidate's peak; a verification is admitted
  only while the caps of those running fit the GPU's free memory. A retry after a
  harness failure or an out-of-memory asks for all of it: it runs alone.

On the CPU (the Triton interpreter) nothing is timed and memory is the host's: both
are no-ops there.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

HEADROOM = 0.9  # of the free memory measured when the first verification asks: CUDA contexts, fragmentation


class GpuGate:
    """A readers-writer lock that prefers writers: shared GPU steps, exclusive timing."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextlib.contextmanager
    def shared(self, device: str) -> Iterator[None]:
        if device != "cuda":
            yield
            return
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self, device: str) -> Iterator[None]:
        if device != "cuda":
            yield
            return
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class MemoryAdmission:
    """Admit verifications while the sum of their workers' caps fits the GPU's free memory."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._capacity: int | None = None
        self._used = 0

    def capacity(self) -> int:
        with self._cond:
            if self._capacity is None:
                import torch

                free, _ = torch.cuda.mem_get_info()
                self._capacity = int(free * HEADROOM)
            return self._capacity

    @contextlib.contextmanager
    def admit(self, device: str, nbytes: int, alone: bool = False) -> Iterator[int]:
        """Wait until ``nbytes`` fit beside what runs (all of it when ``alone``); yields the bytes granted."""
        if device != "cuda":
            yield nbytes
            return
        cap = self.capacity()
        want = cap if alone else min(nbytes, cap)
        with self._cond:
            while self._used and self._used + want > cap:
                self._cond.wait()
            self._used += want
        try:
            yield want
        finally:
            with self._cond:
                self._used -= want
                self._cond.notify_all()


GATE = GpuGate()
ADMISSION = MemoryAdmission()
