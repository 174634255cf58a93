"""Search strategies: which requests the next round sends, given every attempt so far.

- ``best_of_n``: N fresh drafts every round; no feedback.
- ``refine``: N fresh drafts, then each round the best k attempts are sent back with
  their verifier feedback and timing, N/k follow-ups each (iterative refinement).
- ``evolve``: N fresh drafts, then each round one prompt shows the best k attempts
  with their results and asks for N children that combine them (evolutionary).

A strategy only plans; the loop sends, verifies, records and decides when to stop.
Unknown names fail loudly with the registered ones, as providers do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from llm_inductor._errors import UsageError
from llm_inductor.config import Config
from llm_inductor.search.context import RegionContext
from llm_inductor.search.llm import prompts
from llm_inductor.search.llm.providers import Request, custom_id
from llm_inductor.search.search_state import SearchState

Plan = Callable[[SearchState, RegionContext, Config], list[Request]]


def _fresh(state: SearchState, ctx: RegionContext, cfg: Config) -> list[Request]:
    msgs = prompts.initial_messages(ctx)
    return [Request(custom_id(ctx.key16, state.round + 1, slot), msgs) for slot in range(cfg.candidates)]


def best_of_n(state: SearchState, ctx: RegionContext, cfg: Config) -> list[Request]:
    return _fresh(state, ctx, cfg)


def _parent_messages(state: SearchState, ctx: RegionContext, parent: dict) -> list[dict[str, str]]:
    if parent.get("code"):
        return prompts.refine_messages(ctx, parent, state.history())
    # An answer without a code block: replay it and say what was missing.
    return [
        *prompts.initial_messages(ctx),
        {"role": "assistant", "content": parent.get("answer") or ""},
        {"role": "user", "content": prompts.no_code_feedback()},
    ]


def refine(state: SearchState, ctx: RegionContext, cfg: Config) -> list[Request]:
    parents = state.ranked()[: max(1, cfg.refine_top_k)]
    if state.round == 0 or not parents:
        return _fresh(state, ctx, cfg)
    reqs = []
    for slot in range(cfg.candidates):
        parent = parents[slot % len(parents)]
        reqs.append(
            Request(
                custom_id(ctx.key16, state.round + 1, slot), _parent_messages(state, ctx, parent), parent["custom_id"]
            )
        )
    return reqs


def evolve(state: SearchState, ctx: RegionContext, cfg: Config) -> list[Request]:
    parents = [a for a in state.ranked() if a.get("code")][: max(2, cfg.refine_top_k)]
    if state.round == 0 or not parents:
        return _fresh(state, ctx, cfg)
    msgs = prompts.evolve_messages(ctx, parents)
    return [
        Request(custom_id(ctx.key16, state.round + 1, slot), msgs, parents[0]["custom_id"])
        for slot in range(cfg.candidates)
    ]


@dataclass(frozen=True)
class StrategyInfo:
    name: str
    plan: Plan
    description: str


STRATEGIES = {
    s.name: s
    for s in (
        StrategyInfo("refine", refine, "refine the best k with their feedback each round"),
        StrategyInfo("best_of_n", best_of_n, "N independent drafts per round"),
        StrategyInfo("evolve", evolve, "children of the best k, shown together with their results"),
    )
}


def select_strategy(name: str) -> StrategyInfo:
    if name not in STRATEGIES:
        raise UsageError(f"Unknown LLM_INDUCTOR_STRATEGY={name!r}. Registered strategies: {sorted(STRATEGIES)}.")
    return STRATEGIES[name]
