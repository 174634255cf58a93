"""The search's parts on their own: registry, budgets, prompts, strategies, CLI exit codes, online mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_inductor._errors import UsageError
from llm_inductor.cli import main
from llm_inductor.config import Config
from llm_inductor.search.context import load_context
from llm_inductor.search.llm import prompts
from llm_inductor.search.llm.budget import Limits, Meter
from llm_inductor.search.llm.providers import Completion, account, registered, select_provider
from llm_inductor.search.search_state import SearchState
from llm_inductor.search.strategies import select_strategy
from support.search import GOOD, answer, copy_region, shared_region, verifier


@pytest.fixture
def region(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLM_INDUCTOR_INTERPRET", "1")
    return copy_region(shared_region(tmp_path), Path(Config.load()[0].cache_dir))


# ----------------------------------------------------------------------------- providers


def test_no_provider_says_how_to_configure_one():
    cfg, _ = Config.load()
    with pytest.raises(UsageError, match="(?s)OPENAI_API_KEY=.*LLM_INDUCTOR_MODEL"):
        select_provider(cfg)


def test_openai_needs_a_model_name(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    with pytest.raises(UsageError, match="LLM_INDUCTOR_MODEL"):
        select_provider(Config.load()[0])


def test_registry_lists_the_built_in_providers_and_takes_new_ones(monkeypatch):
    """A team adds a provider by registering it, without editing the config; an unknown name lists the registered."""
    from llm_inductor.search.llm import providers

    assert sorted(registered()) == ["batch", "openai", "replay"]  # each registered itself (search/register.py)
    with pytest.raises(
        UsageError, match=r"options\['provider'\]: 'team'\. Registered providers: \['batch', 'openai', 'replay'\]"
    ):
        select_provider(Config.load({"provider": "team"}, env={})[0])
    made = []
    info = providers.ProviderInfo(
        "team", lambda cfg: made.append(cfg) or "the team's provider", "a team's own", needs_model=False
    )
    monkeypatch.setitem(providers._REGISTRY, "team", info)
    assert select_provider(Config.load({"provider": "team"}, env={})[0]) == "the team's provider" and len(made) == 1


def test_missing_usage_is_estimated_and_flagged():
    cfg, _ = Config.load({"price_in": 1.0, "price_out": 2.0})
    msgs = [{"role": "user", "content": "x" * 400}]
    c = account(Completion("y" * 80), msgs, None, cfg)
    assert c.tokens_estimated and c.tokens_in == 104 and c.tokens_out == 20
    assert c.cost == pytest.approx((104 * 1.0 + 20 * 2.0) / 1e6)
    real = account(Completion("y"), msgs, {"prompt_tokens": 7, "completion_tokens": 3}, cfg)
    assert not real.tokens_estimated and (real.tokens_in, real.tokens_out) == (7, 3)


# ----------------------------------------------------------------------------- budgets


def test_meter_counts_calls_in_flight_against_the_budget():
    m = Meter(Limits(calls=3, tokens=10_000))
    m.reserve(1000, 0.0)
    m.reserve(1000, 0.0)
    assert m.exhausted(1, 1000) is None
    m.reserve(1000, 0.0)
    assert m.exhausted(1, 1000) == "budget: calls (0/3)"  # three in flight, none back yet
    m.settle(1000, 0.0, Completion("a", tokens_in=4000, tokens_out=5000))
    m.settle(1000, 0.0, None)
    m.settle(1000, 0.0, None)
    assert m.spend.calls == 1 and m.exhausted(1, 2000) == "budget: tokens (9000/10000)"


def test_dollar_budget():
    m = Meter(Limits(dollars=0.01))
    m.spend.add(Completion("a", cost=0.009))
    assert m.exhausted(1, 0, 0.002).startswith("budget: dollars")
    assert m.exhausted(1, 0, 0.0005) is None


# ----------------------------------------------------------------------------- prompts


def test_extract_code_takes_the_block_that_defines_forward():
    text = "first a sketch\n```\nx = 1\n```\nthen\n```python\nimport torch\ndef forward(a):\n    return a\n```\nbye"
    assert prompts.extract_code(text) == "import torch\ndef forward(a):\n    return a\n"
    assert prompts.extract_code("def forward(a): return a") is None  # no fence
    assert prompts.extract_code("```cuda\ndef forward(a):\n```") is None


def test_feedback_is_trimmed_to_its_token_budget():
    long = "E" * 40_000 + "the last line says where"
    turn = prompts.feedback_turn({"outcome": "wrong_values", "feedback": long})
    assert len(turn) < prompts.FEEDBACK_TOKENS * 4 + 1000
    assert "characters trimmed" in turn and turn.rstrip().count("the last line says where") == 1


def test_prompt_is_versioned_and_holds_region_specs_device_and_contract(region):
    cfg, _ = Config.load()
    ctx = load_context(region, cfg, None, "cpu")
    msgs = prompts.initial_messages(ctx)
    text = msgs[-1]["content"]
    assert prompts.PROMPT_VERSION == 2 and msgs[0]["role"] == "system"
    for part in (
        region.read_text().strip(),
        "in0: torch.float32 shape [8, 33] stride (33, 1)",
        "Triton interpreter",
        "Inductor generates C++",
        "`forward(in0, in1)`",
        'input_precision="ieee"',
    ):
        assert part in text, part


# ----------------------------------------------------------------------------- strategies


def _attempt(cid: str, outcome: str, code: str | None = GOOD, speedup=None) -> dict:
    r, c = cid.split("-r")[1].split("-c")
    return {
        "custom_id": cid,
        "round": int(r),
        "slot": int(c),
        "outcome": outcome,
        "accepted": outcome in ("ok", "slower"),
        "code": code,
        "feedback": f"feedback of {cid}",
        "speedup": speedup,
    }


def test_strategies_plan_fresh_drafts_then_use_feedback(region):
    cfg, _ = Config.load({"candidates": 4, "refine_top_k": 2})
    ctx = load_context(region, cfg, None, "cpu")
    k = ctx.key16
    state = SearchState(ctx.key, str(region), "refine")
    first = select_strategy("refine").plan(state, ctx, cfg)
    assert [r.custom_id for r in first] == [f"{k}-r1-c{i}" for i in range(4)] and all(r.parent is None for r in first)

    state.round = 1
    state.attempts = [
        _attempt(f"{k}-r1-c0", "compile_error"),
        _attempt(f"{k}-r1-c1", "wrong_values"),
        _attempt(f"{k}-r1-c2", "timeout", code=None),
        _attempt(f"{k}-r1-c3", "slower", speedup=0.8),
    ]
    refine = select_strategy("refine").plan(state, ctx, cfg)
    # The best two (correct-but-slow, then wrong numbers) are refined, two follow-ups each.
    assert [r.parent for r in refine] == [f"{k}-r1-c3", f"{k}-r1-c1"] * 2
    assert "feedback of " + f"{k}-r1-c3" in refine[0].messages[-1]["content"]
    assert "r1: 1 compile_error, 1 slower, 1 timeout, 1 wrong_values" in refine[0].messages[-1]["content"]

    evolve = select_strategy("evolve").plan(state, ctx, cfg)
    assert len({r.prompt_hash for r in evolve}) == 1 and "Earlier candidates" in evolve[0].messages[-1]["content"]
    best_of_n = select_strategy("best_of_n").plan(state, ctx, cfg)
    assert best_of_n[0].messages == first[0].messages and best_of_n[0].custom_id.endswith("-r2-c0")

    with pytest.raises(UsageError, match="Registered strategies"):
        select_strategy("annealing")


# ----------------------------------------------------------------------------- CLI


def test_cli_exit_codes(region, monkeypatch, capsys):
    # No GPU and no interpret switch: refuse, saying why.
    monkeypatch.delenv("LLM_INDUCTOR_INTERPRET")
    assert main(["tune", "--pending"]) == 2
    assert "speed cannot be judged" in capsys.readouterr().err
    # No provider: say how to configure one.
    monkeypatch.setenv("LLM_INDUCTOR_INTERPRET", "1")
    assert main(["tune", "--pending"]) == 2
    assert "No LLM provider is configured" in capsys.readouterr().err
    # A region file that is not one: usage error.
    bad = region.parent / "region_0000000000000000.py"
    bad.write_text("x = 1\n")
    bad.with_suffix(".json").write_text("{}")
    monkeypatch.setenv("LLM_INDUCTOR_PROVIDER", "batch")
    assert main(["tune", str(bad), "--export-batch", str(region.parent / "r.jsonl")]) == 2
    assert "malformed region" in capsys.readouterr().err


def test_cli_no_winner_is_exit_1(region, monkeypatch, capsys, tmp_path):
    replay = tmp_path / "replay.jsonl"
    replay.write_text("")  # every prompt misses: no answer, no winner
    monkeypatch.setenv("LLM_INDUCTOR_PROVIDER", "replay")
    monkeypatch.setenv("LLM_INDUCTOR_REPLAY", str(replay))
    monkeypatch.setenv("LLM_INDUCTOR_CANDIDATES", "1")
    monkeypatch.setenv("LLM_INDUCTOR_ROUNDS", "1")
    assert main(["tune", str(region)]) == 1
    out = capsys.readouterr()
    assert "no winner: replay_miss" in out.out and "LLM_INDUCTOR_PROVIDER" in out.out


# ----------------------------------------------------------------------------- online mode


def test_online_mode_tunes_the_graphs_misses(region, tmp_path):
    """tune_misses gets RegionInfos as the region pass has them, and stores the winner."""
    import torch

    import llm_inductor
    from llm_inductor.cache.store import MemoryStore
    from llm_inductor.compile import state as _state
    from llm_inductor.search.llm.providers import prompt_hash
    from llm_inductor.search.online import tune_misses

    seen = []
    w = torch.randn(33)
    with torch.no_grad(), _state.overridden(graph_hook=lambda gm, kind, infos: seen.extend(infos)):
        torch.compile(
            lambda x: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w,
            backend=llm_inductor.backend(mode="discover", min_region_us=0),
        )(torch.randn(8, 33))
    assert len(seen) == 1
    cfg, _ = Config.load({"tune": True, "candidates": 1, "provider": "replay", "replay": str(tmp_path / "r.jsonl")})
    ctx = load_context(region, cfg, None, "cpu")
    (tmp_path / "r.jsonl").write_text(
        f'{{"prompt_hash": "{prompt_hash(prompts.initial_messages(ctx))}", '
        f'"content": {__import__("json").dumps(answer(GOOD))}}}\n'
    )
    store = MemoryStore()
    assert tune_misses(seen, cfg.replace(tune=False, mode="cache"), store=store) == 0  # off unless asked
    assert tune_misses(seen, cfg, verifier=verifier(), store=store, in_process=True) == 1
    assert store.lookup(seen[0].digest).kernel_source == GOOD
    graph_link = cfg.cache_path / "graphs" / "by_region" / seen[0].key16
    assert graph_link.is_file() and (cfg.cache_path / "graphs" / graph_link.read_text()).is_file()


# ----------------------------------------------------------------------------- in-graph gate


def test_gate_recompiles_the_graph_file_with_the_winner_substituted(region, tmp_path, monkeypatch):
    """The gate's A/B child, run in-process on the CPU: the region is found again in its graph file."""
    import torch

    import llm_inductor
    from llm_inductor.cache.entry import Entry
    from llm_inductor.compile import state as _state
    from llm_inductor.search import gate
    from llm_inductor.search.graphs import graph_for, record_graph

    cfg, _ = Config.load()
    w = torch.randn(33)
    hook = lambda gm, kind, infos: record_graph(gm, infos, cfg)  # noqa: E731
    # the region with a neighbour Inductor keeps: the graph is more than the region
    with torch.no_grad(), _state.overridden(graph_hook=hook):
        torch.compile(
            lambda x: (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w) @ w.new_ones(33, 5),
            backend=llm_inductor.backend(mode="discover", min_region_us=0),
        )(torch.randn(8, 33))
    key16 = region.stem.removeprefix("region_")
    graph = graph_for(key16, cfg)
    assert graph is not None and "aten.mm" in graph.read_text()
    meta = json.loads(region.with_suffix(".json").read_text())
    entry = Entry(meta["key"], meta["key_fields"], GOOD, region.read_text(), meta, versions={"gpu": "cpu"})
    entry_path = tmp_path / "entry.json"
    entry_path.write_text(entry.to_json())

    # as from a checkout on sys.path, with no entry point for the backend's name (the H200 runs)
    import torch._dynamo.backends.registry as registry

    named = registry.lookup_backend

    def no_entry_point(backend):
        if backend == "llm":
            raise AssertionError("the gate looked the backend up by its registered name")
        return named(backend)

    monkeypatch.setattr(registry, "lookup_backend", no_entry_point)  # what torch.compile(backend=str) calls
    r = gate._ab(graph, entry_path, str(tmp_path / "scratch"), device="cpu")
    assert r["substituted"] == 1 and r["max_abs_diff"] < 1e-4 and r["with_ms"] > 0 and r["without_ms"] > 0
    assert r["with_host_us"] > 0 and r["without_host_us"] > 0  # each side's host time per call, for the note
    # Inductor's kernels without the winner: here (the CPU's C++ GEMM) it fuses the norm into the matmul that
    # reads it, so the region's kernel breaks a fusion; the gate's note names the nodes to widen the region to
    fused = {f["op"] for f in r["fused_with"]}
    assert "aten.mm.default" in fused and not fused & {"aten.rsqrt.default", "aten.pow.Tensor_Scalar"}, r
    assert r["kernels_with"] > r["kernels_without"] > 0
    # again, with Inductor's and AOTAutograd's caches warm for this graph: a compile served from them would never
    # schedule (this torch bypasses its FX cache when a scheduler hook is set; the gate turns both caches off too)
    again = gate._ab(graph, entry_path, str(tmp_path / "scratch"), device="cpu")
    assert again["fused_with"] == r["fused_with"] and again["kernels_without"] == r["kernels_without"], again
    slower = gate.judge({**r, "without_ms": 1.0, "with_ms": 1.5, "with_host_us": 1.0, "without_host_us": 1.0}, "g.py")
    assert not slower["passed"] and "fused the region with" in slower["note"] and "aten.mm.default" in slower["note"]
    assert gate.status_for({"measured": True, "passed": False}) == "slows_graph"
    assert gate.status_for({"measured": False, "passed": False}) == "ungated"
    assert gate.in_graph_gate(key16, entry, cfg, "cpu") == {
        "measured": False,
        "passed": True,
        "note": "not measured (cpu)",
    }


