"""Family keys (passes/family.py): one key for one computation at any sizes, and only for it.

``describe(region).family`` is the region with its sizes written over symbols s0, s1, ...
These tests compile real graphs (discover mode, a graph hook collecting every region's
``RegionInfo``) and check the family rules: the same computation at other batch and
sequence sizes shares a family while its exact keys differ; anything a kernel depends on
(a constant, a dtype, a dim, a layout, a broadcast, a repeated size) gives another family;
a family's reference, run at another member's sizes, computes what that member's graph
computed; dynamic graphs keep Dynamo's symbols; exact keys stay as they were.

Speed: the region pass and the hook run in front of ``compile_fx_inner`` and see the same
graph whatever comes after, so ``_eager_codegen`` replaces Inductor's C++ codegen with
running the ATen graph eagerly, recording the real inputs each graph ran on (the soundness
checks replay them). ``test_real_codegen_sees_the_same_keys`` checks the replacement
changes no key.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import sympy
import torch
import torch.fx as fx
import torch.nn.functional as F

import llm_inductor
from llm_inductor.cache.key import KernelKey
from llm_inductor.compile import state as _state
from llm_inductor.passes.rebuild import parse, rebuild
from llm_inductor.passes.region import RegionInfo
from support.paths import TESTS

_RUNS: dict[fx.GraphModule, list[Any]] = {}  # ATen graph → the real inputs it first ran on


def eager_codegen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace Inductor's codegen (compile_fx_inner) by running the ATen graph eagerly, recording its real inputs."""
    try:
        from torch._inductor.output_code import MockFXGraphCacheOutput
    except ImportError:  # another torch: the real codegen, only slower (and no captured values)
        return
    import torch._inductor.compile_fx as compile_fx

    def eager(gm: fx.GraphModule, example_inputs: Any, **kwargs: Any) -> Any:
        def run(inputs: list[Any]) -> Any:
            _RUNS.setdefault(gm, list(inputs))  # a copy: the boxed call may clear the list
            return gm(*inputs)

        return MockFXGraphCacheOutput(gm=run)

    monkeypatch.setattr(compile_fx, "compile_fx_inner", eager)
    import llm_inductor.compile.dynamo_backend as dynamo_backend  # should it ever import the name itself

    monkeypatch.setattr(dynamo_backend, "compile_fx_inner", eager, raising=False)


@pytest.fixture(autouse=True)
def _eager_codegen(request, monkeypatch):
    _RUNS.clear()
    if not request.node.name.startswith("test_real_codegen"):
        eager_codegen(monkeypatch)
    yield
    _RUNS.clear()


# ---------------------------------------------------------------------------- compiling


@dataclass
class Seen:
    kind: str  # forward | backward | inference
    info: RegionInfo
    gm: fx.GraphModule


@dataclass
class Compiled:
    seen: list[Seen] = field(default_factory=list)
    runs: dict[fx.GraphModule, list[Any]] = field(default_factory=dict)  # gm → the real inputs it ran on

    def infos(self, kind: str | None = None) -> list[RegionInfo]:
        return [s.info for s in self.seen if kind is None or s.kind == kind]

    def one(self, *, kind: str | None = None, shape: tuple[int, ...] | None = None, op: Any = None) -> RegionInfo:
        """The one region of this kind, with an exact input of this shape, and op among its ops.

        op: an op name, a list (exactly these ops) or a predicate on the ops.
        """
        want = None if shape is None else tuple(map(str, shape))
        if op is None or isinstance(op, str):
            has = (lambda ops: True) if op is None else (lambda ops: op in ops)
        else:
            has = op.__eq__ if isinstance(op, list) else op
        found = [
            i for i in self.infos(kind) if (want is None or any(s.shape == want for s in i.key.inputs)) and has(i.ops)
        ]
        assert len(found) == 1, f"{len(found)} regions match kind={kind} shape={shape} op={op}: {self.summary()}"
        return found[0]

    def captured(self, info: RegionInfo) -> tuple[list[Any], list[Any]]:
        """The values the region's inputs and outputs had when its graph really ran."""
        (s,) = [s for s in self.seen if s.info is info]
        assert s.gm in self.runs, "the graph never ran through the eager codegen"
        rec = _Recorder(s.gm)
        rec.run(*self.runs[s.gm])
        return [rec.values[n] for n in info.inputs], [rec.values[n] for n in info.outputs]

    def summary(self) -> list[str]:
        return [f"{s.kind}:{','.join(s.info.ops)}:{[x.shape for x in s.info.key.inputs]}" for s in self.seen]


