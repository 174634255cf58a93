"""A verification worker cannot open the signing key or the kernel cache (issue 11, item 8; Landlock)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from llm_inductor.cache import sign
from llm_inductor.verify import sandbox
from llm_inductor.verify.engine import verify
from support.paths import KERNELS, REGIONS

SOFTMAX = REGIONS / "region_softmax.py"

PROBE = """
import os
seen = []
for path in {paths!r}:
    try:
        with open(path, "rb") as f:
            f.read(1)
        seen.append("read")
    except PermissionError:
        seen.append("denied")
try:
    open({plant!r}, "w").write("planted")
    seen.append("wrote")
except PermissionError:
    seen.append("denied")
raise RuntimeError("probe " + " ".join(seen))
"""

needs_landlock = pytest.mark.skipif(sandbox.abi_version() < 1, reason="Landlock is not available on this kernel")


@needs_landlock
def test_a_worker_cannot_read_the_signing_key_nor_touch_the_cache(tmp_path, monkeypatch):
    cache = Path(os.environ["LLM_INDUCTOR_CACHE_DIR"])
    local = sign.local_key(cache)  # <cache>/keys/local.key
    team_key, _ = sign.generate(tmp_path / "team", "team")
    monkeypatch.setenv("LLM_INDUCTOR_SIGNING_KEY", str(team_key))
    readable = tmp_path / "not_a_secret.txt"
    readable.write_text("fine")
    paths = [str(team_key), local.source, str(readable)]
    probe = PROBE.format(paths=paths, plant=str(cache / "keys" / "planted.pub"))
    result = verify(SOFTMAX, probe, device="cpu", static_policy=False)
    assert result.reason == "compile_error" and "probe denied denied read denied" in result.message, result.message
    assert not (cache / "keys" / "planted.pub").exists()


@needs_landlock
def test_a_worker_cannot_plant_code_in_the_compile_caches_this_process_loads(tmp_path, monkeypatch):
    """A Triton launcher or an Inductor output module planted in the parent's caches would run, unverified, in
    the verifier or in the user's next compile: a worker compiles into caches of its own, and cannot open these."""
    triton_cache, inductor_cache = tmp_path / "triton", tmp_path / "inductor"
    (triton_cache / "ab12").mkdir(parents=True)
    (triton_cache / "ab12" / "__triton_launcher.so").write_bytes(b"\x7fELF the parent's")
    monkeypatch.setenv("TRITON_CACHE_DIR", str(triton_cache))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(inductor_cache))
    paths = [str(triton_cache / "ab12" / "__triton_launcher.so"), str(KERNELS / "softmax.py")]
    probe = PROBE.format(paths=paths, plant=str(inductor_cache / "planted.py"))
    result = verify(SOFTMAX, probe, device="cpu", static_policy=False)
    assert result.reason == "compile_error" and "probe denied read denied" in result.message, result.message
    assert not (inductor_cache / "planted.py").exists()
    assert (triton_cache / "ab12" / "__triton_launcher.so").read_bytes() == b"\x7fELF the parent's"
    # ... and a kernel still compiles and verifies, in the worker's own caches
    assert verify(SOFTMAX, (KERNELS / "softmax.py").read_text(), device="cpu").accepted


@needs_landlock
def test_a_confined_worker_still_verifies_a_kernel():
    # the worker imports torch and triton before confining itself, and runs the interpreter after
    result = verify(SOFTMAX, (KERNELS / "softmax.py").read_text(), device="cpu")
    assert result.accepted, result.message


def test_protected_paths_are_carved_out_of_an_allowed_tree(tmp_path):
    (tmp_path / "cache" / "keys").mkdir(parents=True)
    (tmp_path / "cache" / "regions").mkdir()
    (tmp_path / "scratch").mkdir()
    (tmp_path / "key.pem").write_text("k")
    (tmp_path / "other.txt").write_text("o")
    rules = dict(sandbox.grants({str(tmp_path): sandbox.READ}, [str(tmp_path / "cache"), str(tmp_path / "key.pem")]))
    assert set(rules) == {tmp_path / "scratch", tmp_path / "other.txt"}
    assert sandbox.grants({str(tmp_path / "cache" / "regions"): sandbox.READ}, [str(tmp_path / "cache")]) == []


def test_a_shared_folder_is_granted_entry_by_entry_without_other_workers(tmp_path):
    root = tmp_path / "shm"
    own, other = root / "llm_inductor_verify_own", root / "llm_inductor_verify_other"
    for d in (own, other, root / "pts"):
        d.mkdir(parents=True)
    (root / "null").write_text("")
    (root / "escape").symlink_to(tmp_path / "outside")  # a rule on the folder would not cover the target
    (tmp_path / "outside").mkdir()
    (tmp_path / "beside").mkdir()
    everything = sandbox.READ | sandbox.WRITE_FILE
    trees = {str(tmp_path): sandbox.READ, str(root): everything, str(own): everything}
    others = sandbox.others_entries([str(root)], trees)
    assert others == [str(other)]  # its own scratch directory is granted, so it is not among them
    rules = dict(sandbox.grants(trees, others, expand=[str(root)]))
    assert set(rules) == {own, root / "pts", root / "null", tmp_path / "outside", tmp_path / "beside"}
    assert rules[own] == rules[root / "null"] == everything and rules[tmp_path / "beside"] == sandbox.READ
    # without the expansion the folder is one rule, which covers the other worker and whatever is made later
    assert dict(sandbox.grants(trees, []))[root] == everything


