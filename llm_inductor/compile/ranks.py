"""The ranks of one distributed job tune each region once, and every rank serves what one record says.

Under ``torchrun`` every rank compiles the same graphs. In tune mode each would ask the LLM for the
same regions, N times the bill, and could end with different kernels, so with different numerics.
Instead, per hot miss, two records in the store (the shared tier when there is one, else the local
database, which the ranks of one machine share):

* ``tune:<job>:<key>``: claimed by exactly one rank (set-if-absent), which tunes the region;
* ``decision:<job>:<key>``: the entry every rank serves, or ``inductor``. Also set-if-absent, by the
  tuning rank when its search ends, or by a waiting rank whose bounded wait (``rank_wait``) ran out.
  The first one written is what every rank follows, the tuning rank included: a rank that timed out
  never serves differently from the others, and a late winner is kept in the cache for the next job
  but not served in this one.

A rank waits only while compiling, before the graph runs, so no rank sits in a collective meanwhile;
the wait is bounded, so the others reach theirs at most ``rank_wait`` seconds late. Where the store
cannot hold a record (read-only, or its shared tier down) no rank tunes that region: it stays with
Inductor, the one outcome every rank reaches on its own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

INDUCTOR = "inductor"  # the decision to serve Inductor's code
TTL_S = 7 * 24 * 3600.0  # records outlive any job; a job's id is new each launch
POLL_S = 0.5


@dataclass(frozen=True)
class Job:
    id: str  # the same on every rank of one launch
    rank: int
    world: int

    @property
    def me(self) -> str:
        return f"rank {self.rank}"


def current_job(env: Mapping[str, str] = os.environ) -> Job | None:
    """The distributed job this process is a rank of (torchrun's variables), or None for a single process."""
    try:
        world, rank = int(env.get("WORLD_SIZE", "1")), int(env.get("RANK", "0"))
    except ValueError:
        return None
    if world <= 1:
        return None
    run = env.get("TORCHELASTIC_RUN_ID", "")
    ident = run if run and run != "none" else f"{env.get('MASTER_ADDR', '')}:{env.get('MASTER_PORT', '')}"
    return Job(hashlib.sha256(ident.encode()).hexdigest()[:16], rank, world)


def tune_once(
    infos: Sequence[Any],
    store: Any,
    tune: Callable[[list[Any]], int],
    wait_s: float,
    job: Job | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """Tune these hot misses (RegionInfo) once per job: key digest → the entry id to serve (absent: Inductor).

    ``tune`` runs the search for the regions given, as ``search.online.tune_misses`` does, and stores
    the winners as served.
    """
    job = job if job is not None else current_job()
    if job is None or not hasattr(store, "claim"):
        if not infos or not tune(list(infos)):
            return {}
        return {i.digest: e.entry_id for i in infos if (e := store.lookup(i.digest)) is not None}
    owned, waiting = [], []
    for info in infos:
        holder = store.claim(f"tune:{job.id}:{info.digest}", job.me, TTL_S)
        if holder == job.me:
            owned.append(info)
        elif holder is not None:
            waiting.append((info, holder))
        else:
            log.warning(
                "llm_inductor: %s: the store cannot hold this job's decisions; region %s stays with Inductor "
                "on every rank",
                job.me,
                info.key16,
            )
    if owned:
        tune(owned)
    decided: dict[str, str | None] = {}
    for info in owned:
        entry = store.lookup(info.digest)
        decided[info.digest] = store.claim(
            f"decision:{job.id}:{info.digest}", entry.entry_id if entry is not None else INDUCTOR, TTL_S
        )
    deadline = clock() + wait_s
    for info, holder in waiting:
        name = f"decision:{job.id}:{info.digest}"
        if (value := store.decision(name)) is None:
            log.warning(
                "llm_inductor: %s: waiting up to %.0f s for %s to tune region %s", job.me, wait_s, holder, info.key16
            )
        while value is None and clock() < deadline:
            sleep(POLL_S)
            value = store.decision(name)
        if value is None:
            value = store.claim(name, INDUCTOR, TTL_S)  # a decision the tuner may have just beaten
            if value == INDUCTOR:
                log.warning(
                    "llm_inductor: %s: %s did not finish tuning region %s within %.0f s (LLM_INDUCTOR_RANK_WAIT); "
                    "every rank serves Inductor there in this job",
                    job.me,
                    holder,
                    info.key16,
                    wait_s,
                )
        decided[info.digest] = value
    return {d: v for d, v in decided.items() if v is not None and v != INDUCTOR}
