"""Where the package's data lives, found from this file (never by importing the package, which sits above every layer).

``packs/`` (bundled read-only packs) and ``keys/`` (bundled trusted public keys) are
package data beside this file, installed or in a checkout. ``passes/`` and ``cache/`` install as ``llm_inductor.passes`` and
``llm_inductor.cache``; in a source checkout they sit one level up, beside this package.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(os.path.abspath(__file__)).parent


def packs_dir() -> Path:
    return PACKAGE_DIR / "packs"


def keys_dir() -> Path:
    return PACKAGE_DIR / "keys"


def checkout_root() -> Path | None:
    """The repository root when ``passes/`` and ``cache/`` are found beside the package (a source checkout), else None."""
    root = PACKAGE_DIR.parent
    if not (PACKAGE_DIR / "cache").is_dir() and (root / "cache" / "key.py").is_file():
        return root
    return None


def source_trees() -> list[str]:
    """The folders the package's modules are read from: the package, and the checkout root if any."""
    root = checkout_root()
    return [str(PACKAGE_DIR), *([str(root)] if root is not None else [])]
