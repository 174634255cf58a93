"""Keep a verification worker out of the files that make and judge signatures (Linux Landlock).

A worker imports candidate code as the user's own uid, so the signing key's 0600 mode does
not stop it, and the environment scrub only hides the key's path. Landlock (Linux 5.13+,
unprivileged, inherited by child processes, irreversible) lets the worker give up filesystem
access for itself: after importing torch and triton, before reading any request, it keeps
read and execute under the system and Python trees, and read and write under its scratch
directory, the devices in /dev and the Triton, Inductor and CUDA caches. Everything else
(the home directory among it) is out of reach.

Landlock rules only allow, so a protected path (the kernel cache directory, the signing key,
the trusted key files) inside an allowed tree is carved out: the tree's other entries are
allowed one by one instead of the tree. Those grants cover what exists at that moment, so the
writable directories the worker will need are created first.

Several workers run at once, and the parent loads what they write, so no worker may reach
another's files. The folders where scratch directories and the parent's files appear (the one
the worker's scratch directory was made in, the temp directory, /dev/shm, and /dev around it)
are always carved, never granted whole: a worker reaches what was in them when it confined
itself, less other workers' scratch directories and the parent's own entries (``OURS``), plus
its own scratch directory and the caches, named on their own. It cannot list those folders,
nor make, read or write anything made in them later: another worker's scratch directory, a
file the parent writes there afterwards. Its temporary files go to ``<scratch>/tmp``
(``TMPDIR``), and its Inductor compiles in-process: a process pool's semaphores are files made
in /dev/shm.

Where Landlock is missing (an older kernel, a kernel built without it, a seccomp filter that
refuses the calls) ``confine`` says why, the worker carries on unconfined and the parent logs
the reason once: isolation is then the scrubbed environment and file modes only.
"""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

# linux/landlock.h; the syscall numbers are the same on every architecture (asm-generic).
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_DIR_ONLY = sum(1 << b for b in range(4, 14))  # remove/make dir, file, char, sock, fifo, block, sym; refer (ABI 2)
TRUNCATE = 1 << 14  # ABI 3
READ = EXECUTE | READ_FILE | READ_DIR
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE

SYSTEM_TREES = ("/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc", "/opt", "/sys", "/proc", "/run")
SHM = "/dev/shm"
# Names the parent gives what it keeps in the temp directory and /dev/shm: workers' scratch directories
# (llm_inductor_verify_*), the online tuner's and the graph gate's folders, the CLI log.
OURS = ("llm_inductor", "llm_online_", "llm_gate_")


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 when it is not available here."""
    if not sys.platform.startswith("linux"):
        return 0
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    v = libc.syscall(ctypes.c_long(_CREATE_RULESET), None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(int(v), 0)


def _handled(abi: int) -> int:
    rights = READ | WRITE_FILE | _DIR_ONLY
    if abi < 2:
        rights &= ~(1 << 13)  # REFER
    if abi >= 3:
        rights |= TRUNCATE
    return rights


def _under(path: Path, protected: Iterable[Path]) -> list[Path]:
    return [p for p in protected if p == path or path in p.parents]


def _covers(path: Path, protected: Iterable[Path]) -> bool:
    return any(p == path or p in path.parents for p in protected)


def grants(trees: dict[str, int], protect: Iterable[str], expand: Iterable[str] = ()) -> list[tuple[Path, int]]:
    """(path, access) rules for these trees, with every protected path (and all below it) left out.

    A tree that holds a protected path, or is or holds an ``expand`` folder, is granted entry by entry
    as it is now (an ``expand`` folder itself never is), so what is made in it later stays out of
    reach. A symbolic link met while carving is left out: a rule on the tree would not cover its
    target either.
    """
    protected = [Path(os.path.realpath(p)) for p in protect]
    expanded = [Path(os.path.realpath(p)) for p in expand]
    out: dict[Path, int] = {}

    def carve(path: Path, access: int, seen: frozenset[Path]) -> None:
        if _covers(path, protected) or path in seen:
            return
        if not _under(path, protected) and not _under(path, expanded):
            out[path] = out.get(path, 0) | access
            return
        try:
            children = [c for c in os.scandir(path) if not c.is_symlink()]
        except OSError:
            return
        for child in children:
            carve(Path(child.path), access, seen | {path})

    for tree, access in trees.items():
        real = Path(os.path.realpath(tree))
        if real.exists():
            carve(real, access, frozenset())
    return sorted(out.items())


def shared_folders(scratch: str) -> list[str]:
    """Where other workers' scratch directories and the parent's files appear: the folder this worker's scratch
    directory was made in, the temp directory and /dev/shm. A worker never gets these folders whole."""
    folders = {os.path.realpath(p) for p in (os.path.dirname(os.path.realpath(scratch)), tempfile.gettempdir(), SHM)}
    return sorted(f for f in folders if os.path.isdir(f))


def others_entries(folders: Iterable[str], trees: Iterable[str]) -> list[str]:
    """The entries of these folders that belong to other runs: other workers' scratch directories, the parent's
    own temporary folders and files (named ``OURS``). One that is or holds a tree the worker is granted (its own
    scratch directory, a cache) is not among them."""
    granted = [Path(os.path.realpath(t)) for t in trees]
    found = []
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for e in entries:
            path = Path(os.path.realpath(e.path))
            if e.name.startswith(OURS) and not e.is_symlink() and not _under(path, granted):
                found.append(str(path))
    return sorted(found)


def worker_trees(scratch: str) -> dict[str, int]:
    """What a worker may touch: read and execute the system and Python, write its scratch and the caches.

    /dev and the temp directory are here whole; ``confine`` carves them (``shared_folders``)."""
    everything = READ | WRITE_FILE | _DIR_ONLY | TRUNCATE
    trees = {t: READ for t in SYSTEM_TREES}
    for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *sys.path):
        if p:
            trees[p] = READ
    from llm_inductor._paths import source_trees

    trees.update({p: READ for p in source_trees()})  # a source checkout: the repository root too
    for var in ("CUDA_HOME", "CUDA_PATH", "TRITON_PTXAS_PATH", "TRITON_LIBCUDA_PATH"):
        if os.environ.get(var):
            trees[os.environ[var]] = READ
    for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep):
        if p:
            trees[p] = READ
    for p in (scratch, "/dev", tempfile.gettempdir(), *writable_caches()):
        trees[p] = everything
    return trees


def writable_caches() -> list[str]:
    """The compile caches this process writes (Inductor times its baseline there; Triton and CUDA JIT): in a
    worker, its own (``pool.worker_caches``); in the parent, the ones a worker may not open."""
    home = Path.home()
    triton_home = Path(os.environ.get("TRITON_HOME", home))
    dirs = [
        os.environ.get("TRITON_CACHE_DIR") or str(triton_home / ".triton"),
        os.environ.get("CUDA_CACHE_PATH") or str(home / ".nv"),
    ]
    try:
        from torch._inductor.runtime.cache_dir_utils import cache_dir

        dirs.append(cache_dir())  # creates it
    except Exception:  # noqa: BLE001  (an Inductor without the helper: its default is under the temp dir)
        pass
    return dirs


def _compile_in_process() -> None:
    """Inductor's parallel compile starts a process pool, whose semaphores are files made in /dev/shm: with
    /dev/shm carved they cannot be made, so the worker's Inductor compiles in its own process instead."""
    os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = "1"
    config = sys.modules.get("torch._inductor.config")
    if config is not None:
        config.compile_threads = 1


