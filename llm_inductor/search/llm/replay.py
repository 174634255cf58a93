"""Replay: answer from a recorded responses file, keyed by prompt hash (tests and demos).

The file is JSONL, one ``{"prompt_hash", "content", "usage"?}`` per line: exactly what
every search writes to ``<cache_dir>/search/responses.jsonl``, so a past run can be
replayed as is. Several lines may share a hash (N candidates drawn from one prompt);
the k-th request with that hash gets the k-th of them, cycling.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from llm_inductor._errors import UsageError
from llm_inductor.config import Config
from llm_inductor.search.llm.providers import NO_MODEL, Completion, ProviderInfo, Request, account, register_provider


def load_responses(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"replay file not found: {path} (LLM_INDUCTOR_REPLAY)")
    table: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            table[str(row["prompt_hash"])].append({"content": str(row["content"]), "usage": row.get("usage")})
        except (ValueError, KeyError, TypeError) as e:
            raise UsageError(f"{path}:{n}: not a replay line {{prompt_hash, content, usage?}}: {e}") from None
    return dict(table)


class ReplayProvider:
    name = "replay"
    live = True
    discount = 1.0

    def __init__(self, cfg: Config, table: dict[str, list[dict[str, Any]]]) -> None:
        self.cfg = cfg
        self.model = cfg.model or NO_MODEL
        self._table = table
        self._served: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: Config) -> ReplayProvider:
        if not cfg.replay:
            raise UsageError("The replay provider needs a file: set LLM_INDUCTOR_REPLAY=<responses.jsonl>.")
        return cls(cfg, load_responses(cfg.replay))

    async def complete(self, request: Request) -> Completion:
        start = time.monotonic()
        h = request.prompt_hash
        rows = self._table.get(h)
        if not rows:
            return Completion(None, error="replay_miss", message=f"no recorded response for prompt {h[:16]}")
        with self._lock:
            row = rows[self._served[h] % len(rows)]
            self._served[h] += 1
        c = Completion(row["content"], seconds=time.monotonic() - start)
        return account(c, request.messages, row.get("usage"), self.cfg)

    async def close(self) -> None:
        return None


register_provider(
    ProviderInfo(
        "replay",
        ReplayProvider.from_config,
        "answers from a recorded responses file",
        needs_model=False,
        env=("LLM_INDUCTOR_REPLAY",),
    )
)
