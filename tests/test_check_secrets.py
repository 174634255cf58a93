"""``.ci/check_secrets.py``: CI fails on a private key in any tracked file or tracked archive."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from llm_inductor.cache import sign

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / ".ci" / "check_secrets.py"


def _check(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(repo)], capture_output=True, text=True, timeout=120)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def _tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_private_keys_in_files_and_archives_are_named(tmp_path):
    key_path, pub_path = sign.generate(tmp_path / "made", "k")
    pem = key_path.read_bytes()
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "ok.py").write_text("print('no secrets')\n")
    (repo / "k.pub").write_bytes(pub_path.read_bytes())  # public halves are fine
    (repo / "notes.txt").write_bytes(b"pasted by mistake:\n" + pem)
    (repo / "team.key").write_text("whatever is inside\n")
    (repo / "state.tgz").write_bytes(_tgz({"cache/keys/local.key": pem, "cache/keys/local.pub": pub_path.read_bytes()}))
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("inner.tar", _tgz({"deep/secret.pem": pem}))  # nested: a tar inside a zip
    (repo / "bundle.zip").write_bytes(zipped.getvalue())
    _git(repo, "add", "-f", ".")
    result = _check(repo)
    assert result.returncode == 1, result.stderr
    named = {line.split("private key committed: ", 1)[1] for line in result.stderr.splitlines() if "committed:" in line}
    assert named == {
        "notes.txt: a PEM private key",
        "team.key: a .key file",
        "state.tgz!cache/keys/local.key: a .key file",
        "state.tgz!cache/keys/local.key: a PEM private key",
        "bundle.zip!inner.tar!deep/secret.pem: a PEM private key",
    }
    for clean in ("ok.py", "k.pub"):
        assert clean not in result.stderr


def test_this_repository_has_no_private_key_committed():
    result = _check(ROOT)
    assert result.returncode == 0, result.stderr
