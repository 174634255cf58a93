"""OpenAI-compatible Chat Completions through the async ``openai`` SDK.

Works with OpenAI, vLLM, Ollama, llama.cpp or any server speaking the same API:
the SDK reads ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` itself, so the key never
passes through our config, logs, records or cache. Retries (429, 5xx, connection
errors, timeouts) are the SDK's, with its exponential backoff and ``Retry-After``
handling; we set their number and the timeout explicitly instead of inheriting
defaults, and bound the requests in flight with a semaphore.

``openai`` is imported lazily: the GPU box has no such package and only needs the
batch-file provider.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from llm_inductor._errors import UsageError
from llm_inductor.config import Config
from llm_inductor.search.llm.providers import Completion, ProviderInfo, Request, account, register_provider

log = logging.getLogger(__name__)

DEFAULT_MAX_RETRIES = 2  # the SDK's own default, made explicit; see Config.max_retries when it lands


class OpenAIProvider:
    name = "openai"
    live = True
    discount = 1.0

    def __init__(self, cfg: Config, client: Any) -> None:
        self.cfg = cfg
        self.model = cfg.model or ""
        self._client = client
        self._sem = asyncio.Semaphore(max(1, cfg.concurrency))
        self._max_retries = int(getattr(cfg, "max_retries", DEFAULT_MAX_RETRIES))
        self._max_out = getattr(cfg, "max_output_tokens", None)

    @classmethod
    def from_config(cls, cfg: Config) -> OpenAIProvider:
        try:
            import openai
        except ImportError:
            raise UsageError(
                "The openai provider needs the `openai` package (pip install openai). On a machine without it, "
                "use files: llm-inductor tune --export-batch REQUESTS.jsonl / --import-batch OUTPUT.jsonl."
            ) from None
        retries = int(getattr(cfg, "max_retries", DEFAULT_MAX_RETRIES))
        try:
            # api_key/base_url come from OPENAI_API_KEY/OPENAI_BASE_URL inside the SDK.
            client = openai.AsyncOpenAI(max_retries=retries, timeout=cfg.request_timeout)
        except openai.OpenAIError as e:
            raise UsageError(
                f"Cannot start the OpenAI client: {e}. Set OPENAI_API_KEY (any value for local servers)."
            ) from None
        return cls(cfg, client)

    async def complete(self, request: Request) -> Completion:
        import openai

        kwargs: dict[str, Any] = {"model": self.model, "messages": request.messages}
        if self._max_out:
            kwargs["max_completion_tokens"] = int(self._max_out)
        async with self._sem:
            start = time.monotonic()
            try:
                raw = await self._client.chat.completions.with_raw_response.create(**kwargs)
                resp = raw.parse()
                attempts = int(getattr(raw, "retries_taken", 0)) + 1
            except openai.APITimeoutError:
                return self._failed(
                    "timeout",
                    f"no answer within {self.cfg.request_timeout:g}s "
                    f"(LLM_INDUCTOR_REQUEST_TIMEOUT), {self._max_retries} retries",
                    start,
                )
            except openai.APIConnectionError as e:
                return self._failed("connection", f"cannot reach the endpoint: {_cause(e)}", start)
            except openai.RateLimitError as e:
                return self._failed("rate_limited", f"HTTP 429 after {self._max_retries} retries: {_body(e)}", start)
            except openai.InternalServerError as e:
                return self._failed(
                    "server_error", f"HTTP {e.status_code} after {self._max_retries} retries: {_body(e)}", start
                )
            except openai.APIStatusError as e:
                # 400/401/403/404: not retried, and retrying the search will not help either.
                return self._failed(f"http_{e.status_code}", f"HTTP {e.status_code}: {_body(e)}", start)
            except openai.OpenAIError as e:
                return self._failed("bad_response", f"{type(e).__name__}: {e}", start)
            seconds = time.monotonic() - start
        try:
            text = resp.choices[0].message.content
        except (AttributeError, IndexError, TypeError):
            text = None
        if not isinstance(text, str):
            return Completion(
                None,
                seconds=seconds,
                error="bad_response",
                message="the answer has no message content",
                http_attempts=attempts,
            )
        usage = resp.usage.model_dump() if getattr(resp, "usage", None) is not None else None
        c = Completion(text, seconds=seconds, http_attempts=attempts)
        return account(c, request.messages, usage, self.cfg)

    def _failed(self, code: str, message: str, start: float) -> Completion:
        log.info("llm_inductor: LLM call failed: %s: %s", code, message)
        return Completion(
            None, seconds=time.monotonic() - start, error=code, message=message, http_attempts=self._max_retries + 1
        )

    async def close(self) -> None:
        await self._client.close()


def _body(e: Any) -> str:
    # The error body is the server's text; it never contains our key (the SDK sends it in a header).
    text = str(getattr(e, "message", "") or e)
    return text[:300]


def _cause(e: BaseException) -> str:
    cause = e.__cause__ or e.__context__
    return f"{type(cause).__name__}: {cause}" if cause else str(e)


register_provider(
    ProviderInfo(
        "openai",
        OpenAIProvider.from_config,
        "OpenAI-compatible Chat Completions (async SDK)",
        env=("OPENAI_API_KEY", "OPENAI_BASE_URL", "LLM_INDUCTOR_MODEL"),
    )
)