def confine(protect: Iterable[str], scratch: str) -> str:
    """Restrict this process for good; returns "landlock ABI N" or "off: <why>"."""
    protect = list(protect)
    abi = abi_version()
    if abi < 1:
        return f"off: Landlock is not available on this kernel ({os.uname().release})"
    protected = [Path(os.path.realpath(p)) for p in protect]
    for d in writable_caches():
        if not _covers(Path(os.path.realpath(d)), protected):
            try:
                os.makedirs(d, exist_ok=True)
            except OSError:
                pass
    trees = worker_trees(scratch)
    expand = shared_folders(scratch)
    protect += others_entries(expand, trees)
    # The temp directory is carved, so files made in it later are out of reach: the worker's go to
    # its scratch directory (after Inductor has fixed its cache dir above).
    own = Path(scratch) / "tmp"
    own.mkdir(exist_ok=True)
    os.environ["TMPDIR"] = tempfile.tempdir = str(own)
    if os.path.realpath(SHM) in expand:
        _compile_in_process()
    handled = _handled(abi)
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    attr = _RulesetAttr(handled)
    ruleset = libc.syscall(
        ctypes.c_long(_CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0)
    )
    if ruleset < 0:
        return f"off: landlock_create_ruleset failed ({os.strerror(ctypes.get_errno())})"
    try:
        for path, access in grants(trees, protect, expand):
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                allowed = access & handled if path.is_dir() else access & handled & FILE_RIGHTS
                rule = _PathBeneathAttr(allowed, fd)
                if (
                    libc.syscall(
                        ctypes.c_long(_ADD_RULE),
                        ctypes.c_int(ruleset),
                        ctypes.c_int(_RULE_PATH_BENEATH),
                        ctypes.byref(rule),
                        ctypes.c_uint32(0),
                    )
                    < 0
                ):
                    return f"off: landlock_add_rule({path}) failed ({os.strerror(ctypes.get_errno())})"
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return f"off: prctl(PR_SET_NO_NEW_PRIVS) failed ({os.strerror(ctypes.get_errno())})"
        if libc.syscall(ctypes.c_long(_RESTRICT_SELF), ctypes.c_int(ruleset), ctypes.c_uint32(0)) < 0:
            return f"off: landlock_restrict_self failed ({os.strerror(ctypes.get_errno())})"
    finally:
        os.close(ruleset)
    return f"landlock ABI {abi}"
