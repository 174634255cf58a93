#!/usr/bin/env python3
"""Fail on private keys committed to the repository: ``python .ci/check_secrets.py [REPO]``.

Every file ``git ls-files`` lists is read, and so is every member of a tracked archive
(.tar, .tgz, .tar.gz, .tar.bz2, .tar.xz, .zip), since a key inside a tarball slips past
``.gitignore``'s ``*.key``. A finding is a ``*.key`` file or a PEM private key block.
Exit 0: none; 1: some, each named on stderr; 2: not a git checkout.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

# "-{5}" rather than the literal dashes, so this file does not match itself.
PEM_PRIVATE = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-{5}")
TAR_SUFFIXES = (".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz")


def tracked(repo: Path) -> list[str]:
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z"], capture_output=True, check=True).stdout
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]


def members(name: str, data: bytes) -> Iterator[tuple[str, bytes]]:
    """(path, content) of each file in an archive (nested archives are read by the caller)."""
    lower = name.lower()
    if lower.endswith(TAR_SUFFIXES):
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for m in tar.getmembers():
                f = tar.extractfile(m) if m.isfile() else None
                if f is not None:
                    yield m.name, f.read()
    elif lower.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for info in z.infolist():
                if not info.is_dir():
                    yield info.filename, z.read(info)


def findings(path: str, data: bytes) -> Iterator[str]:
    if path.endswith(".key"):
        yield f"{path}: a .key file"
    if PEM_PRIVATE.search(data):
        yield f"{path}: a PEM private key"
    try:
        for inner, content in members(path, data):
            yield from findings(f"{path}!{inner}", content)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
        yield f"{path}: an archive that cannot be read to check it ({e})"


def main(argv: list[str]) -> int:
    repo = Path(argv[1] if len(argv) > 1 else ".")
    try:
        paths = tracked(repo)
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        print(f"check_secrets: {repo} is not a git checkout ({e})", file=sys.stderr)
        return 2
    found = []
    for p in paths:
        try:
            data = (repo / p).read_bytes()
        except (IsADirectoryError, FileNotFoundError):  # a submodule, or deleted but not yet staged
            continue
        found += findings(p, data)
    for f in found:
        print(f"check_secrets: private key committed: {f}", file=sys.stderr)
    if found:
        print(
            "check_secrets: remove them (and treat those keys as compromised: see cache/sign.py COMPROMISED)",
            file=sys.stderr,
        )
        return 1
    print(f"check_secrets: {len(paths)} tracked files, no private keys")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