class _Recorder(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.values: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        self.values[n] = out
        return out


def infos_of(fn: Callable[..., Any], *inputs: Any, training: bool = False, dynamic: bool | None = False) -> Compiled:
    """Compile fn in discover mode, run it once (and its backward), and collect every region's RegionInfo."""
    _state.reset()
    torch._dynamo.reset()
    out = Compiled()
    compiled = torch.compile(fn, backend=llm_inductor.backend(mode="discover", min_region_us=0), dynamic=dynamic)
    hook = lambda gm, kind, infos: out.seen.extend(Seen(kind, i, gm) for i in infos)  # noqa: E731
    with _state.overridden(graph_hook=hook):
        if training:
            outs = compiled(*inputs)
            outs = outs if isinstance(outs, tuple) else (outs,)
            torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])
        else:
            with torch.no_grad():
                compiled(*inputs)
    out.runs = {s.gm: _RUNS[s.gm] for s in out.seen if s.gm in _RUNS}
    return out


def lines(info: RegionInfo) -> list[str]:
    """The family key's hashed fields, 'name: value' (debug_lines without the per-field hash)."""
    return [line.split("] ", 1)[1] for line in info.family.key.debug_lines()]


def field_of(info: RegionInfo, name: str) -> str:
    (value,) = [line.split(": ", 1)[1] for line in lines(info) if line.split(": ", 1)[0] == name]
    return value


def graph_lines(info: RegionInfo) -> list[str]:
    return [line.split(": ", 1)[1] for line in lines(info) if line.startswith("graph[")]


def family_diff(a: RegionInfo, b: RegionInfo) -> str:
    return "\n".join(difflib.unified_diff(lines(a), lines(b), lineterm="", n=0))


def load(source: str) -> dict[str, Any]:
    ns: dict[str, Any] = {}
    exec(compile(source, "<region>", "exec"), ns)
    return ns


def as_tuple(x: Any) -> tuple[Any, ...]:
    return x if isinstance(x, tuple) else (x,)


def assert_matches_spec(t: torch.Tensor, spec: Any, what: str) -> None:
    assert str(t.dtype) == spec.dtype, what
    assert tuple(t.shape) == tuple(int(s) for s in spec.shape), what
    assert tuple(t.stride()) == tuple(int(s) for s in spec.stride), what


def assert_serves(a: RegionInfo, b: RegionInfo, b_graph: Compiled) -> None:
    """a's family reference, at b's sizes, computes exactly what b's graph computed.

    The family numbers inputs and outputs in its own canonical order (b.family.inputs), which may differ
    from the exact key's (b.inputs): positions are mapped through the graph nodes.
    """
    assert a.family.key.digest == b.family.key.digest, family_diff(a, b)
    assert a.key.digest != b.key.digest
    fam_in = [b.inputs.index(n) for n in b.family.inputs]  # family input i is exact input fam_in[i]
    fam_out = [b.outputs.index(n) for n in b.family.outputs]
    assert sorted(fam_in) == list(range(len(b.inputs))) and sorted(fam_out) == list(range(len(b.outputs)))
    ref = load(a.family.source())
    assert ref["SYMBOLS"] == a.family.symbols
    # make_inputs draws inputs with b's exact specs when given b's sizes.
    drawn = ref["make_inputs"](seed=1, sizes=b.family.symbols)
    assert len(drawn) == len(b.key.inputs)
    for i, t in enumerate(drawn):
        spec = b.key.inputs[fam_in[i]]
        assert_matches_spec(t, spec, f"input {i} drawn at {b.family.symbols}")
        if spec.index_high is not None:
            assert int(t.max()) < int(spec.index_high)
    exact = load(b.source())
    exact_args = [None] * len(drawn)
    for i, t in enumerate(drawn):
        exact_args[fam_in[i]] = t
    want = as_tuple(exact["forward"](*exact_args))
    for i, got in enumerate(as_tuple(ref["forward"](*drawn))):
        torch.testing.assert_close(got, want[fam_out[i]])
    # On the values b's graph really ran on, a's reference gives b's real outputs, with b's output specs.
    ins, outs = b_graph.captured(b)
    got = as_tuple(ref["forward"](*(ins[j] for j in fam_in)))
    assert len(got) == len(outs) == len(b.key.outputs)
    for i, g in enumerate(got):
        assert_matches_spec(g, b.key.outputs[fam_out[i]], f"output {i} at {b.family.symbols}")
        torch.testing.assert_close(g, outs[fam_out[i]])


