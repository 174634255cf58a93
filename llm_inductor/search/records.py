"""Attempt records: one JSON line per LLM answer (or failed call), the raw material of reports.

``<cache_dir>/search/attempts.jsonl`` holds the prompt hash, tokens (and whether
they are estimates), cost, the verifier's outcome and timing of every attempt.
``<cache_dir>/search/responses.jsonl`` keeps each answer's text keyed by prompt
hash: it is a replay file as is. Neither ever holds an API key: the key lives in
the SDK's environment only.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from llm_inductor.config import Config
from llm_inductor.search.llm.prompts import PROMPT_VERSION
from llm_inductor.search.llm.providers import Completion, Request

ATTEMPT_SCHEMA = 1
_lock = threading.Lock()

# Fields of an attempt dict that go into its record (the code and feedback stay in the search state).
_RECORDED = (
    "custom_id",
    "round",
    "slot",
    "parent",
    "prompt_hash",
    "outcome",
    "accepted",
    "message",
    "tokens_in",
    "tokens_out",
    "tokens_estimated",
    "cost",
    "llm_seconds",
    "verify_seconds",
    "http_attempts",
    "candidate_ms",
    "inductor_ms",
    "speedup",
    "roofline_pct",
    "floor_ms",
    "code_hash",
)


def search_dir(cfg: Config) -> Path:
    return cfg.cache_path / "search"


def attempts_path(cfg: Config) -> Path:
    return search_dir(cfg) / "attempts.jsonl"


def responses_path(cfg: Config) -> Path:
    return search_dir(cfg) / "responses.jsonl"


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock, open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())  # records outlive a killed run; they are what `report` reads


def record_attempt(
    cfg: Config, attempt: dict[str, Any], *, run_id: str, key: str, provider: str, model: str, strategy: str
) -> dict[str, Any]:
    row = {
        "schema": ATTEMPT_SCHEMA,
        "time": time.time(),
        "run_id": run_id,
        "key": key,
        "key16": key[:16],
        "provider": provider,
        "model": model,
        "strategy": strategy,
        "prompt_version": PROMPT_VERSION,
        **{k: attempt.get(k) for k in _RECORDED},
    }
    _append(attempts_path(cfg), json.dumps(row, default=str))
    return row


def response_line(request: Request, completion: Completion) -> str:
    """One line of a responses file (the replay format, ``search/replay.py``) for a successful completion."""
    usage = None
    if not completion.tokens_estimated:
        usage = {"prompt_tokens": completion.tokens_in, "completion_tokens": completion.tokens_out}
    return json.dumps(
        {"prompt_hash": request.prompt_hash, "custom_id": request.custom_id, "content": completion.text, "usage": usage}
    )


def record_response(cfg: Config, line: str) -> None:
    _append(responses_path(cfg), line)


def read_attempts(cfg: Config, key16: str | None = None) -> list[dict[str, Any]]:
    path = attempts_path(cfg)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if key16 is None or row.get("key16") == key16:
            rows.append(row)
    return rows
