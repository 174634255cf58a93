"""Prompts: a versioned template for the first turn, feedback turns trimmed to a token budget.

The templates live in ``templates/*_v<PROMPT_VERSION>.md`` beside this module. A change to
what a prompt says bumps ``PROMPT_VERSION``, so attempt records (which carry it) tell
results of different prompts apart. Prompts carry the region's code and shapes,
never weights or data.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

from llm_inductor.search.context import RegionContext, spec_lines
from llm_inductor.search.llm.providers import Messages, estimate_tokens

PROMPT_VERSION = 2  # 2: the contract states what decorator arguments may do (every round-1 answer broke it)
FEEDBACK_TOKENS = 1500  # per feedback turn; verifier output beyond it is cut in the middle
EXAMPLE_TOKENS = 2500  # per worked example
_TEMPLATES = Path(__file__).resolve().parent / "templates"
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.S)


@cache
def template(name: str) -> Template:
    return Template((_TEMPLATES / f"{name}_v{PROMPT_VERSION}.md").read_text())


def trim(text: str, tokens: int) -> str:
    """Cut the middle out of text longer than ``tokens``: the head says what failed, the tail where."""
    if estimate_tokens(text) <= tokens:
        return text
    keep = tokens * 4
    head, tail = text[: keep * 2 // 3], text[-(keep // 3) :]
    return f"{head}\n[... {len(text) - len(head) - len(tail)} characters trimmed ...]\n{tail}"


def extract_code(text: str | None) -> str | None:
    """The module in the answer: the last fenced block that defines ``forward``; None if there is none."""
    if not text:
        return None
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    for lang, body in reversed(blocks):
        if lang in ("", "python", "py", "python3") and re.search(r"^def forward\(", body, re.M):
            return body.strip() + "\n"
    return None


# ----------------------------------------------------------------------------- first turn


def _inductor_section(ctx: RegionContext) -> str:
    ref, floor = ctx.baseline, ctx.floor_ms
    cost = ctx.sidecar.cost
    moved = f"{float(cost.get('bytes', 0)) / 1e6:.3g} MB moved, {float(cost.get('flops', 0)) / 1e9:.3g} GFLOP"
    if not ref.get("available"):
        return f"{ref.get('note', 'not available')}\nRegion size: {moved}."
    lines = [f"Inductor's time: {ref['inductor_ms']:.4f} ms ({ref.get('note', '')})."]
    if floor:
        lines.append(
            f"Roofline floor: {floor:.4f} ms = max(bytes / bandwidth, flops / peak) for {moved}; "
            f"Inductor is at {floor / ref['inductor_ms']:.0%} of the roofline."
        )
    lines.append(
        f"Inductor's generated Triton ({ref.get('kernels', '?')} kernel(s)):\n```python\n{ref['code'].rstrip()}\n```"
    )
    return "\n".join(lines)


def _examples_section(examples: Sequence[dict[str, Any]]) -> str:
    if not examples:
        return "None yet in the cache for regions like this one."
    parts = []
    for ex in examples:
        speed = (
            f"{ex['speedup']:.2f}x over Inductor on {ex.get('gpu', '?')}" if ex.get("speedup") else "verified correct"
        )
        parts.append(
            f"### {ex['key16']}: {', '.join(ex['ops'][:8])} <- {ex['shapes']} ({speed})\n"
            f"```python\n{trim(ex['kernel_source'].rstrip(), EXAMPLE_TOKENS)}\n```"
        )
    return "\n\n".join(parts)


def first_turn(ctx: RegionContext) -> str:
    return template("prompt").substitute(
        region_source=ctx.source.rstrip(),
        specs="\n".join(spec_lines(ctx.sidecar)),
        device="\n".join(ctx.facts.lines()),
        inductor=_inductor_section(ctx),
        examples=_examples_section(ctx.examples),
        contract=template("contract").substitute(params=ctx.params).rstrip(),
    )


def initial_messages(ctx: RegionContext) -> Messages:
    return [
        {"role": "system", "content": template("system").template.strip()},
        {"role": "user", "content": first_turn(ctx)},
    ]


# ----------------------------------------------------------------------------- feedback


def timing_text(a: dict[str, Any]) -> str:
    """The timing line of a feedback turn: candidate vs Inductor and the floor, or why there is none."""
    if a.get("candidate_ms") and a.get("inductor_ms"):
        text = (
            f"candidate {a['candidate_ms']:.4f} ms vs Inductor {a['inductor_ms']:.4f} ms: "
            f"{a['inductor_ms'] / a['candidate_ms']:.2f}x"
        )
        if a.get("roofline_pct"):
            text += f"; {a['roofline_pct']:.0f}% of the roofline"
        if a.get("floor_ms"):
            text += f" (floor {a['floor_ms']:.4f} ms)"
        return text + "."
    if a.get("outcome") in ("ok", "slower"):
        return "not measured: this machine has no GPU, so only correctness is judged."
    return "not timed: the module did not pass verification."


def _verdict(a: dict[str, Any]) -> str:
    if a["outcome"] == "ok":
        return "correct"
    if a["outcome"] == "slower":
        return "correct, but slower than Inductor"
    return f"rejected ({a['outcome']})"


def _instruction(a: dict[str, Any]) -> str:
    if a["outcome"] == "ok":
        return "Make it faster; keep it correct."
    if a["outcome"] == "slower":
        return "It must beat Inductor: find where the time goes (memory traffic, launch count, occupancy) and fix it."
    return "Fix it."


def feedback_turn(a: dict[str, Any]) -> str:
    """The user turn that feeds an attempt's result back: verdict, verifier text, timing."""
    body = a.get("feedback") or a.get("message") or "(no details)"
    return template("feedback").substitute(
        verdict=_verdict(a),
        feedback=trim(body.rstrip(), FEEDBACK_TOKENS),
        timing=timing_text(a),
        instruction=_instruction(a),
    )


def refine_messages(ctx: RegionContext, parent: dict[str, Any], history: str = "") -> Messages:
    """First turn, the parent's module as the assistant's answer, its feedback as the next user turn.

    Only the parent is replayed, not its whole ancestry: the conversation stays the
    size of one round trip however deep the refinement goes.
    """
    feedback = feedback_turn(parent)
    if history:
        feedback = f"{feedback}\n\nEarlier attempts on this region: {history}"
    return [
        *initial_messages(ctx),
        {"role": "assistant", "content": f"```python\n{parent['code'].rstrip()}\n```"},
        {"role": "user", "content": feedback},
    ]


def evolve_messages(ctx: RegionContext, parents: Sequence[dict[str, Any]]) -> Messages:
    """One turn showing the best earlier candidates with their results, asking for a better child."""
    parts = []
    for i, p in enumerate(parents):
        parts.append(
            f"### candidate {i + 1} ({_verdict(p)}; {timing_text(p)})\n"
            f"```python\n{trim(p['code'].rstrip(), EXAMPLE_TOKENS)}\n```\n"
            f"Verifier: {trim((p.get('feedback') or p.get('message') or '').rstrip(), FEEDBACK_TOKENS // 2)}"
        )
    msgs = initial_messages(ctx)
    msgs[-1] = {
        **msgs[-1],
        "content": msgs[-1]["content"] + "\n\n" + template("evolve").substitute(parents="\n\n".join(parts)),
    }
    return msgs


def no_code_feedback() -> str:
    return (
        "Your answer had no ```python code block defining `forward`. Reply with the whole module in one "
        "```python block."
    )