# ---------------------------------------------------------------------------- models


def rms(x, w, eps=1e-6, dim=-1):
    return w * (x * torch.rsqrt(x.pow(2).mean(dim, keepdim=True) + eps))


def rms_const(x, w):  # eps written in the body: under dynamic=True a float argument becomes a graph input
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def rope(x, cos, sin):
    b, t, c = x.shape
    q = x.view(b, t, 2, c // 2).transpose(1, 2)  # [B, T, H*D] → [B, H, T, D]
    return q * cos + rotate_half(q) * sin


def attention(q, k, v):
    b, t, c = q.shape
    q, k, v = (x.view(b, t, 2, c // 2).transpose(1, 2) for x in (q, k, v))
    att = torch.softmax(q @ k.transpose(-2, -1) * (c // 2) ** -0.5, dim=-1)
    return (att @ v).transpose(1, 2).reshape(b, t, c)


def mlp(x, w1, w2):
    return F.linear(F.gelu(F.linear(x, w1)), w2)


# Sizes (rows, sequence): no size equals another or a product of others inside one region.
SIZES = [(6, 5), (10, 7), (14, 11)]


def _randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g).requires_grad_()


MODELS: dict[str, tuple[Callable[..., Any], Callable[[torch.Generator, int, int], tuple[Any, ...]]]] = {
    "rmsnorm": (rms, lambda g, r, t: (_randn(g, r, 32), _randn(g, 32))),
    "layer_norm": (
        lambda x, w, b: F.layer_norm(x, (40,), w, b, 1e-5),
        lambda g, r, t: (_randn(g, r, 40), _randn(g, 40), _randn(g, 40)),
    ),
    "softmax": (lambda x: torch.softmax(x, -1), lambda g, r, t: (_randn(g, r, 12),)),
    "cross_entropy": (F.cross_entropy, lambda g, r, t: (_randn(g, r, 96), torch.randint(0, 96, (r,), generator=g))),
    "rope": (
        rope,
        lambda g, r, t: (_randn(g, 3, t, 32), torch.randn(t, 16, generator=g), torch.randn(t, 16, generator=g)),
    ),
    "mlp": (mlp, lambda g, r, t: (_randn(g, r, 24), _randn(g, 48, 24), _randn(g, 24, 48))),
    "attention": (attention, lambda g, r, t: tuple(_randn(g, 3, t, 32) for _ in range(3))),
}


_MODEL_RUNS: dict[tuple[str, bool, tuple[int, int]], Compiled] = {}


def compile_model(name: str, training: bool, size: tuple[int, int]) -> Compiled:
    """MODELS[name] compiled at size (rows, sequence); kept for the other tests of this file (compiles are pure)."""
    if (name, training, size) not in _MODEL_RUNS:
        fn, make = MODELS[name]
        _MODEL_RUNS[name, training, size] = infos_of(
            fn, *make(torch.Generator().manual_seed(0), *size), training=training
        )
    return _MODEL_RUNS[name, training, size]


def _case(mode: str, name: str) -> Any:
    return pytest.param(mode, name, id=f"{mode}-{name}")


# The canonical order must not depend on the sizes: the family canon walks with a structural hash no size
# reaches (an earlier build reused the exact walk, whose hash sees concrete shapes, and LayerNorm, the MLP
# and most training graphs reordered their inputs or outputs between sizes).
@pytest.mark.parametrize(
    "mode,name",
    [
        _case("inference", "rmsnorm"),
        _case("inference", "layer_norm"),
        _case("inference", "softmax"),
        _case("inference", "cross_entropy"),
        _case("inference", "rope"),
        _case("inference", "mlp"),
        _case("inference", "attention"),
        _case("training", "rmsnorm"),
        _case("training", "layer_norm"),
        _case("training", "softmax"),
        _case("training", "cross_entropy"),
        _case("training", "rope"),
        _case("training", "mlp"),
        _case("training", "attention"),
    ],
)
def test_same_family_across_sizes(mode, name):
    """Every region of every graph has one family at all SIZES, and exact keys that differ."""
    runs = [compile_model(name, mode == "training", size) for size in SIZES]
    kinds = ("forward", "backward") if mode == "training" else ("inference",)
    for kind in kinds:
        per_size = [r.infos(kind) for r in runs]
        assert per_size[0] and all(len(p) == len(per_size[0]) for p in per_size), [r.summary() for r in runs]
        assert all(i.family is not None and i.family.key.family for p in per_size for i in p)
        exact = [{i.key.digest for i in p} for p in per_size]
        assert not (exact[0] & exact[1]) and not (exact[1] & exact[2]) and not (exact[0] & exact[2])
        base = sorted(i.family.key.digest for i in per_size[0])
        for size, p in zip(SIZES[1:], per_size[1:]):
            missing = [i for i in p if i.family.key.digest not in base]
            if missing:  # the region of the first size with the same ops, to show what differs
                twin = [i for i in per_size[0] if i.ops == missing[0].ops]
                pytest.fail(f"{kind} {missing[0].ops} at {size}: new family\n{family_diff(twin[0], missing[0])}")
            assert sorted(i.family.key.digest for i in p) == base


def sdpa(ops: list[str]) -> bool:
    return any("scaled_dot_product" in o for o in ops)


def test_family_reference_at_another_members_sizes_computes_that_graph():
    """Soundness: a's family source at b's sizes draws b's input specs and reproduces b's graph on b's values."""
    cases = [  # model, training, graph kind, an op that picks the region
        ("rmsnorm", False, "inference", "rsqrt"),
        ("rmsnorm", True, "backward", "view"),  # the weight gradient: sum over rows, view to [s1]
        ("layer_norm", True, "forward", "var_mean"),  # three outputs: the norm, its rstd and mean
        ("softmax", True, "backward", "fma"),
        ("cross_entropy", False, "inference", "gather"),  # an index input: its bound is a symbol
        ("rope", False, "inference", "cat"),
        ("attention", False, "inference", sdpa),  # Inductor's pattern makes it SDPA without grad
        ("attention", True, "forward", "amax"),  # with grad: bmm, scale, softmax, bmm
        ("mlp", True, "backward", ["permute", "mm"]),  # the first weight's gradient: x^T @ grad
    ]
    for name, training, kind, op in cases:
        a_graph, b_graph = (compile_model(name, training, size) for size in SIZES[:2])
        a, b = a_graph.one(kind=kind, op=op), b_graph.one(kind=kind, op=op)
        assert a.family.symbols != b.family.symbols, name
        assert_serves(a, b, b_graph)


def test_mean_gradient_divisor_is_lifted_and_serves_other_sizes():
    """x.mean()'s gradient divides by the element count: written s0*s1, and right at other sizes."""

    def f(x, y):
        return x.exp().mean(), y.pow(2).mean(-1)

    runs = [
        infos_of(f, torch.randn(r, 12, requires_grad=True), torch.randn(4, 32, requires_grad=True), training=True)
        for r in (6, 10)
    ]
    a, b = (r.one(kind="backward", op="exp") for r in runs)
    assert "torch.ops.aten.div.Scalar(v1, s0*s1)" in " ".join(graph_lines(a)), lines(a)
    assert "torch.ops.aten.div.Scalar(v1, 72)" in " ".join(a.key.graph)  # the exact key: 6 * 12
    assert_serves(a, b, runs[1])
    # y.pow(2).mean(-1): its gradient divides by the row length only.
    c = runs[0].one(kind="backward", op="pow")
    assert any("div.Scalar(" in g and g.endswith(", s1)") for g in graph_lines(c)), lines(c)


def test_family_is_a_function_of_the_region():
    """A region rebuilt from its exact key alone (no graph around it) has the same family key."""
    for name, training in (("attention", True), ("layer_norm", True), ("cross_entropy", True)):
        for info in compile_model(name, training, SIZES[0]).infos():
            again = rebuild(info.key, info.symbols)
            assert again.key.digest == info.key.digest
            assert again.family is not None and again.family.key.digest == info.family.key.digest, info.ops


def test_family_keys_rebuild_and_run_from_their_own_text():
    """A family key reads back under the key grammar (passes/rebuild.py: how `cache verify` and the runtime
    op's fallback see a kernel's region) and rebuilds over its symbols to the same family digest."""
    for name, training in (("rmsnorm", True), ("cross_entropy", True), ("attention", False)):
        for info in compile_model(name, training, SIZES[0]).infos():
            fam = info.family.key
            assert parse(fam), info.ops  # every line under the grammar: sizes are integer expressions
            if name == "attention":
                # Its view splits the hidden size s2 into literal heads x head dim ([s0, s1, 2, 16]): the
                # family holds at s2 = 32 only, so over a free s2 the rebuilt view pins it, and no input
                # dim is s2 any more. Sound (a narrower family), but not rebuildable over free symbols.
                continue
            again = rebuild(fam, info.family.symbols)
            assert again.key.digest == fam.digest, info.ops


def test_hf_llama_rmsnorm_regions_share_families_across_sequence_lengths():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=96,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    norms = []
    for t in (5, 7):
        ids = torch.randint(0, 96, (1, t))
        compiled = infos_of(lambda ids: model(input_ids=ids).logits, ids)
        norms.append([i for i in compiled.infos() if "rsqrt" in i.ops])
    assert len(norms[0]) == len(norms[1]) == 3
    for a, b in zip(norms[0], norms[1]):
        assert a.family.key.digest == b.family.key.digest, family_diff(a, b)


# ---------------------------------------------------------------------------- what makes another family


def test_differs_by_epsilon_dtype_reduction_dim_layout_and_broadcast():
    """One graph, one region per variant (each picked by its row count); sizes alone never make another family."""
    g = torch.Generator().manual_seed(0)
    w, w1 = torch.randn(32, generator=g), torch.randn(1, generator=g)
    x = {r: torch.randn(r, 32, generator=g) for r in (6, 10, 14, 26, 38)}
    x18, w64 = torch.randn(18, 32, dtype=torch.float64, generator=g), w.double()
    x22t = torch.randn(32, 22, generator=g).t()  # [22, 32], strides (1, 22)

    def variants(x6, x10, x14, x18, x22t, x26, x38, w, w64, w1):
        return (
            rms(x6, w),
            rms(x10, w),  # only the rows differ
            rms(x14, w, eps=1e-5),
            rms(x18, w64),
            rms(x22t, w),
            rms(x26, w1),  # a weight that broadcasts
            rms(x38, w, dim=0),  # normalized over the rows
        )

    seen = infos_of(variants, x[6], x[10], x[14], x18, x22t, x[26], x[38], w, w64, w1)
    base, same = (seen.one(shape=(r, 32)) for r in (6, 10))
    assert base.key.digest != same.key.digest
    assert base.family.key.digest == same.family.key.digest, family_diff(base, same)
    assert base.family.symbols == {"s0": 6, "s1": 32} and same.family.symbols == {"s0": 10, "s1": 32}

    def differs(info: RegionInfo, base_has: str, it_has: str) -> None:
        assert info.family.key.digest != base.family.key.digest
        changed = set(lines(info)) ^ set(lines(base))
        assert any(base_has in c for c in changed) and any(it_has in c for c in changed), family_diff(base, info)

    differs(seen.one(shape=(14, 32)), "1e-06", "1e-05")
    differs(seen.one(shape=(18, 32)), "torch.float32[s0, s1]", "torch.float64[s0, s1]")
    layout = seen.one(shape=(22, 32))
    differs(layout, "[s0, s1] stride=(s1, 1)", "[s0, s1] stride=(1, s0)")
    assert layout.key.inputs[0].stride == ("1", "22")
    differs(seen.one(shape=(26, 32)), "torch.float32[s1] stride=(1)", "torch.float32[1] stride=(1)")
    differs(seen.one(shape=(38, 32)), "mean.dim(v0, [-1], True)", "mean.dim(v0, [0], True)")


def test_literals_equal_to_a_size_stay_literal():
    """Constants, exponents, slice bounds and dims keep their value where it equals a size."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731

    def literals(a, b, c, d, e, f, h, i, j):
        return (
            (a * 32).sum(-1),  # a [6, 32]: the constant equals the hidden size
            (b * 32).sum(-1),  # b [10, 16]: the same graph at hidden 16
            (c * c.shape[-1]).sum(-1),  # c [14, 32]: x * 32 again ...
            (d * d.shape[-1]).sum(-1),  # d [18, 16]: ... but x * 16 here: another computation
            e.pow(32).sum(-1),  # e [22, 32]
            f.pow(32).sum(-1),  # f [26, 16]
            h[:, :8].softmax(-1),  # h [8, 16]: the slice bound equals the rows
            i.softmax(2),  # i [6, 2, 32]: the dim equals a size
            j.softmax(2),  # j [6, 3, 32]
        )

    seen = infos_of(
        literals, r(6, 32), r(10, 16), r(14, 32), r(18, 16), r(22, 32), r(26, 16), r(8, 16), r(6, 2, 32), r(6, 3, 32)
    )
    a, b = seen.one(shape=(6, 32)), seen.one(shape=(10, 16))
    assert "v0 = torch.ops.aten.mul.Tensor(in0, 32)" in graph_lines(a), lines(a)
    assert a.family.key.digest == b.family.key.digest, family_diff(a, b)
    c, d = seen.one(shape=(14, 32)), seen.one(shape=(18, 16))
    assert c.family.key.digest == a.family.key.digest  # x * 32 at hidden 32, however it was written
    assert c.family.key.digest != d.family.key.digest
    assert "v0 = torch.ops.aten.mul.Tensor(in0, 16)" in graph_lines(d)
    e, f = seen.one(shape=(22, 32)), seen.one(shape=(26, 16))
    assert "v0 = torch.ops.aten.pow.Tensor_Scalar(in0, 32)" in graph_lines(e), lines(e)
    assert e.family.key.digest == f.family.key.digest, family_diff(e, f)
    h = seen.one(shape=(8, 16))
    assert h.family.symbols == {"s0": 8, "s1": 16}
    assert "v0 = torch.ops.aten.slice.Tensor(in0, 1, 0, 8)" in graph_lines(h), lines(h)
    i, j = seen.one(shape=(6, 2, 32)), seen.one(shape=(6, 3, 32))
    assert i.family.symbols == {"s0": 6, "s1": 2, "s2": 32}
    assert "v0 = torch.ops.aten.amax.default(in0, [2], True)" in graph_lines(i), lines(i)
    assert i.family.key.digest == j.family.key.digest, family_diff(i, j)


def test_repeated_sizes_and_size_one_dims():
    """Equal sizes share a symbol (an [N, N] input is another family than [N, M]); 1 stays a literal."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731

    def shapes(a, b, c, d, e, f):
        return tuple(t.softmax(-1) for t in (a, b, c, d, e, f))

    seen = infos_of(shapes, r(8, 8), r(10, 10), r(8, 12), r(6, 1, 32), r(6, 3, 32), r(1, 32))
    a, b, c = seen.one(shape=(8, 8)), seen.one(shape=(10, 10)), seen.one(shape=(8, 12))
    assert field_of(a, "input[0]") == "torch.float32[s0, s0] stride=(s0, 1)"
    assert a.family.symbols == {"s0": 8} and b.family.symbols == {"s0": 10}
    assert a.family.key.digest == b.family.key.digest
    assert field_of(c, "input[0]") == "torch.float32[s0, s1] stride=(s1, 1)"
    assert c.family.key.digest != a.family.key.digest
    d, e = seen.one(shape=(6, 1, 32)), seen.one(shape=(6, 3, 32))
    assert field_of(d, "input[0]").startswith("torch.float32[s0, 1, s1] ")
    assert field_of(e, "input[0]").startswith("torch.float32[s0, s1, s2] ")
    assert d.family.key.digest != e.family.key.digest
    f = seen.one(shape=(1, 32))
    assert field_of(f, "input[0]") == "torch.float32[1, s0] stride=(s0, 1)"
    assert f.family.symbols == {"s0": 32}


def test_ambiguous_sizes_pick_the_first_expression():
    """A size that is one symbol and a product is the symbol; among products, fewer factors, then lower symbols."""

    def views(x, y):
        return x.view(8, 8).softmax(-1), x.view(2, 32).softmax(-1), y.view(16, 4).softmax(-1)

    x, y = torch.randn(2, 4, 8), torch.randn(4, 2, 8)  # x: s0=2, s1=4, s2=8; y: s0=4, s1=2, s2=8
    first, second = infos_of(views, x, y), infos_of(views, x, y)
    s0, s1, s2 = sympy.symbols("s0 s1 s2", integer=True, positive=True)
    want = {
        ("8", "8"): [s2, s2],  # 8 is s2, not s0*s1
        ("2", "32"): [s0, s1 * s2],  # 32 is s1*s2 (two factors), not s0*s0*s2 (three)
        ("16", "4"): [s0 * s0, s0],  # 16 is s0*s0, not s1*s2: the lower symbols first
    }
    for info in first.infos():
        (view,) = [line for line in graph_lines(info) if "view.default" in line]
        sizes = view.split("view.default(in0, [", 1)[1].removesuffix("])").split(", ")
        expect = want.pop(tuple(info.key.outputs[0].shape))
        assert [sympy.sympify(e, locals={"s0": s0, "s1": s1, "s2": s2}) for e in sizes] == expect, lines(info)
    assert not want, [i.ops for i in first.infos()]
    assert first.one(shape=(4, 2, 8)).family.symbols == {"s0": 4, "s1": 2, "s2": 8}
    assert sorted(i.family.key.digest for i in first.infos()) == sorted(i.family.key.digest for i in second.infos())


# ---------------------------------------------------------------------------- dynamic shapes


def test_dynamic_dims_keep_their_identity_and_hints_do_not_reach_the_key():
    """x's rows are dynamic (hint 32, then 16); its columns and w are static 32: other symbols, whatever the hint."""

    def f(x, w):
        return rms_const(x, w), x.unsqueeze(0).expand(16, x.shape[0], x.shape[1]) * 2

    per_hint = {}
    for n in (32, 16):
        x = torch.randn(n, 32)
        torch._dynamo.mark_dynamic(x, 0)
        seen = infos_of(f, x, torch.randn(32), dynamic=None)
        norm, expand = seen.one(op="rsqrt"), seen.one(op="expand")
        assert norm.key.inputs[0].shape[1] == "32" and norm.key.inputs[0].shape[0] != str(n)  # a dynamic graph
        assert field_of(norm, "input[0]") == "torch.float32[s0, s1] stride=(s1, 1)", lines(norm)
        assert field_of(norm, "input[1]") == "torch.float32[s1] stride=(1)"
        assert norm.family.symbols == {"s0": n, "s1": 32}  # at n=32: two symbols of one hint
        # expand's 16 stays 16 where the dynamic hint is 16; 32 is the static symbol
        assert "expand.default(v0, [16, s0, s1])" in " ".join(graph_lines(expand)), lines(expand)
        per_hint[n] = (norm, expand)
    for a, b in zip(per_hint[32], per_hint[16]):
        assert a.family.key.digest == b.family.key.digest, family_diff(a, b)


def test_fully_dynamic_graph_family_is_the_same_from_any_first_size():
    """dynamic=True at 6 rows, then (after a reset) at 10: one family; its reference runs at other sizes."""
    fams = []
    for rows in (6, 10):
        norm = infos_of(rms_const, torch.randn(rows, 32), torch.randn(32), dynamic=True).one(op="rsqrt")
        assert field_of(norm, "input[0]") == "torch.float32[s0, s1] stride=(s1, 1)", lines(norm)
        assert norm.family.symbols == {"s0": rows, "s1": 32}
        fams.append(norm)
    a, b = fams
    assert a.family.key.digest == b.family.key.digest, family_diff(a, b)
    ref = load(a.family.source())
    x, w = ref["make_inputs"](seed=1, sizes={"s0": 9, "s1": 24})
    assert x.shape == (9, 24) and w.shape == (24,)
    torch.testing.assert_close(as_tuple(ref["forward"](x, w))[0], rms_const(x, w))


# ---------------------------------------------------------------------------- the key itself


def _schema2_digest(key: KernelKey) -> str:
    """The exact digest as schema 2 defined it before families: no abstraction row."""
    rows = [("schema", "2"), ("device", key.device)]
    rows += [(f"input[{i}]", s.line()) for i, s in enumerate(key.inputs)]
    rows += [(f"output[{i}]", s.line()) for i, s in enumerate(key.outputs)]
    rows += [(f"graph[{i}]", g) for i, g in enumerate(key.graph)]
    rows.append(("returns", ", ".join(key.returns)))
    h = hashlib.sha256()
    for name, value in rows:
        h.update(f"{name}\0{value}\n".encode())
    return h.hexdigest()


def test_family_debug_lines_and_unchanged_exact_digests():
    # The region tests/data recorded before families existed (schema 1), at its sizes.
    meta = json.loads((TESTS / "data" / "kernels" / "regions" / "region_rmsnorm.json").read_text())
    info = infos_of(rms, torch.randn(6, 42, 123), torch.randn(123)).one(op="rsqrt")
    exact, fam = info.key, info.family.key
    assert exact.legacy_digest == meta["key"]
    assert not exact.family and fam.family
    exact_rows = [line.split("] ", 1)[1] for line in exact.debug_lines()]
    assert not any(row.startswith("abstraction") for row in exact_rows)
    assert "input[0]: torch.float32[6, 42, 123] stride=(5166, 123, 1)" in exact_rows
    assert exact.digest == _schema2_digest(exact)
    pre_feature = exact.to_dict()
    del pre_feature["family"]  # a sidecar written before families
    assert KernelKey.from_dict(pre_feature).digest == exact.digest
    rows = lines(info)
    assert [row for row in rows if row.startswith("abstraction")] == ["abstraction: family"]
    assert set(exact_rows) - set(rows) == {row for row in exact_rows if row.startswith(("input", "output"))}
    assert field_of(info, "input[0]") == "torch.float32[s0, s1, s2] stride=(s1*s2, s2, 1)"
    assert field_of(info, "input[1]") == "torch.float32[s2] stride=(1)"
    assert field_of(info, "output[0]") == "torch.float32[s0, s1, s2] stride=(s1*s2, s2, 1)"
    assert info.family.symbols == {"s0": 6, "s1": 42, "s2": 123}
    # No size argument here: the family's graph and returns are the exact ones; the specs and the row differ.
    assert fam.graph == exact.graph and fam.returns == exact.returns
    assert fam.digest != exact.digest and dataclasses.replace(fam, family=False).digest != fam.digest
    assert KernelKey.from_dict(fam.to_dict()) == fam
    assert info.family.family is None  # a family has no family of its own


# ---------------------------------------------------------------------------- order and robustness


def test_commutative_inputs_keep_their_order_across_sizes():
    """x * w, both inputs: the exact hash orders them by the text of their shapes, which the sizes change."""

    def f(x6, x10, w):
        return x6 * w + 1, x10 * w + 1

    seen = infos_of(f, torch.randn(6, 32), torch.randn(10, 32), torch.randn(32))
    a, b = seen.one(shape=(6, 32)), seen.one(shape=(10, 32))
    assert a.family.key.digest == b.family.key.digest, family_diff(a, b)


def test_outputs_keep_their_order_across_sizes():
    """A region's outputs: the exact hash orders them by hashes of concrete shapes."""

    def f(x6, x10):
        e6, e10 = x6.exp(), x10.exp()
        return e6, e6.sum(-1), e10, e10.sum(-1)

    seen = infos_of(f, torch.randn(6, 32), torch.randn(10, 32))
    a, b = seen.one(shape=(6, 32)), seen.one(shape=(10, 32))
    assert a.family.key.digest == b.family.key.digest, family_diff(a, b)


def test_a_scalar_summed_over_dim_zero_and_divided_is_still_keyed():
    """A sum over dim 0 of a 0-dim tensor once raised ZeroDivisionError in the divisor tracing, and with it
    the region lost its exact key too. A gap in the abstraction never costs a region its exact key."""
    seen = infos_of(lambda x: x.sum().sum(0) / 2, torch.randn(6, 32))
    info = seen.one(op="div")
    assert info.family is not None


# ---------------------------------------------------------------------------- the eager codegen


def test_real_codegen_sees_the_same_keys(monkeypatch):
    """The keys do not depend on what compiles the graph after the pass: Inductor's C++ or the eager stand-in."""
    x, w = torch.randn(6, 32), torch.randn(32)
    real = infos_of(rms, x, w).one(op="rsqrt")  # _eager_codegen leaves this test alone
    eager_codegen(monkeypatch)
    eager = infos_of(rms, x, w).one(op="rsqrt")
    assert (real.key.digest, real.family.key.digest) == (eager.key.digest, eager.family.key.digest)
