"""Online mode: tune a graph's hot misses during the compile, within budget, then compile with the winners.

``torch.compile(m, backend="llm", options={"tune": True, "max_calls": 4, ...})``. Off by
default. The region pass calls ``tune_misses`` with the hot misses of the graph it is
rewriting, before it finalizes its lookups; winners land in the store, so the
lookups that follow substitute them. Anything that goes wrong leaves the regions
with Inductor, with one warning: a compile never fails because tuning did.

The search runs in a child process (``python -m llm_inductor.search.online``). Inside
the compile, Dynamo holds its compile lock on this thread, and the verifier compiles
Inductor's reference for each candidate: in this process that nested compile waits
for the lock forever. The child reads the same cache (retrieval, search state,
attempt records) and hands its winners back as entry JSON; this process puts them
in its own store, so the lookups that follow see them whatever the store is.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from llm_inductor._errors import LLMInductorError
from llm_inductor.compile.region_pass import wants_tuning
from llm_inductor.config import Config

log = logging.getLogger(__name__)


def tune_misses(
    infos: Sequence[Any], cfg: Config, *, verifier: Any = None, store: Any = None, in_process: bool = False
) -> int:
    """Tune these hot misses (RegionInfo) now; returns how many winners were stored as served.

    ``in_process`` runs the search here (tests that inject a verifier, callers outside
    any compile); the default runs it in a child process, as the module doc explains.
    """
    if not infos or not wants_tuning(cfg):
        return 0
    import llm_inductor.compile.state as _state
    from llm_inductor.search.graphs import record_graph

    paths = [info.write(cfg.cache_path / "regions") for info in infos]
    record_graph(infos[0].region.nodes[0].graph.owning_module, infos, cfg)
    store = store if store is not None else _state.store(cfg)
    try:
        if in_process:
            from llm_inductor.search.tune import tune

            report = tune(paths, config=cfg, verifier=verifier, store=store, progress=False)
            for row in report.rows:
                log.info("llm_inductor: online tune %s: %s (%s)", row.region, row.outcome, row.stop)
            return report.winners
        return _in_child(paths, cfg, store)
    except LLMInductorError as e:  # no provider, no GPU: say how to fix it, compile on with Inductor
        log.warning("llm_inductor: online tuning skipped: %s", e)
    except Exception as e:
        if cfg.strict:
            raise
        log.warning("llm_inductor: online tuning failed (%s: %s); the regions stay with Inductor", type(e).__name__, e)
    return 0


def _in_child(paths: list[Path], cfg: Config, store: Any) -> int:
    from llm_inductor.cache.entry import Entry

    with tempfile.TemporaryDirectory(prefix="llm_online_") as tmp:
        cfg_path, out = Path(tmp) / "config.json", Path(tmp) / "entries.jsonl"
        cfg_path.write_text(json.dumps(dataclasses.asdict(cfg)))
        env = dict(os.environ)
        if cfg.interpret and not torch.cuda.is_available():
            env["TRITON_INTERPRET"] = "1"  # the child's kernels run under the interpreter
        cmd = [
            sys.executable,
            "-m",
            "llm_inductor.search.online",
            "--config",
            str(cfg_path),
            "--out",
            str(out),
            *map(str, paths),
        ]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=cfg.run_max_seconds + 300)
        for line in proc.stdout.splitlines():
            log.info("llm_inductor: online tune: %s", line)
        if proc.returncode not in (0, 1):
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            log.warning("llm_inductor: online tuning failed (%s); the regions stay with Inductor", tail[:300])
            return 0
        served = 0
        for line in out.read_text().splitlines() if out.is_file() else []:
            entry = Entry.from_json(line)
            store.put(entry)
            if entry.status == "served":
                store.resolve_pending(entry.key)
                served += 1
        return served


class _Collecting:
    """The child's store: reads go to the real store, writes are collected for the parent."""

    def __init__(self, inner: Any, out: Path) -> None:
        self.inner, self.out = inner, out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # lookup, get, entries, pending

    def put(self, entry: Any) -> Any:
        with open(self.out, "a") as f:
            f.write(entry.to_json() + "\n")
        return entry

    def resolve_pending(self, key: str) -> None:
        return None  # the parent resolves what it stores


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="tune region files for a compile in online mode (child process)")
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("regions", nargs="+")
    args = p.parse_args(argv)
    import llm_inductor.compile.state as _state
    from llm_inductor.search.tune import tune

    raw = json.loads(Path(args.config).read_text())
    cfg = Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    store = _Collecting(_state.store(cfg), Path(args.out))
    report = tune(args.regions, config=cfg, store=store, progress=False)
    for row in report.rows:
        print(f"{row.region}: {row.outcome} ({row.stop}), {row.calls} call(s), ${row.cost:.3f}")
    return 0 if report.winners else 1


if __name__ == "__main__":
    sys.exit(main())
