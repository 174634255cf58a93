"""Where the package's data lives, found from this file (never by importing the package, which sits above every layer).

``packs/`` (bundled read-only packs) and ``keys/`` (bundled trusted public keys) are
package data beside this file, installed or in a checkout. ``passes/`` and ``cache/`` install as
``llm_inductor.passes`` and ``llm_inductor.cache``; in a source checkout they sit one level up,
beside this package.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

PACKAGE_DIR = Path(os.path.abspath(__file__)).parent


def packs_dir() -> Path:
    return PACKAGE_DIR / "packs"


def keys_dir() -> Path:
    return PACKAGE_DIR / "keys"


def checkout_root() -> Path | None:
    """The repository root when ``passes/`` and ``cache/`` sit beside the package (a source checkout), else None."""
    root = PACKAGE_DIR.parent
    if not (PACKAGE_DIR / "cache").is_dir() and (root / "cache" / "key.py").is_file():
        return root
    return None


def source_trees() -> list[str]:
    """The folders the package's modules are read from: the package, and the checkout root if any."""
    root = checkout_root()
    return [str(PACKAGE_DIR), *([str(root)] if root is not None else [])]


CHECKOUT_PACKAGES = ("passes", "cache")  # the top-level folders that install as llm_inductor.<name>


class _CheckoutPackages(importlib.abc.MetaPathFinder):
    """Finds ``llm_inductor.passes`` and ``llm_inductor.cache`` in a source checkout's top-level folders.

    Only those two: appending the checkout root to the package's ``__path__`` made every folder
    of the repository a subpackage (``llm_inductor.benchmarks``, ``llm_inductor.llm_inductor``).
    Their submodules are then found through the package's own ``__path__``.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        head, _, sub = name.partition(".")
        if head != "llm_inductor" or sub not in CHECKOUT_PACKAGES:
            return None
        folder = self.root / sub
        return importlib.util.spec_from_file_location(
            name, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )


def find_checkout_packages() -> None:
    """Install the finder when this package runs from a checkout (idempotent)."""
    root = checkout_root()
    if root is not None and not any(isinstance(f, _CheckoutPackages) for f in sys.meta_path):
        sys.meta_path.insert(0, _CheckoutPackages(root))
