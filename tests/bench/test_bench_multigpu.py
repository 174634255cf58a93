"""benchmarks/studies/ddp_step.py's interval for the median ratio: distribution-free, from order statistics."""

from __future__ import annotations

import random
import sys

from support.paths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks" / "studies"))

from ddp_step import median_ci  # noqa: E402


def test_the_interval_takes_the_binomial_ranks():
    assert median_ci([float(x) for x in range(1, 11)]) == (2.0, 9.0)  # n = 10: x_(2), x_(9)
    assert median_ci([float(x) for x in range(20, 0, -1)]) == (6.0, 15.0)  # n = 20: x_(6), x_(15), any order
    assert median_ci([3.0, 1.0, 2.0]) == (1.0, 3.0)  # too few for 95%: the whole range


def test_the_interval_covers_the_median_about_as_often_as_it_says():
    rng = random.Random(0)
    trials, n, hits = 2000, 10, 0
    for _ in range(trials):
        lo, hi = median_ci([rng.gauss(1.0, 0.1) for _ in range(n)])
        hits += lo <= 1.0 <= hi
    assert 0.95 <= hits / trials <= 0.995  # n = 10's interval covers 97.9%
