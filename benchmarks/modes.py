"""The modes a case runs in, and how each one compiles.

``max-autotune`` is Inductor's ``max-autotune-no-cudagraphs`` (max_autotune plus
coordinate-descent tuning). CUDA graphs are left out of every mode on purpose:
they remove launch overhead whatever the kernels are, and ``llm`` runs without
them, so with them the comparison would measure launches instead of kernels.
``max-autotune-cudagraphs`` exists for anyone who wants the full preset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from llm_inductor._errors import UsageError


@dataclass(frozen=True)
class Mode:
    name: str
    backend: str | None  # None: eager
    inductor_mode: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    doc: str = ""

    @property
    def compiled(self) -> bool:
        return self.backend is not None

    @property
    def is_llm(self) -> bool:
        return self.backend == "llm"


_AUTOTUNE = {"max_autotune": True, "coordinate_descent_tuning": True}

MODES = {
    m.name: m
    for m in (
        Mode("eager", None, doc="plain PyTorch"),
        Mode("inductor", "inductor", doc='torch.compile(backend="inductor")'),
        Mode(
            "max-autotune",
            "inductor",
            "max-autotune-no-cudagraphs",
            doc='torch.compile(mode="max-autotune-no-cudagraphs")',
        ),
        Mode("llm", "llm", doc='torch.compile(backend="llm"), warm cache from LLM_INDUCTOR_CACHE_DIR'),
        Mode(
            "llm-max-autotune",
            "llm",
            options=_AUTOTUNE,
            doc='backend="llm" with options={max_autotune, coordinate_descent_tuning}',
        ),
        Mode(
            "max-autotune-cudagraphs",
            "inductor",
            "max-autotune",
            doc='torch.compile(mode="max-autotune"), CUDA graphs on',
        ),
    )
}
DEFAULT_MODES = ("eager", "inductor", "max-autotune", "llm")


def parse_modes(text: str | None) -> list[str]:
    names = [m.strip() for m in (text or ",".join(DEFAULT_MODES)).split(",") if m.strip()]
    unknown = [m for m in names if m not in MODES]
    if unknown:
        raise UsageError(f"Unknown --mode {unknown}. Modes: {list(MODES)}.")
    # eager runs first: it is the reference every other mode is checked against.
    return sorted(dict.fromkeys(names), key=lambda m: (m != "eager", names.index(m)))


def wrapper(mode: Mode) -> Callable[[Any], Any]:
    """f → what this mode runs: f itself, or a fresh torch.compile of it."""
    if not mode.compiled:
        return lambda f: f
    kwargs: dict[str, Any] = {"backend": mode.backend}
    if mode.inductor_mode:
        kwargs["mode"] = mode.inductor_mode
    if mode.options:
        kwargs["options"] = dict(mode.options)
    return lambda f: torch.compile(f, **kwargs)


def parse_inductor_config(items: list[str] | None) -> dict[str, Any]:
    """``key=value`` pairs for torch._inductor.config, applied to every compiled mode (and recorded)."""
    import torch._inductor.config as c

    known = c.get_config_copy()
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or key not in known:
            raise UsageError(f"--inductor-config {item!r}: expected key=value with a torch._inductor.config key")
        cur = known[key]
        if isinstance(cur, bool):
            out[key] = raw.lower() in ("1", "true", "yes", "on")
        elif isinstance(cur, (int, float)) and not isinstance(cur, bool):
            out[key] = type(cur)(raw)
        else:
            out[key] = raw
    return out


def llm_snapshot() -> dict[str, Any]:
    """llm_inductor's counters and the hottest regions it saw since the last reset."""
    import llm_inductor
    from llm_inductor.compile import state as _state

    rows = [(r, g.kind) for g in _state.reports for r in g.regions]
    rows.sort(key=lambda rk: -rk[0].est_us)
    hot = [
        {
            "graph": kind,
            "key16": r.key16,
            "ops": r.ops[:10],
            "est_us": r.est_us,
            "share": r.share,
            "status": r.status[:120],
        }
        for r, kind in rows[:10]
    ]
    return {"stats": llm_inductor.stats(), "regions": hot}


def pass_times() -> dict[str, Any]:
    """The region pass's wall time since the last reset, and the part of it spent on family keys."""
    import llm_inductor
    from llm_inductor.compile import state as _state
    from llm_inductor.passes import region

    graphs = llm_inductor.stats().get("graphs", 0)
    return {"graphs": graphs, "pass_s": _state.pass_seconds[0], "family_s": region.FAMILY_SECONDS[0]}


def reset_llm() -> None:
    import llm_inductor

    llm_inductor.reset_stats()
