"""The search loop: plan a round, draw its candidates, verify each, feed back, stop.

One ``Searcher`` drives many regions in one run. Per region it keeps a
``SearchState`` (saved after every answer) and two meters: the region's budget and
the run's. Live providers are called concurrently (the provider's semaphore bounds
the requests in flight); verification runs one candidate at a time in a thread,
because on the GPU it times kernels and two timings at once would disturb each
other. Batch files go through the same ``plan``/``consume`` steps, one round per
export/import.

A harness failure (the verifier could not run, and its own retries failed too) is
no attempt: the answer goes to ``state.unjudged``, never to the ranked attempts or
the feedback, and the region's search halts for this run, without a stop reason, so
a later run goes on with it; answers still arriving for that region are kept
unverified rather than sent to a broken harness. A verdict on the region
(``degenerate_region``) stops its search for good.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from llm_inductor.config import Config
from llm_inductor.search import records
from llm_inductor.search.context import RegionContext
from llm_inductor.search.llm.budget import Limits, Meter, call_estimate
from llm_inductor.search.llm.prompts import extract_code
from llm_inductor.search.llm.providers import Completion, Provider, Request, messages_tokens, parse_custom_id
from llm_inductor.search.search_state import SearchState, save_state
from llm_inductor.search.strategies import select_strategy
from llm_inductor.search.verdict import (
    Verifier,
    default_verifier,
    is_harness,
    is_region_verdict,
    verify_candidate,
    verify_parallel,
)
from llm_inductor.verify.draw_set import verification_round
from llm_inductor.verify.result import REASONS

log = logging.getLogger(__name__)

Progress = Callable[[SearchState, RegionContext, str], None]
ANSWER_KEPT = 4000  # characters of an answer with no code block, replayed in its feedback turn


@dataclass
class Searcher:
    cfg: Config
    provider: Provider
    device: str  # "cuda" | "cpu" (interpret mode: correctness only)
    verifier: Verifier = default_verifier
    progress: Progress | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    run_meter: Meter = field(init=False)

    def __post_init__(self) -> None:
        self.run_meter = Meter(Limits.per_run(self.cfg))
        select_strategy(self.cfg.strategy)  # an unknown name fails before any call is made
        self._consume_lock: asyncio.Lock | None = None
        self._verify_slots: asyncio.Semaphore | None = None
        self.parallel = verify_parallel(self.cfg, self.device)  # candidates verified at once
        self._reserved: dict[str, tuple[int, float]] = {}
        self.halted: dict[str, str] = {}  # key → the harness failure that halted its search in this run
        self._discount = float(getattr(self.provider, "discount", 1.0))  # the Batch API bills half

    # ------------------------------------------------------------------ planning
    def region_meter(self, state: SearchState) -> Meter:
        return Meter(Limits.per_region(self.cfg), state.spend)

    def plan(self, state: SearchState, ctx: RegionContext, meter: Meter) -> list[Request]:
        """The next round's requests that fit both budgets, issued into the state; [] when stopped."""
        if state.key in self.halted:
            return []
        if state.outstanding:  # a round still waiting for answers (a re-export, or a resumed run)
            for r in state.requests():
                self._reserve(r, meter)
            return state.requests()
        if state.done or self.stop(state, meter):
            return []
        admitted: list[Request] = []
        why = None
        # The strategy the search started with: a batch search keeps it across sessions.
        for r in select_strategy(state.strategy).plan(state, ctx, self.cfg):
            est = call_estimate(messages_tokens(r.messages), meter, self.cfg, self._discount)
            why = meter.exhausted(1, *est) or self.run_meter.exhausted(1, *est)
            if why:
                break
            self._reserve(r, meter, est)
            admitted.append(r)
        if not admitted:
            state.done = why or "budget"
            return []
        state.round += 1
        state.issue(admitted)
        save_state(self.cfg, state)
        return admitted

    def _reserve(self, r: Request, meter: Meter, est: tuple[int, float] | None = None) -> None:
        est = est or call_estimate(messages_tokens(r.messages), meter, self.cfg, self._discount)
        meter.reserve(*est)
        self.run_meter.reserve(*est)
        self._reserved[r.custom_id] = est

    def _settle(self, r: Request, meter: Meter, c: Completion | None) -> None:
        est = self._reserved.pop(r.custom_id, None)
        if est is None:  # answered without a reservation (a batch file from an earlier session)
            if c is not None:
                meter.spend.add(c)
                self.run_meter.spend.add(c)
            return
        meter.settle(*est, c)
        self.run_meter.settle(*est, c)

    def stop(self, state: SearchState, meter: Meter) -> str | None:
        """Why this region's search ends now (target, rounds, budget), recorded in the state; else None."""
        reason = self._target(state)
        if reason is None and state.round >= self.cfg.rounds:
            reason = f"rounds ({state.round})"
        if reason is None:
            est = call_estimate(0, meter, self.cfg, self._discount)
            reason = meter.exhausted(1, *est) or self.run_meter.exhausted(1, *est)
        if reason:
            state.done = reason
        return reason

    def _target(self, state: SearchState) -> str | None:
        w = state.winner()
        if w is None:
            return None
        if w.get("speedup") is None:
            return "target: correct (speed not judged without a GPU)"
        if w["speedup"] >= self.cfg.target_speedup:
            return f"target: {w['speedup']:.2f}x >= {self.cfg.target_speedup:g}x"
        goal = getattr(self.cfg, "target_roofline", None)
        if goal and (w.get("roofline_pct") or 0.0) >= goal:
            return f"target: {w['roofline_pct']:.0f}% of roofline >= {goal:g}%"
        return None

    # ------------------------------------------------------------------ answers
    def verified(self, ctx: RegionContext, c: Completion) -> dict[str, Any] | None:
        """An answer's verification (``verify_candidate``'s dict), or None for one without code.

        Touches no state, so several run at once; ``consume`` records them one at a time.
        """
        code = extract_code(c.text) if c.ok else None
        if code is None:
            return None
        return verify_candidate(self.verifier, str(ctx.path), code, self.cfg, ctx.floor_ms)

    def consume(
        self,
        state: SearchState,
        ctx: RegionContext,
        request: Request,
        c: Completion,
        verified: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Turn one answer into a recorded attempt: extract the module, verify it (unless ``verified`` holds
        its verification already), judge it."""
        cid = parse_custom_id(request.custom_id)
        a: dict[str, Any] = {
            "custom_id": request.custom_id,
            "round": cid.round,
            "slot": cid.slot,
            "parent": request.parent,
            "prompt_hash": request.prompt_hash,
            "tokens_in": c.tokens_in,
            "tokens_out": c.tokens_out,
            "tokens_estimated": c.tokens_estimated,
            "cost": c.cost,
            "llm_seconds": c.seconds,
            "http_attempts": c.http_attempts,
            "accepted": False,
            "code": None,
            "floor_ms": ctx.floor_ms,
        }
        if not c.ok:
            a.update(outcome=c.error or "bad_response", message=c.message)
        else:
            records.record_response(self.cfg, records.response_line(request, c))
            code = extract_code(c.text)
            if code is None:
                a.update(
                    outcome="no_code",
                    message="the answer has no ```python block defining forward",
                    answer=(c.text or "")[:ANSWER_KEPT],
                )
            elif verified is not None:
                a["code"] = code
                a.update(verified)
            elif state.key in self.halted:
                a.update(
                    code=code,
                    outcome=self.halted[state.key],
                    message="not verified: the verifier failed on "
                    "an earlier answer of this run and its retries failed too",
                )
            else:
                a["code"] = code
                a.update(verify_candidate(self.verifier, str(ctx.path), code, self.cfg, ctx.floor_ms))
        verification = a.pop("verification", None)
        if a["outcome"] == "ok" and verification is not None:
            a["verification"] = verification  # kept for the winner's entry only
        state.outstanding.pop(request.custom_id, None)
        unjudged = is_harness(a["outcome"])
        if unjudged:
            state.unjudged.append(a)
            if "verify_seconds" in a:  # verified, and the harness failed (not one kept unverified after that)
                state.harness = f"{a['outcome']}: {a.get('message', '')}"[:300]
            self.halted.setdefault(state.key, a["outcome"])
            log.warning(
                "llm_inductor: region %s: candidate r%s c%s not judged (%s): %s; its search halts for this run",
                state.key16,
                a["round"],
                a["slot"],
                a["outcome"],
                a.get("message", "")[:300],
            )
        else:
            state.attempts.append(a)
            if "verify_seconds" in a:
                state.harness = None  # the verifier ran and judged
            if is_region_verdict(a["outcome"]) and not state.done:
                state.done = f"{a['outcome']}: {REASONS.get(a['outcome'], a['outcome'])}"
        records.record_attempt(
            self.cfg,
            a,
            run_id=self.run_id,
            key=state.key,
            provider=self.provider.name,
            model=self.provider.model,
            strategy=state.strategy,
        )
        save_state(self.cfg, state)
        what = f"not judged, harness failure ({a['outcome']})" if unjudged else a["outcome"]
        self._report(state, ctx, f"r{a['round']} c{a['slot']}: {what}")
        return a

    def _report(self, state: SearchState, ctx: RegionContext, what: str) -> None:
        if self.progress is not None:
            self.progress(state, ctx, what)

    # ------------------------------------------------------------------ live
    async def _call(self, r: Request) -> tuple[Request, Completion]:
        try:
            return r, await self.provider.complete(r)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a provider bug is this call's failure, not the run's
            return r, Completion(None, error="bad_response", message=f"{type(e).__name__}: {e}")

    async def _verify_consume(self, state: SearchState, ctx: RegionContext, r: Request, c: Completion) -> None:
        """Verify an answer, up to ``parallel`` at once, then record it, one at a time."""
        if self._verify_slots is None:
            self._verify_slots = asyncio.Semaphore(self.parallel)
            self._consume_lock = asyncio.Lock()
        assert self._consume_lock is not None
        verified = None
        if state.key not in self.halted:
            async with self._verify_slots:
                verified = await asyncio.to_thread(self.verified, ctx, c)
        async with self._consume_lock:
            await asyncio.to_thread(self.consume, state, ctx, r, c, verified)

    async def run_region(self, state: SearchState, ctx: RegionContext) -> SearchState:
        """Rounds until a target, the round limit or a budget stops this region's search."""
        meter = self.region_meter(state)
        try:
            while True:
                reqs = self.plan(state, ctx, meter)
                if not reqs:
                    break
                self._report(state, ctx, f"round {state.round}: {len(reqs)} request(s)")
                with verification_round():  # the round's candidates share its draws; the next round gets new ones
                    tasks = [asyncio.ensure_future(self._call(r)) for r in reqs]
                    verifying = []
                    for fut in asyncio.as_completed(tasks):
                        r, c = await fut
                        self._settle(r, meter, c)
                        verifying.append(asyncio.ensure_future(self._verify_consume(state, ctx, r, c)))
                    await asyncio.gather(*verifying)
        finally:
            meter.close_session()
            save_state(self.cfg, state)
        return state

    # ------------------------------------------------------------------ batch
    def consume_batch(self, state: SearchState, ctx: RegionContext, answers: dict[str, Completion]) -> int:
        """Consume the answers to this region's outstanding requests; returns how many were answered."""
        meter = self.region_meter(state)
        answered = [(r, answers[r.custom_id]) for r in state.requests() if r.custom_id in answers]
        verified: list[dict[str, Any] | None] = [None] * len(answered)
        if state.key not in self.halted and answered:
            # One round's answers: verified up to ``parallel`` at once, sharing the round's draws.
            with verification_round(), ThreadPoolExecutor(self.parallel, thread_name_prefix="llm_inductor-tune") as ex:
                futures = [ex.submit(contextvars.copy_context().run, self.verified, ctx, c) for _, c in answered]
                verified = [f.result() for f in futures]
        for (r, c), v in zip(answered, verified):
            self._settle(r, meter, c)
            self.consume(state, ctx, r, c, v)
        n = len(answered)
        meter.close_session()
        save_state(self.cfg, state)
        return n
