"""Files the package writes whole and reads back: one atomic write, one reader of Python source files.

Every module that replaces a file other processes may be reading (region files, compile
records, kernel modules, search state, packs, public keys) writes it through
``atomic_write``, so a reader sees the old file or the new one, never a part.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from llm_inductor._errors import UsageError


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path``: a temporary file beside it, then ``os.replace``.

    The temporary name holds the process and thread, so concurrent writers never share one;
    it is removed when the write fails (a full disk), leaving ``path`` as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident():x}.tmp")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
        tmp.replace(path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def read_source(path: Path, what: str) -> str:
    """A Python source file's text; a missing or non-UTF-8 file is a UsageError naming it."""
    if not path.is_file():
        raise UsageError(f"{what} {path} does not exist")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(
            f"{what} {path} is not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start}); "
            "it must be a Python source file"
        ) from None
