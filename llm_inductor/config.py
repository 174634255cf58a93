"""One typed configuration, read once: ``options=`` first, then ``LLM_INDUCTOR_*``, then defaults.

Every field names its environment variable, so the tuning summary can print where
each value came from. Options that are not ours pass through to Inductor's
``config_patches`` (``options={"max_autotune": True}``), after a check that Inductor
knows them: a typo fails loudly instead of being dropped.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from llm_inductor._errors import UsageError

MODES = ("cache", "tune", "discover", "off")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _env(name: str, help: str, default: Any = None, **kw: Any) -> Any:
    if "default_factory" not in kw:
        kw["default"] = default
    return field(metadata={"env": name, "help": help}, **kw)


@dataclass(frozen=True)
class Config:
    mode: str = _env("LLM_INDUCTOR_MODE", "cache | tune | discover | off", "cache")
    disable: bool = _env("LLM_INDUCTOR_DISABLE", "kill switch: exactly Inductor", False)
    strict: bool = _env("LLM_INDUCTOR_STRICT", "raise instead of falling back to Inductor", False)
    interpret: bool = _env(
        "LLM_INDUCTOR_INTERPRET", "serve kernels under the Triton interpreter on CPU (tests, development)", False
    )
    provider: str | None = _env(
        "LLM_INDUCTOR_PROVIDER",
        "a registered LLM provider: openai | batch | replay (default: openai if an endpoint is set)",
    )
    model: str | None = _env("LLM_INDUCTOR_MODEL", "model name for the provider")
    replay: str | None = _env("LLM_INDUCTOR_REPLAY", "recorded responses file for the replay provider")
    cache_dir: str = _env(
        "LLM_INDUCTOR_CACHE_DIR",
        "local cache directory",
        default_factory=lambda: str(Path.home() / ".cache" / "llm_inductor"),
    )
    redis_url: str | None = _env("LLM_INDUCTOR_REDIS_URL", "shared cache tier, e.g. redis://host:6379/0")
    packs: tuple[str, ...] = _env("LLM_INDUCTOR_PACKS", "extra read-only packs (os.pathsep list)", ())
    signing_key: str | None = _env("LLM_INDUCTOR_SIGNING_KEY", "private Ed25519 key file used to sign new entries")
    trusted_keys: tuple[str, ...] = _env("LLM_INDUCTOR_TRUSTED_KEYS", "trusted public keys (files or a folder)", ())
    hot_threshold: float = _env(
        "LLM_INDUCTOR_HOT_THRESHOLD", "share of a graph's estimated time that makes a region hot", 0.05
    )
    min_region_us: float = _env(
        "LLM_INDUCTOR_MIN_REGION_US", "regions estimated below this time (µs) are never hot", 2.0
    )
    speed_margin: float = _env("LLM_INDUCTOR_SPEED_MARGIN", "a candidate must beat Inductor by this fraction", 0.03)
    tune: bool = _env("LLM_INDUCTOR_TUNE", "online mode: tune misses during the compile", False)
    rounds: int = _env("LLM_INDUCTOR_ROUNDS", "search rounds per region", 3)
    candidates: int = _env("LLM_INDUCTOR_CANDIDATES", "candidates drawn per round", 4)
    refine_top_k: int = _env("LLM_INDUCTOR_REFINE_TOP_K", "candidates refined with feedback each round", 2)
    strategy: str = _env("LLM_INDUCTOR_STRATEGY", "search strategy: refine | best_of_n | evolve", "refine")
    target_speedup: float = _env(
        "LLM_INDUCTOR_TARGET_SPEEDUP", "stop a region's search at this speedup over Inductor", 1.5
    )
    max_calls: int = _env("LLM_INDUCTOR_MAX_CALLS", "LLM calls per region", 12)
    max_tokens: int = _env("LLM_INDUCTOR_MAX_TOKENS", "tokens per region", 200_000)
    max_dollars: float = _env("LLM_INDUCTOR_MAX_DOLLARS", "dollars per region", 2.0)
    max_seconds: float = _env("LLM_INDUCTOR_MAX_SECONDS", "wall time per region (s)", 1800.0)
    run_max_calls: int | None = _env("LLM_INDUCTOR_RUN_MAX_CALLS", "LLM calls per tuning run")
    run_max_tokens: int | None = _env("LLM_INDUCTOR_RUN_MAX_TOKENS", "tokens per tuning run")
    run_max_dollars: float = _env("LLM_INDUCTOR_RUN_MAX_DOLLARS", "dollars per tuning run", 20.0)
    run_max_seconds: float = _env("LLM_INDUCTOR_RUN_MAX_SECONDS", "wall time per tuning run (s)", 4 * 3600.0)
    price_in: float = _env("LLM_INDUCTOR_PRICE_IN", "$ per 1M prompt tokens", 2.5)
    price_out: float = _env("LLM_INDUCTOR_PRICE_OUT", "$ per 1M completion tokens", 10.0)
    max_retries: int = _env("LLM_INDUCTOR_MAX_RETRIES", "SDK retries per LLM call (429, 5xx, connection, timeout)", 2)
    max_output_tokens: int | None = _env("LLM_INDUCTOR_MAX_OUTPUT_TOKENS", "completion token cap per call")
    target_roofline: float | None = _env("LLM_INDUCTOR_TARGET_ROOFLINE", "stop a region's search at this % of roofline")
    request_timeout: float = _env("LLM_INDUCTOR_REQUEST_TIMEOUT", "seconds per LLM request", 300.0)
    concurrency: int = _env("LLM_INDUCTOR_CONCURRENCY", "LLM requests in flight", 4)
    verify_timeout: float = _env("LLM_INDUCTOR_VERIFY_TIMEOUT", "seconds per verification step in the worker", 120.0)
    rank_wait: float = _env(
        "LLM_INDUCTOR_RANK_WAIT",
        "seconds a rank of a distributed job waits for the rank tuning a region, then all serve Inductor there",
        600.0,
    )
    verify_parallel: int = _env(
        "LLM_INDUCTOR_VERIFY_PARALLEL", "verifications at once on one GPU (0: a quarter of the cores, at most 4)", 0
    )

    # ------------------------------------------------------------------ derived
    @property
    def active(self) -> bool:
        return not self.disable and self.mode != "off"

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir).expanduser()

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def describe(self) -> list[tuple[str, str, Any]]:
        """(field, env var, value) rows for the tuning summary."""
        return [(f.name, f.metadata["env"], getattr(self, f.name)) for f in fields(self)]

    # ------------------------------------------------------------------ parsing
    @classmethod
    def load(
        cls, options: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> tuple[Config, dict[str, Any]]:
        """Return (config, inductor_config_patches); a bad key or value is a UsageError naming where it came from."""
        env = os.environ if env is None else env
        options = dict(options or {})
        ours = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name in [n for n in options if n in ours]:
            sources[name] = f"options[{name!r}]"
            values[name] = _coerce(ours[name], options.pop(name), sources[name])
        for name, f in ours.items():
            raw = env.get(f.metadata["env"])
            if raw is not None and name not in values:  # options= wins, so a variable it overrides is never read
                sources[name] = f.metadata["env"]
                values[name] = _coerce(f, raw, sources[name])
        cfg = cls(**values)
        object.__setattr__(cfg, "_sources", sources)  # where each value came from, for value_error (not a field)
        cfg._validate()
        return cfg, _inductor_patches(options, ours)

    def value_error(self, name: str, expected: str) -> UsageError:
        """A bad value of field ``name``, blamed on where it came from (``options[...]`` or the variable).

        Checks that need another layer use it too: the provider name is checked against
        the registry when a provider is resolved (``search.llm.providers.check_provider``).
        """
        f = next(f for f in fields(self) if f.name == name)
        source = getattr(self, "_sources", {}).get(name, f.metadata["env"])
        return UsageError(_bad_value(f, source, getattr(self, name), expected))

    def _validate(self) -> None:
        if self.mode not in MODES:
            raise self.value_error("mode", f"Valid modes: {list(MODES)}")
        if not 0.0 <= self.hot_threshold <= 1.0:
            raise self.value_error("hot_threshold", "Expected a share in [0, 1]")
        if not self.rank_wait >= 0.0:
            raise self.value_error("rank_wait", "Expected seconds, 0 or more")


def _kind(f: dataclasses.Field) -> str:
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


_EXPECTED = {
    "bool": f"Expected one of {sorted((_TRUE | _FALSE) - {''})}",
    "int": "Expected an integer",
    "float": "Expected a number",
    "tuple": f"Expected a list of paths ({os.pathsep!r}-separated in the environment)",
}


def _bad_value(f: dataclasses.Field, source: str, raw: Any, expected: str) -> str:
    """One message: where the value came from, what it should be, and where to fix it."""
    env = f.metadata["env"]
    fix = f"Fix or unset {env}" if source == env else f"Fix {source}, or leave it out to use {env} or the default"
    return f"Bad value for {source}: {raw!r}. {expected} ({f.name}: {f.metadata['help']}). {fix}."


def _coerce(f: dataclasses.Field, raw: Any, source: str) -> Any:
    kind = _kind(f)
    base = kind.split("[")[0].split(" ")[0]
    if raw is None and "None" in kind:
        return None
    try:
        if base == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        if base == "tuple":
            if isinstance(raw, (list, tuple)):
                return tuple(str(p) for p in raw)
            return tuple(p for p in str(raw).split(os.pathsep) if p)
        if base == "int":
            if isinstance(raw, float) and not raw.is_integer() or isinstance(raw, bool):
                raise ValueError
            return int(raw)
        if base == "float":
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        return str(raw)
    except (TypeError, ValueError):
        raise UsageError(_bad_value(f, source, raw, _EXPECTED.get(base, f"Expected a {base}"))) from None


def _inductor_patches(options: dict[str, Any], ours: Mapping[str, Any]) -> dict[str, Any]:
    if not options:
        return {}
    import torch._inductor.config as inductor_config

    known = set(inductor_config.get_config_copy())
    unknown = [k for k in options if k not in known]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), [*ours, *known], n=1)
            hints.append(f"{k!r} (did you mean {close[0]!r}?)" if close else repr(k))
        raise UsageError(
            f"Unknown option(s) {', '.join(hints)}: neither an llm_inductor setting ({sorted(ours)}) "
            "nor a torch._inductor.config key. Fix or remove them in options= (or llm_inductor.backend(...))."
        )
    return options