def test_inductor_code_is_cut_down_to_its_kernels_and_launcher():
    from llm_inductor.search.baseline import MAX_CODE_CHARS, extract_kernels

    module = (
        "from torch._inductor.runtime import triton_helpers\n"
        "triton_red_fused_mean_0 = async_compile.triton('triton_red_fused_mean_0', '''\n"
        "@triton.jit\ndef triton_red_fused_mean_0(in_ptr0, out_ptr0, xnumel, r0_numel):\n"
        "    pass\n''', device_str='cuda')\n"
        "async_compile.wait(globals())\n"
        "def call(args):\n    arg0_1, = args\n"
        "    triton_red_fused_mean_0.run(arg0_1, buf0, 8, 33, stream=stream0)\n    return (buf0, )\n"
        "def benchmark_compiled_module():\n    pass\n"
    )
    text = extract_kernels(module)
    assert text.startswith("# kernel triton_red_fused_mean_0\n@triton.jit")
    assert "triton_red_fused_mean_0.run(arg0_1, buf0, 8, 33" in text and "benchmark_compiled_module" not in text
    assert len(extract_kernels(module.replace("pass", "x = 1\n" * 5000))) < MAX_CODE_CHARS + 200
    # torch >= 2.8 wraps the launcher in a Runner class.
    runner = (
        module.replace("def call(args):\n    ", "class Runner:\n    def call(self, args):\n        ")
        .replace("\n    triton_red", "\n        triton_red")
        .replace("\n    return (buf0", "\n        return (buf0")
    )
    text = extract_kernels(runner)
    assert (
        "def call(self, args):\n    arg0_1, = args\n    triton_red_fused_mean_0.run(" in text
        and "return (buf0, )" in text
    )