def test_others_entries_keeps_a_granted_cache_and_takes_the_parents_folders(tmp_path):
    for name in ("llm_inductor_verify_a", "llm_inductor_cache", "llm_online_x", "llm_gate_y", "torchinductor_me"):
        (tmp_path / name).mkdir()
    (tmp_path / "llm_inductor-cli.log").write_text("")
    (tmp_path / "llm_inductor_link").symlink_to(tmp_path / "torchinductor_me")
    trees = {str(tmp_path / "llm_inductor_cache" / "inductor"): sandbox.READ}
    found = {Path(p).name for p in sandbox.others_entries([str(tmp_path)], trees)}
    assert found == {"llm_inductor_verify_a", "llm_online_x", "llm_gate_y", "llm_inductor-cli.log"}
    scratch = tmp_path / "llm_inductor_verify_a"
    assert set(sandbox.shared_folders(str(scratch))) >= {str(tmp_path), os.path.realpath(tempfile.gettempdir())}


CONFINED = r"""
import json, os, sys, tempfile
from llm_inductor.verify import sandbox
print(sandbox.confine(json.loads(sys.argv[1]), os.getcwd()), flush=True)
sys.stdin.readline()  # the parent makes its files now, after this process confined itself
paths = json.loads(sys.stdin.readline())


def attempt(what, fn):
    try:
        fn()
        return what + " ok"
    except PermissionError:
        return what + " denied"


def write(path, mode="w"):
    with open(path, mode) as f:
        f.write("x")


def read(path):
    with open(path) as f:
        f.read()


with tempfile.NamedTemporaryFile("w", delete=False) as t:
    t.write("mine")
seen = [
    attempt("read other", lambda: read(paths["other_file"])),
    attempt("overwrite other", lambda: write(paths["other_file"], "r+")),
    attempt("plant in other", lambda: write(os.path.join(paths["other"], "out_0.pt"))),
    attempt("list other", lambda: os.listdir(paths["other"])),
    attempt("read late", lambda: read(paths["late_file"])),
    attempt("plant in late", lambda: write(os.path.join(paths["late"], "planted"))),
    attempt("read late temp", lambda: read(paths["late_temp"])),
    attempt("make in root", lambda: os.mkdir(os.path.join(paths["root"], "llm_inductor_verify_planted"))),
    attempt("write own", lambda: write(os.path.join(os.getcwd(), "out_0.pt"))),
    attempt("write cache", lambda: write(os.path.join(os.environ["TORCHINDUCTOR_CACHE_DIR"], "probe"))),
    attempt("devices", lambda: (write("/dev/null"), open("/dev/urandom", "rb").read(4))),
    "temp in own " + str(os.path.dirname(t.name) == os.path.join(os.getcwd(), "tmp")),
]
print(json.dumps(seen), flush=True)
"""


@needs_landlock
def test_a_confined_worker_cannot_reach_another_workers_scratch_nor_later_files(tmp_path, monkeypatch):
    # scratch directories as pool.Worker makes them, before its process starts; the child confines itself
    # with the worker's arguments (pool.protected_paths, its scratch directory as its cwd). A temp directory
    # of the test's own, holding the Inductor cache as /tmp does by default; the kernel cache is outside it,
    # so nothing protected makes the temp directory carved
    from llm_inductor.verify import pool

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(temp / "torchinductor_me"))
    root = pool.scratch_root("cpu")
    own = Path(tempfile.mkdtemp(prefix="llm_inductor_verify_", dir=root))
    other = Path(tempfile.mkdtemp(prefix="llm_inductor_verify_", dir=root))
    assert own.parent == other.parent == temp and not (temp / "torchinductor_me").exists()
    (other / "candidate.py").write_text("forward = None\n")
    child = subprocess.Popen(
        [sys.executable, "-c", CONFINED, json.dumps(pool.protected_paths())],
        cwd=own,
        env=pool.scrubbed_env("cpu"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().startswith("landlock ABI")
    late = Path(tempfile.mkdtemp(prefix="llm_inductor_verify_", dir=root))  # a worker started later
    (late / "candidate.py").write_text("forward = None\n")
    (temp / "late.txt").write_text("the parent's, later")
    paths = {
        "other": str(other),
        "other_file": str(other / "candidate.py"),
        "late": str(late),
        "late_file": str(late / "candidate.py"),
        "late_temp": str(temp / "late.txt"),
        "root": str(temp),
    }
    out, _ = child.communicate("go\n" + json.dumps(paths) + "\n", timeout=120)
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen == [
        "read other denied",
        "overwrite other denied",
        "plant in other denied",
        "list other denied",
        "read late denied",
        "plant in late denied",
        "read late temp denied",
        "make in root denied",
        "write own ok",
        "write cache ok",
        "devices ok",
        "temp in own True",
    ], seen
    assert (other / "candidate.py").read_text() == "forward = None\n" and list(other.iterdir()) == [
        other / "candidate.py"
    ]
    assert not (late / "planted").exists() and not (temp / "llm_inductor_verify_planted").exists()
    mine = Path(pool.worker_caches()["TORCHINDUCTOR_CACHE_DIR"])  # the worker's compile cache is its own
    assert (own / "out_0.pt").read_text() == "x" and (mine / "probe").read_text() == "x"
    assert mine.parent.parent == temp and not (temp / "torchinductor_me" / "probe").exists()


@needs_landlock
def test_a_candidate_cannot_read_nor_overwrite_a_concurrent_workers_files():
    from llm_inductor.verify import pool

    other = pool.Worker("cpu")  # a worker of another verification, running beside this one
    try:
        other.wait_ready()
        planted = other.dir / "out_0.pt"
        planted.write_bytes(b"the other worker's output")
        probe = PROBE.format(paths=[str(planted)], plant=str(planted))
        result = verify(SOFTMAX, probe, device="cpu", static_policy=False)
        assert result.reason == "compile_error" and "probe denied denied" in result.message, result.message
        assert planted.read_bytes() == b"the other worker's output"
    finally:
        other.close()
