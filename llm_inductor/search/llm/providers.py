"""LLM providers behind one small interface, chosen by name from a registry.

A provider turns one chat request into one ``Completion``. Failures are values, not
exceptions: a completion carries a reason code (``rate_limited``, ``server_error``,
``timeout``, ``connection``, ``bad_response``, ``replay_miss``) and a message, so the
search loop records them as attempts and keeps going.

The registry has the shape of Liger's ``ImplInfo``: a frozen record per provider, an
explicit name that is unknown fails loudly and lists the valid ones, and a choice
made automatically (no name configured, an endpoint in the environment) falls back
quietly with one log line. Providers register themselves (``register_provider`` at
the end of their module); this module imports none of them. The built-in ones are
loaded by ``search/register.py``, which ``import llm_inductor`` runs, so a team adds a
provider by registering it, without editing the config: a name is checked against
the registry when it is resolved, not when the config is read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from llm_inductor._errors import UsageError
from llm_inductor.config import Config

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]  # [{"role": "system"|"user"|"assistant", "content": str}]

# Where the config leaves a model unset (replay and batch files do not need one).
NO_MODEL = "unset"


def prompt_hash(messages: Messages) -> str:
    """The key of a prompt: replay files, attempt records and batch lines use it. Model-independent."""
    blob = json.dumps([[m["role"], m["content"]] for m in messages], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def estimate_tokens(text: str) -> int:
    # ~4 characters per token for English and code under the GPT tokenizers; only used
    # where a response has no `usage`, and always flagged as an estimate.
    return max(1, math.ceil(len(text) / 4))


def messages_tokens(messages: Messages) -> int:
    return sum(estimate_tokens(m["content"]) + 4 for m in messages)  # +4: role and separators


_CUSTOM_ID = re.compile(r"^(?P<key16>[0-9a-f]{16})-r(?P<round>\d+)-c(?P<slot>\d+)$")


# A request's name, ``<key16>-r<round>-c<slot>``: the region, the round and the candidate slot, so
# answers can come back in any order (batch files: days later, from another machine).
def custom_id(key16: str, round_: int, slot: int) -> str:
    return f"{key16}-r{round_}-c{slot}"


@dataclass(frozen=True)
class CustomId:
    key16: str
    round: int
    slot: int


def parse_custom_id(text: str) -> CustomId:
    m = _CUSTOM_ID.match(text)
    if not m:
        raise ValueError(f"custom_id {text!r} is not <key16>-r<round>-c<slot>")
    return CustomId(m["key16"], int(m["round"]), int(m["slot"]))


@dataclass(frozen=True)
class Request:
    """One chat completion the search wants: ``custom_id`` = ``<key16>-r<round>-c<slot>``."""

    custom_id: str
    messages: Messages
    parent: str | None = None  # the custom_id of the attempt this one refines

    @property
    def prompt_hash(self) -> str:
        return prompt_hash(self.messages)


@dataclass
class Completion:
    text: str | None  # None when the call failed
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_estimated: bool = False
    cost: float = 0.0
    seconds: float = 0.0
    error: str | None = None  # reason code; None on success
    message: str = ""  # human text for the error
    http_attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def account(
    c: Completion, messages: Messages, usage: dict[str, Any] | None, cfg: Config, discount: float = 1.0
) -> Completion:
    """Fill tokens and cost from ``usage``; where it is missing, estimate and flag it."""
    usage = usage or {}
    tin, tout = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if tin is None or tout is None:
        c.tokens_estimated = True
        tin = messages_tokens(messages) if tin is None else tin
        tout = estimate_tokens(c.text or "") if tout is None else tout
    c.tokens_in, c.tokens_out = int(tin), int(tout)
    c.cost = discount * (c.tokens_in * cfg.price_in + c.tokens_out * cfg.price_out) / 1e6
    return c


class Provider(Protocol):
    name: str
    model: str
    live: bool  # False: requests go out through files (batch), not calls
    discount: float  # the share of the live price its answers cost (the Batch API bills half)

    async def complete(self, request: Request) -> Completion: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class ProviderInfo:
    name: str
    factory: Callable[[Config], Provider]
    description: str
    needs_model: bool = True
    env: tuple[str, ...] = field(default=())  # variables that configure it (named in errors)


_REGISTRY: dict[str, ProviderInfo] = {}


def register_provider(info: ProviderInfo) -> None:
    _REGISTRY[info.name] = info


def registered() -> dict[str, ProviderInfo]:
    return dict(_REGISTRY)


HOW_TO_CONFIGURE = (
    "No LLM provider is configured. Set one of:\n"
    "  OPENAI_API_KEY=... (and OPENAI_BASE_URL=http://host:port/v1 for vLLM, Ollama or another\n"
    "    OpenAI-compatible server) plus LLM_INDUCTOR_MODEL=<model name>;\n"
    "  LLM_INDUCTOR_PROVIDER=replay LLM_INDUCTOR_REPLAY=<responses.jsonl> to answer from a recording;\n"
    "  or use files: llm-inductor tune --export-batch REQUESTS.jsonl, then --import-batch OUTPUT.jsonl."
)


def provider_name(cfg: Config, env: dict[str, str] | None = None) -> str | None:
    """The configured provider name, or the automatic choice, or None."""
    env = os.environ if env is None else env  # type: ignore[assignment]
    if cfg.provider:
        return cfg.provider
    if env.get("OPENAI_API_KEY") or env.get("OPENAI_BASE_URL"):
        log.info("llm_inductor: provider openai chosen because OPENAI_API_KEY/OPENAI_BASE_URL is set")
        return "openai"
    if cfg.replay:
        log.info("llm_inductor: provider replay chosen because LLM_INDUCTOR_REPLAY is set")
        return "replay"
    return None


def check_provider(cfg: Config) -> None:
    """A provider named in the config must be registered: UsageError (exit 2) naming where the name came from."""
    if cfg.provider is not None and cfg.provider not in _REGISTRY:
        raise cfg.value_error("provider", f"Registered providers: {sorted(_REGISTRY)}")


def select_provider(cfg: Config, name: str | None = None) -> Provider:
    """The provider ``name`` (default: the config's); UsageError (exit 2) naming the fix when there is none."""
    check_provider(cfg)
    name = name or provider_name(cfg)
    if name is None:
        raise UsageError(HOW_TO_CONFIGURE)
    if name not in _REGISTRY:
        raise UsageError(f"Unknown LLM provider {name!r}. Registered providers: {sorted(_REGISTRY)}.")
    info = _REGISTRY[name]
    if info.needs_model and not cfg.model:
        raise UsageError(
            f"Provider {name!r} needs a model name: set LLM_INDUCTOR_MODEL (e.g. LLM_INDUCTOR_MODEL=gpt-4.1, "
            "or the name your vLLM/Ollama server serves)."
        )
    return info.factory(cfg)