def test_similar_winners_become_worked_examples(region):
    """A served winner for the same ops at another shape is shown; a slows_graph one is not."""
    from llm_inductor.cache.entry import Entry
    from llm_inductor.cache.store import MemoryStore
    from llm_inductor.search.similar import add_to_index

    cfg, _ = Config.load()
    meta = json.loads(region.with_suffix(".json").read_text())
    store = MemoryStore()
    for key, status, source in (
        ("a" * 64, "served", "# the served neighbour\n" + GOOD),
        ("b" * 64, "slows_graph", "# slow\n"),
    ):
        other = {**meta, "key": key, "inputs": [{**meta["inputs"][0], "shape": ["16", "33"]}, meta["inputs"][1]]}
        entry = Entry(
            key,
            meta["key_fields"],
            source,
            region.read_text(),
            other,
            status=status,
            speed={"NVIDIA H200": {"speedup": 1.4}},
        )
        store.put(entry)
        add_to_index(entry, cfg)
    ctx = load_context(region, cfg, store, "cpu")
    assert [ex["key16"] for ex in ctx.examples] == ["a" * 16]
    text = prompts.first_turn(ctx)
    assert "# the served neighbour" in text and "1.40x over Inductor on NVIDIA H200" in text and "# slow" not in text


def test_timing_feedback_names_inductor_the_roofline_and_the_floor():
    text = prompts.timing_text(
        {"outcome": "slower", "candidate_ms": 0.05, "inductor_ms": 0.04, "roofline_pct": 64.0, "floor_ms": 0.032}
    )
    assert text == "candidate 0.0500 ms vs Inductor 0.0400 ms: 0.80x; 64% of the roofline (floor 0.0320 ms)."
    assert prompts.timing_text({"outcome": "ok"}).startswith("not measured: this machine has no GPU")


