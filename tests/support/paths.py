"""Where the test data lives, so that no test computes it from its own file's place."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
SUPPORT = TESTS / "support"
DATA = TESTS / "data"
KERNELS = DATA / "kernels"  # hand-written Triton kernels, one per region of kernels/regions
REGIONS = KERNELS / "regions"  # checked-in region files (kernels/make_regions.py writes them)
BACKEND_KERNELS = DATA / "kernels_backend"  # kernels the backend tests serve from a cache
ADVERSARIAL = DATA / "adversarial"  # candidates that cheat, one way each
CACHE_DATA = DATA / "cache_data"  # a tiny compile script and its kernel
