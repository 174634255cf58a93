"""The verification worker: ``python -m llm_inductor.verify.worker --device cpu|cuda``.

The only process that imports a candidate. It reads one JSON request per line on
stdin and answers one JSON line on the protocol pipe (the original stdout; the
candidate's own prints go to stderr). Tensors travel through ``torch.save``
files that the parent loads with ``weights_only=True``. It never sees a
reference: it returns outputs and inputs-after-the-call, and the parent judges.

Requests: ``load`` (region + candidate; on a GPU also the memory cap this
process keeps to), ``run`` (calls on one input draw, one poisoning each:
``"marked"`` or ``"noise"``; the poison values are drawn here, per call, and
reported after it), ``prepare`` (GPU: Inductor's compiles for timing), ``time``
(GPU: candidate vs Inductor, interleaved), ``bye``.
A draw's inputs come as a file the parent wrote into this worker's scratch
directory (``draws.save_inputs``): the worker never runs ``make_inputs`` and never
learns a seed. Every answer carries the device memory peak so far.

Memory stays bounded by the region's working set: the pristine inputs stay on
the host (mapped from the file), each call gets a fresh device copy, and the
earlier calls' outputs are held (so that a kernel handing out a cached buffer
shows) only up to ``hold_bytes``, the latest call's always.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import traceback
from typing import Any

# The interpreter must be chosen before triton is imported (the parent sets it too).
if "--device" in sys.argv and sys.argv[sys.argv.index("--device") + 1] == "cpu":
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

from llm_inductor.verify import guard, sandbox  # noqa: E402
from llm_inductor.verify.draws import load_inputs, to_device  # noqa: E402

MEMORY_HEADROOM = 8 << 30  # CPU: address space allowed above the warmed-up worker's
COMPARE_CHUNK = 64 << 20  # bytes of an input compared at a time on the device (host copy to device)


class Failure(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Session:
    """The worker side of one verification: the loaded region and candidate, and the requests it answers."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.region: Any = None
        self.fn: Any = None
        self.candidate_path = ""
        self.candidate: dict[str, Any] | None = None  # the candidate module's globals: its code, for the guard
        self.tripwires: guard.Tripwires | None = None
        self.held: list[torch.Tensor] = []  # last request's outputs, alive so a cache that hands them out shows
        self.stream: int | None = None
        self.compiled: dict[str, Any] | None = None  # Inductor for timing, compiled by ``prepare``

    # ------------------------------------------------------------------ setup
    def warm_up(self) -> None:
        """Initialize everything the harness itself touches lazily, so tripwires see only the candidate."""
        import torch._dynamo  # noqa: F401  (importing it wraps torch.manual_seed and friends)
        import triton
        import triton.language as tl

        @triton.jit
        def _copy(src, dst, n, BLOCK: tl.constexpr):
            offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
            tl.store(dst + offs, tl.load(src + offs, mask=offs < n), mask=offs < n)

        if self.device == "cuda":
            torch.cuda.init()
            self.stream = torch.cuda.current_stream().cuda_stream
        else:
            from llm_inductor.verify.interp import match_gpu_numerics

            match_gpu_numerics()
        guard.install_launch_hooks(lambda: self.stream)
        x = torch.arange(100, dtype=torch.float32, device=self.device)
        with guard.DispatchGuard():
            y = torch.empty_like(x)
            _copy[(1,)](x, y, 100, BLOCK=128)
        if self.device == "cuda":
            torch.cuda.synchronize()
        guard.launches["count"] = 0

    # ------------------------------------------------------------------ requests
    def load(self, req: dict[str, Any]) -> dict[str, Any]:
        import importlib.util

        from llm_inductor.verify.loaded_region import load_region

        self.region = load_region(req["region"], check=False)
        self.candidate_path = req["candidate"]
        cap = req.get("memory_cap")
        if cap and self.device == "cuda":  # before the candidate's first line: its imports count too
            total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, int(cap) / total))
        self.tripwires = guard.Tripwires(native=self.device == "cpu")
        spec = importlib.util.spec_from_file_location("llm_candidate", self.candidate_path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["llm_candidate"] = module
        self.candidate = vars(module)
        g = guard.DispatchGuard(candidate=self.candidate)
        try:
            with g:
                spec.loader.exec_module(module)
        except SyntaxError as e:
            raise Failure("compile_error", f"syntax error at line {e.lineno}: {e.msg}") from None
        except BaseException as e:  # noqa: BLE001  (SystemExit from the candidate too)
            raise Failure("compile_error", "import failed: " + self.where(e)) from None
        self.fn = getattr(module, "forward", None)
        if not callable(self.fn):
            raise Failure("compile_error", "the candidate defines no forward(*inputs)")
        return {"import_violations": g.violations[:5], **self.tripwire_report()}

    def run(self, req: dict[str, Any]) -> dict[str, Any]:
        pristine = load_inputs(req["inputs"])  # host, mapped: each call gets its own device copy
        hold = int(req.get("hold_bytes") or 1 << 62)
        outputs: list[list[torch.Tensor]] = []
        inputs_after: list[torch.Tensor] = []
        records = []
        keep: list[torch.Tensor] = list(self.held)  # earlier requests' outputs, within the same window
        last_marked: dict[str, int | bool] = {}
        for kind in req["poisons"]:
            poison = guard.Poison(marked=kind == "marked", unlike=last_marked)
            inputs = to_device(pristine, self.device)
            g = guard.DispatchGuard(poison, self.candidate)
            before = dict(guard.launches)
            try:
                with g:
                    out = self.fn(*inputs)
                if self.device == "cuda":
                    torch.cuda.synchronize()
            except BaseException as e:  # noqa: BLE001
                raise self.classify(e) from None
            outs = list(out) if isinstance(out, (tuple, list)) else [out]
            if poison.marked:
                last_marked = poison.fills
            rec: dict[str, Any] = {
                "poison": poison.to_dict(),
                "launches": guard.launches["count"] - before["count"],
                "foreign_streams": guard.launches["foreign_streams"] - before["foreign_streams"],
                "violations": sorted(set(g.violations))[:5],
                **self.tripwire_report(),
            }
            if not all(isinstance(o, torch.Tensor) for o in outs):
                rec["bad_outputs"] = [type(o).__name__ for o in outs]
                outs = []
            old = {t.untyped_storage().data_ptr() for t in keep if t.numel()}
            rec["reused_output"] = any(o.numel() and o.untyped_storage().data_ptr() in old for o in outs)
            rec["outputs"] = [
                {
                    "dtype": str(o.dtype),
                    "shape": list(o.shape),
                    "stride": list(o.stride()),
                    "offset": o.storage_offset(),
                }
                for o in outs
            ]
            # Every call's inputs are compared here, on the device; the last call's also go to the
            # parent, which compares them with its own copy (shipping every call's would cost
            # gigabytes at real shapes).
            rec["inputs_changed"] = [j for j, (a, b) in enumerate(zip(pristine, inputs)) if not _same_storage(a, b)]
            keep = _window([*keep, *outs], len(outs), hold)
            records.append(rec)
            outputs.append([o.detach().cpu() for o in outs])
            if len(records) == len(req["poisons"]):
                inputs_after = [t.cpu() for t in inputs]
            del inputs
        self.held = keep
        torch.save({"outputs": outputs, "inputs_after": [inputs_after]}, req["out"])
        return {"calls": records}

    def prepare(self, req: dict[str, Any]) -> dict[str, Any]:
        """Inductor's compiles for timing (max-autotune benchmarks its choices here), ahead of ``time``: no
        candidate code runs, so this needs no exclusive GPU, and ``time`` then measures only."""
        from llm_inductor.verify.timing import compile_modes, timed_modes

        self.held = []  # the draws' outputs: timing gets the memory back
        inputs = to_device(load_inputs(req["inputs"]), self.device)
        self.compiled = compile_modes(self.region.forward, timed_modes(req))
        try:
            with torch.no_grad():
                for fn in self.compiled.values():
                    fn(*inputs)
            torch.cuda.synchronize()
        except BaseException as e:  # noqa: BLE001  (as when time_pair compiled: the candidate may have caused it)
            raise self.classify(e) from None
        return {}

    def time(self, req: dict[str, Any]) -> dict[str, Any]:
        from llm_inductor.verify.timing import time_pair

        self.held = []  # the draws' outputs: timing gets the memory back
        torch.cuda.empty_cache()  # and starts from an allocator with room under the cap
        inputs = to_device(load_inputs(req["inputs"]), self.device)
        before = dict(guard.launches)
        # Inductor's compile starts its own thread pools and imports: the tripwires are re-armed after it,
        # before the candidate's first timed call, so those are not taken for the candidate's.
        rearm = lambda: setattr(self, "tripwires", guard.Tripwires(native=self.device == "cpu"))  # noqa: E731
        try:
            report, last = time_pair(self.fn, self.region.forward, inputs, req, rearm, self.compiled)
        except BaseException as e:  # noqa: BLE001
            raise self.classify(e) from None
        report["foreign_streams"] = guard.launches["foreign_streams"] - before["foreign_streams"]
        report.update(self.tripwire_report())
        torch.save(
            {"outputs": [[o.detach().cpu() for o in last]], "inputs_after": [[t.cpu() for t in inputs]]}, req["out"]
        )
        return report

    # ------------------------------------------------------------------ helpers
    def tripwire_report(self) -> dict[str, Any]:
        tw = self.tripwires
        if tw is None:
            return {"tamper": [], "new_threads": 0}
        return {"tamper": tw.replaced(), "new_threads": tw.new_threads(), "thread_names": tw.new_thread_names()}

    def where(self, e: BaseException) -> str:
        """'line N: code: ExcType: message', with every frame of the candidate's on the way (the launch, then
        the kernel line the interpreter was running)."""
        frames = []
        for err in (e, e.__cause__ or e.__context__):
            if err is not None:
                frames += [f for f in traceback.extract_tb(err.__traceback__) if f.filename == self.candidate_path]
        head = " -> ".join(f"line {f.lineno} in {f.name}: {(f.line or '').strip()}" for f in frames[-3:])
        text = str(e).strip().splitlines()
        return f"{head + ': ' if head else ''}{type(e).__name__}: {' '.join(text[:3])[:600]}"

    def classify(self, e: BaseException) -> Failure:
        text = f"{type(e).__name__}: {e}"
        if (
            isinstance(e, (MemoryError, torch.OutOfMemoryError))
            or "can't allocate memory" in text
            or "out of memory" in text.lower()
        ):
            return Failure("oom", self.where(e))
        if "CompilationError" in type(e).__name__ or "CompilationError" in text:
            return Failure("compile_error", self.where(e))
        # The interpreter runs kernels as Python: what a GPU compile rejects surfaces as an InterpreterError.
        compile_time = (NameError, AttributeError, TypeError, SyntaxError, AssertionError, ValueError)
        if type(e).__name__ == "InterpreterError" and isinstance(e.__cause__, compile_time):
            return Failure("compile_error", self.where(e))
        if "illegal memory access" in text or "CUDA error" in text or "misaligned address" in text:
            return Failure("crash", self.where(e))
        return Failure("runtime_error", self.where(e))


def _same_storage(pristine: torch.Tensor, now: torch.Tensor) -> bool:
    """Are the bytes of now's whole storage (on the device) those of pristine's (on the host)?

    Compared in chunks on the device, so the check costs ``COMPARE_CHUNK`` bytes of device memory,
    not a second copy of the input; every byte counts, those outside the view too.
    """
    a, b = _bytes(pristine), _bytes(now)
    if a.numel() != b.numel():
        return False
    for start in range(0, a.numel(), COMPARE_CHUNK):
        part = a[start : start + COMPARE_CHUNK].to(b.device)
        if not torch.equal(part, b[start : start + COMPARE_CHUNK]):
            return False
    return True


def _bytes(t: torch.Tensor) -> torch.Tensor:
    storage = t.untyped_storage()
    return torch.empty(0, dtype=torch.uint8, device=t.device).set_(storage, 0, (storage.nbytes(),), (1,))


def _window(held: list[torch.Tensor], latest: int, budget: int) -> list[torch.Tensor]:
    """The outputs kept alive on the device: the latest call's ``latest`` ones always, then earlier ones,
    newest first, while their bytes fit ``budget`` (a cached buffer handed out again shows as long as it is
    held, and the region's working set is what the memory bound allows)."""
    keep = held[len(held) - latest :] if latest else []
    used = sum(t.untyped_storage().nbytes() for t in keep)
    for t in reversed(held[: len(held) - latest]):
        used += t.untyped_storage().nbytes()
        if used > budget:
            break
        keep.insert(0, t)
    return keep


def _exit_with_parent() -> None:
    """A worker whose parent died exits, even while a candidate hangs (stdin EOF alone would not reach it).

    Started before the tripwires' thread baseline, so it never counts as the candidate's thread.
    """
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(70)

    threading.Thread(target=watch, name="llm_inductor-parent-watch", daemon=True).start()


def _limit_resources(device: str) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if device == "cpu":  # CUDA reserves huge address ranges; there a CUDA OOM is the limit
        try:
            with open("/proc/self/status") as f:
                vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            want = vm + MEMORY_HEADROOM
            if hard == resource.RLIM_INFINITY or want < hard:
                resource.setrlimit(resource.RLIMIT_AS, (want, hard))
        except (OSError, StopIteration, ValueError):
            pass


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", choices=("cpu", "cuda"), required=True)
    parser.add_argument(
        "--protect",
        action="append",
        default=[],
        metavar="PATH",
        help="a file or folder this worker must not open (the cache, the signing key)",
    )
    args = parser.parse_args()
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the candidate's prints must not reach the protocol pipe
    sys.stdout = sys.stderr
    torch.set_num_threads(1)  # the parent and the other worker share the cores; the checks are small
    _exit_with_parent()
    worker = Session(args.device)
    worker.warm_up()
    _limit_resources(args.device)
    confined = sandbox.confine(args.protect, os.getcwd())  # before any request: no candidate has run yet
    proto.write(json.dumps({"ready": True, "pid": os.getpid(), "sandbox": confined}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        op = req.get("op")
        if op == "bye":
            break
        try:
            body = getattr(worker, op)(req)
            reply = {"ok": True, **body}
        except Failure as f:
            reply = {"ok": False, "reason": f.reason, "message": str(f)}
        except Exception as e:  # noqa: BLE001  (a harness bug: say so, the parent reports it)
            reply = {
                "ok": False,
                "reason": "internal",
                "message": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(),
            }
        if args.device == "cuda":
            reply["peak_bytes"] = torch.cuda.max_memory_allocated()
        proto.write(json.dumps(reply) + "\n")
        if not reply["ok"] and reply["reason"] == "crash":
            break  # a CUDA error leaves the context unusable: this worker is done
    proto.close()
    os._exit(0)  # skip interpreter teardown: candidate threads or atexit hooks must not hang the exit


if __name__ == "__main__":
    sys.exit(main())