def test_the_gate_note_says_when_the_graph_with_the_kernel_was_host_bound(tmp_path, monkeypatch):
    """The verdict is the measured time; the note adds that the GPU waited for the launches (H200, 2048 rows)."""
    import subprocess

    import llm_inductor.search.gate as gate
    from llm_inductor.config import Config
    from support.cache_entries import make_entry

    answer = {"substituted": 1, "without_ms": 0.3587, "with_ms": 0.3910, "with_host_us": 330.0, "without_host_us": 47}
    done = subprocess.CompletedProcess([], 0, stdout=json.dumps(answer) + "\n", stderr="")
    monkeypatch.setattr(gate, "graph_for", lambda key16, cfg: tmp_path / "graph_x.py")
    monkeypatch.setattr(gate.subprocess, "run", lambda *a, **k: done)
    r = gate.in_graph_gate("x" * 16, make_entry(), Config.load()[0], "cuda")
    assert r["measured"] and not r["passed"]
    assert (
        r["note"] == "graph 0.3587 ms -> 0.3910 ms with the kernel (slower; host-bound: 330 us of host time per call)"
    )
    answer["with_host_us"] = 60.0  # the GPU was the limit: no word about the host
    done.stdout = json.dumps(answer)
    assert gate.in_graph_gate("x" * 16, make_entry(), Config.load()[0], "cuda")["note"].endswith("(slower)")
    # Faster here, but only because this host launches fast enough: a host twice as slow would lose. No pass.
    answer = {"substituted": 1, "without_ms": 0.1534, "with_ms": 0.0944, "with_host_us": 101.1, "without_host_us": 30.7}
    done.stdout = json.dumps(answer)
    r = gate.in_graph_gate("x" * 16, make_entry(), Config.load()[0], "cuda")
    assert r["measured"] and not r["passed"]
    assert r["note"] == (
        "graph 0.1534 ms -> 0.0944 ms with the kernel (no slower; host-bound: 101 us of host time per call, "
        "slower than Inductor's graph on a host 2x slower to launch)"
    )
    answer["with_host_us"] = 60.0
    done.stdout = json.dumps(answer)
    assert gate.in_graph_gate("x" * 16, make_entry(), Config.load()[0], "cuda")["passed"]
