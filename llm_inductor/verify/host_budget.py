"""Host memory for the parent's draws: admitted before they are built, so a large region cannot OOM-kill the tuner.

The parent builds every draw on the host (``draw_set``): make_inputs' float32 generator, the inputs kept
for the workers, and the float64 reference with float64 intermediates. At 16384 x 128256 that is about
17 GB per float64 intermediate, and four draws built at once took a 128 GB H200 host past its memory: the
kernel killed the whole ``tune`` process (``benchmarks/results/2026-12-01-h200-family-travel.md``). Since,
the references free each value at its last use, the transform works in chunks, and a built draw keeps its
inputs once, in the file the workers copy (tests/verify/test_reference_memory.py).

``HOST`` is one budget per process: 80% of the memory available when first used (``MemAvailable``). A
draw's build reserves its estimate (``build_bytes``) for as long as it runs; what a draw keeps (its
inputs and references) is held until its draw set forgets it. A build waits while other builds run; a
build that cannot fit even when nothing else is being built raises ``HostMemoryError``, a harness
failure (a ``MemoryError``: retried, reported, never a verdict on a candidate) naming the size.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

# Host bytes per element of a draw's inputs and outputs while it is built, for a region whose references the
# meta device cannot run (``draw_set.build_bytes`` measures the others): float32 generation (4) and the kept
# copy (2 for bf16), float64 inputs (8), and up to three float64 intermediates alive at once (24).
BYTES_PER_ELEMENT = 40
SHARE = 0.8


class HostMemoryError(MemoryError):
    """A draw that this host cannot build: a harness failure, named, never a candidate's verdict.

    ``retry_helps`` is False where no retry can make room: the draw, plus what its own round already
    holds, is more than the whole budget (the H200 once spent three tries, 230 s, on such a draw).
    """

    def __init__(self, message: str, retry_helps: bool = True) -> None:
        super().__init__(message)
        self.retry_helps = retry_helps


def available_bytes() -> int | None:
    """``MemAvailable`` from /proc/meminfo (Linux), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class HostBudget:
    def __init__(self, capacity: int | None = None) -> None:
        self._cond = threading.Condition()
        self._capacity = capacity
        self.used = 0  # bytes reserved by builds in flight plus bytes held by built draws
        self._building = 0

    @property
    def capacity(self) -> int | None:
        if self._capacity is None:
            free = available_bytes()
            self._capacity = int(SHARE * free) if free else 0
        return self._capacity or None  # 0: unknown, so unbounded

    @contextlib.contextmanager
    def build(self, nbytes: int, what: str, own_held: int = 0) -> Iterator[None]:
        """Reserve ``nbytes`` while a draw is built; wait for other builds, never for held draws.

        ``own_held``: bytes that the draw's own round holds (part of ``used``), which a retry of the same
        round does not release: where they and the draw exceed the budget, the error says no retry helps.
        """
        cap = self.capacity
        with self._cond:
            if cap is not None:
                while self.used + nbytes > cap and self._building:
                    self._cond.wait(timeout=5.0)
                if self.used + nbytes > cap:
                    hopeless = nbytes + own_held > cap
                    raise HostMemoryError(
                        f"{what} needs about {nbytes / 2**30:.1f} GiB of host memory to build, and "
                        f"{max(cap - self.used, 0) / 2**30:.1f} GiB of this host's {cap / 2**30:.1f} GiB budget is "
                        "free (80% of what was available)"
                        + (f", {own_held / 2**30:.1f} GiB of it held by its round's other draws" if own_held else "")
                        + ": run it on a host with more memory, or at smaller sizes",
                        retry_helps=not hopeless,
                    )
            self.used += nbytes
            self._building += 1
        try:
            yield
        finally:
            with self._cond:
                self.used -= nbytes
                self._building -= 1
                self._cond.notify_all()

    def hold(self, nbytes: int) -> None:
        with self._cond:
            self.used += nbytes

    def release(self, nbytes: int) -> None:
        with self._cond:
            self.used = max(0, self.used - nbytes)
            self._cond.notify_all()


HOST = HostBudget()
