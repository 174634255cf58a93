"""Helpers for the cache tests: synthetic entries and stores over a temporary cache directory."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from llm_inductor.cache.entry import Entry
from llm_inductor.cache.sizes import SizeRecord
from llm_inductor.cache.tiered import TieredStore
from llm_inductor.cache.trust import current_versions
from llm_inductor.config import Config
from support.paths import CACHE_DATA

RMS_KERNEL = (CACHE_DATA / "rmsnorm_candidate.py").read_text()


def digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def make_entry(name: str = "rms", kernel_source: str = RMS_KERNEL, **changes: Any) -> Entry:
    """A CPU entry for a made-up key (the kernel is never run by these tests)."""
    key = digest(name)
    meta = {
        "key": key,
        "key16": key[:16],
        "device": "cpu",
        "ops": ["pow", "mean", "add", "rsqrt", "mul", "mul"],
        "inputs": [
            {"dtype": "torch.float32", "shape": ["8", "33"], "stride": ["33", "1"], "aligned": True},
            {"dtype": "torch.float32", "shape": ["33"], "stride": ["1"], "aligned": True},
        ],
        "outputs": [{"dtype": "torch.float32", "shape": ["8", "33"], "stride": ["33", "1"], "aligned": True}],
        "symbols": {},
        "bindings": {},
    }
    fields: dict[str, Any] = dict(
        key=key,
        key_fields={"device": "cpu", "digest": key, "graph": [name]},
        kernel_source=kernel_source,
        region_source=f"# region {name}\n",
        region_meta=meta,
        verification={"accepted": True},
        speed={"cpu": {"speedup": 1.25}},
        provenance={"provider": "test"},
        versions=current_versions("cpu"),
    )
    fields.update(changes)
    return Entry(**fields)


def make_family_entry(name: str = "rms family", symbols: dict[str, int] | None = None, **changes: Any) -> Entry:
    """A CPU family entry (``key_fields["family"]``) over symbols s0, s1 (the kernel is never run)."""
    symbols = dict(symbols or {"s0": 8, "s1": 33})
    base = make_entry(name)
    meta = {**base.region_meta, "symbols": symbols}
    fields: dict[str, Any] = dict(
        key_fields={**base.key_fields, "family": True},
        region_meta=meta,
        envelope={"sizes": {s: sorted({v, 2 * v}) for s, v in symbols.items()}, "inductor_mode": "default"},
    )
    fields.update(changes)
    return Entry(**{**base.__dict__, **fields})


def make_size_record(entry: Entry | str, sizes: dict[str, int], **changes: Any) -> SizeRecord:
    """An unsigned record of entry (or an entry id) at sizes: verified and won on this CPU unless changes say."""
    fields: dict[str, Any] = dict(
        entry_id=entry if isinstance(entry, str) else entry.entry_id,
        gpu="cpu",
        inductor_mode="default",
        sizes=dict(sizes),
        verified=True,
        won=True,
        speedup=1.5,
        candidate_us=10.0,
        inductor_us=15.0,
        why="timed to win",
        versions=current_versions("cpu"),
    )
    fields.update(changes)
    return SizeRecord(**fields)


def open_test_store(cache_dir: Path | str, policy: Any = lambda src: [], **env: str) -> TieredStore:
    """A store over cache_dir; policy=None means the real llm_inductor.verify.policy."""
    values = {"LLM_INDUCTOR_CACHE_DIR": str(cache_dir), **env}
    store = TieredStore(Config.load(env=values)[0])
    if policy is not None:
        store.trust().policy = policy
    return store


def cache_cli(capsys: Any, *argv: str) -> tuple[int, str, str]:
    """``llm-inductor cache ARGV`` in this process: (exit code, stdout, stderr)."""
    from llm_inductor.cli import main

    rc = main(["cache", *argv])
    out, err = capsys.readouterr()
    return rc, out, err
