"""A loopback OpenAI-compatible HTTP server for tests: the real wire protocol, scripted answers.

It speaks ``POST /v1/chat/completions`` to the real ``openai`` client (http.server in
a thread on 127.0.0.1, a random port) and records every request it gets, so tests
can assert what the search actually sent: the feedback turns, the model, the
headers. Answers come from a ``script``: a function of (request body, n-th request)
that returns a ``Reply``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    content: str | None = None
    status: int = 200
    usage: tuple[int, int] | None = (1000, 200)  # (prompt, completion) tokens; None: no `usage` field
    delay: float = 0.0  # seconds before answering (timeouts)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def text(cls, content: str, usage: tuple[int, int] | None = (1000, 200)) -> Reply:
        return cls(content, usage=usage)

    @classmethod
    def error(cls, status: int, **headers: str) -> Reply:
        # x-should-retry and retry-after-ms are honoured by the SDK; 10 ms keeps tests fast.
        return cls(None, status=status, headers={"retry-after-ms": "10", **headers})


Script = Callable[[dict[str, Any], int], Reply]


@dataclass
class Seen:
    body: dict[str, Any]
    headers: dict[str, str]
    time: float

    @property
    def messages(self) -> list[dict[str, str]]:
        return self.body["messages"]

    @property
    def last_user(self) -> str:
        return [m for m in self.messages if m["role"] == "user"][-1]["content"]


def completion_body(content: str, model: str, usage: tuple[int, int] | None, n: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"chatcmpl-loopback-{n}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    }
    if usage is not None:
        body["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
    return body


class LoopbackLLM:
    """``with LoopbackLLM(script) as llm: ... llm.base_url ... llm.seen``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                with outer._lock:
                    n = len(outer.seen)
                    outer.seen.append(Seen(body, {k.lower(): v for k, v in self.headers.items()}, time.time()))
                reply = outer.script(body, n)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.status != 200:
                    err = {"error": {"message": f"scripted {reply.status}", "type": "server_error", "code": None}}
                    return self._send(reply.status, err, reply.headers)
                self._send(
                    200, completion_body(reply.content or "", body.get("model", ""), reply.usage, n), reply.headers
                )

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> LoopbackLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def sequence(*replies: Reply) -> Script:
    """Answer the n-th request with the n-th reply (the last one repeats)."""

    def script(body: dict[str, Any], n: int) -> Reply:
        return replies[min(n, len(replies) - 1)]

    return script
