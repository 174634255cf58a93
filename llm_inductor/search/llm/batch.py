"""Batch files: the OpenAI Batch API request and output formats (FIELD.md).

Requests: ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}``.
Outputs:  ``{"custom_id", "response": {"status_code", "body"}, "error"}``.
``custom_id`` = ``<key16>-r<round>-c<slot>`` names the region, the round and the
candidate slot, so answers can come back in any order, days later, from another
machine. The Batch API bills half the live price; ``BATCH_DISCOUNT`` applies it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llm_inductor._errors import UsageError
from llm_inductor._files import atomic_write
from llm_inductor.config import Config
from llm_inductor.search.llm.providers import (  # noqa: F401  (custom_id, CustomId, parse_custom_id: batch's names too)
    NO_MODEL,
    Completion,
    CustomId,
    ProviderInfo,
    Request,
    account,
    custom_id,
    parse_custom_id,
    register_provider,
)

BATCH_URL = "/v1/chat/completions"
BATCH_DISCOUNT = 0.5


def request_line(request: Request, model: str | None) -> str:
    body = {"model": model or NO_MODEL, "messages": request.messages}
    return json.dumps({"custom_id": request.custom_id, "method": "POST", "url": BATCH_URL, "body": body})


def write_requests(path: str | Path, requests: Iterable[Request], model: str | None) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [request_line(r, model) for r in requests]
    atomic_write(path, "".join(line + "\n" for line in lines))
    return len(lines)


def read_requests(path: str | Path) -> list[Request]:
    """The requests of a batch input file (used by tests and by helpers answering it)."""
    out = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            d = json.loads(line)
            out.append(Request(d["custom_id"], d["body"]["messages"]))
    return out


def read_outputs(path: str | Path, requests: dict[str, Request], cfg: Config) -> dict[str, Completion]:
    """Completions by custom_id from a Batch API output file.

    ``requests`` are the outstanding requests (custom_id → Request), needed to
    estimate prompt tokens where an answer has no ``usage``. Malformed lines are a
    usage error naming the line; well-formed error lines become failed completions.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"batch output file not found: {path}")
    out: dict[str, Completion] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            cid = str(d["custom_id"])
            parse_custom_id(cid)
        except (ValueError, KeyError, TypeError) as e:
            raise UsageError(f"{path}:{n}: not a Batch API output line ({e}).") from None
        out[cid] = _completion(d, requests.get(cid), cfg)
    return out


def _completion(d: dict[str, Any], request: Request | None, cfg: Config) -> Completion:
    resp, err = d.get("response"), d.get("error")
    if err:
        msg = err.get("message", err) if isinstance(err, dict) else err
        return Completion(None, error="batch_error", message=str(msg)[:300])
    status = (resp or {}).get("status_code")
    body = (resp or {}).get("body") or {}
    if status != 200:
        return Completion(None, error=f"http_{status}", message=json.dumps(body)[:300])
    try:
        text = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        text = None
    if not isinstance(text, str):
        return Completion(None, error="bad_response", message="the answer has no message content")
    messages = request.messages if request is not None else []
    return account(Completion(text), messages, body.get("usage"), cfg, discount=BATCH_DISCOUNT)


def output_line(custom_id_: str, content: str, usage: dict[str, int] | None = None, status: int = 200) -> str:
    """One Batch API output line: used by tests and by tools that answer exported prompts."""
    body: dict[str, Any] = {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    }
    if usage is not None:
        body["usage"] = {**usage, "total_tokens": sum(usage.values())}
    return json.dumps(
        {
            "id": f"batch_req_{custom_id_}",
            "custom_id": custom_id_,
            "response": {"status_code": status, "body": body},
            "error": None,
        }
    )


class BatchProvider:
    """Requests go out as files; there is no call to make. The search drives it by rounds."""

    name = "batch"
    live = False
    discount = BATCH_DISCOUNT

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.model = cfg.model or NO_MODEL

    @classmethod
    def from_config(cls, cfg: Config) -> BatchProvider:
        return cls(cfg)

    async def complete(self, request: Request) -> Completion:
        raise UsageError(
            "The batch provider answers through files: run llm-inductor tune --export-batch REQUESTS.jsonl, "
            "answer them, then llm-inductor tune --import-batch OUTPUT.jsonl."
        )

    async def close(self) -> None:
        return None

    # The files a round goes out and comes back through (``tune --export-batch/--import-batch``).
    def write_requests(self, path: str | Path, requests: Iterable[Request]) -> int:
        return write_requests(path, requests, self.cfg.model)

    def read_answers(self, path: str | Path, requests: dict[str, Request]) -> dict[str, Completion]:
        return read_outputs(path, requests, self.cfg)


register_provider(
    ProviderInfo(
        "batch", BatchProvider.from_config, "OpenAI Batch API files (--export-batch/--import-batch)", needs_model=False
    )
)
