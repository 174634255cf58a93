"""backend="llm" compiles real models exactly as Inductor would, and maps their regions.

Every test compares outputs (and gradients, for training) with eager, and asserts
the number of regions the pass found, so it cannot pass with the pass switched off.
Region counts are checked-in expectations for torch 2.13's decompositions; a
different count after a torch upgrade is worth a look, not a silent pass.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

import llm_inductor
from llm_inductor.compile import state as _state
from support.util import Block, UnrolledGRU

torch.manual_seed(0)


def compile_llm(model, **options):
    return torch.compile(model, backend=llm_inductor.backend(min_region_us=0, **options))


def check_training(model: nn.Module, *inputs: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4):
    ref = copy.deepcopy(model)
    out = compile_llm(model)(*inputs)
    expected = ref(*inputs)
    torch.testing.assert_close(out, expected, atol=atol, rtol=rtol)
    out.float().square().mean().backward()
    expected.float().square().mean().backward()
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(
            p.grad, q.grad, atol=atol, rtol=rtol, msg=lambda m, name=name: f"grad of {name}: {m}"
        )


def graph_kinds() -> list[str]:
    return [r.kind for r in _state.reports]


def test_mlp_training():
    model = nn.Sequential(nn.Linear(24, 48), nn.GELU(), nn.Linear(48, 48), nn.SiLU(), nn.Linear(48, 10))
    check_training(model, torch.randn(7, 24))
    assert graph_kinds() == ["forward", "backward"]
    assert llm_inductor.stats()["regions"] == 11


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_cnn_with_batchnorm(train):
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 4, 3),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    model.train(train)
    x = torch.randn(2, 3, 9, 9)
    if train:
        check_training(model, x, atol=1e-4, rtol=1e-3)
        assert graph_kinds() == ["forward", "backward"]
    else:
        with torch.no_grad():
            torch.testing.assert_close(compile_llm(model)(x), model(x), atol=1e-5, rtol=1e-4)
        assert graph_kinds() == ["inference"]
    assert llm_inductor.stats()["regions"] == (7 if train else 3)


def test_transformer_block_with_sdpa():
    check_training(Block(), torch.randn(2, 6, 32), atol=1e-4, rtol=1e-3)
    stats = llm_inductor.stats()
    assert stats["regions"] == 21  # 19 + the SDPA forward and backward regions
    anchors = {row.anchor for r in _state.reports for row in r.regions}
    assert any(a and a.startswith("_scaled_dot_product") for a in anchors), anchors


def test_gru_cell_unrolled():
    check_training(UnrolledGRU(), torch.randn(5, 3, 8), atol=1e-5, rtol=1e-4)
    assert llm_inductor.stats()["regions"] == 29


def test_hf_llama_from_config():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = transformers.LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 96, (2, 11))
    with torch.no_grad():
        expected = model(ids).logits
        got = compile_llm(model)(ids).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert llm_inductor.stats()["regions"] == 22
    norms = [row for r in _state.reports for row in r.regions if {"rsqrt", "mean", "pow"} <= set(row.ops)]
    assert len(norms) == 5  # 2 layers × 2 norms + the final norm


def test_dynamic_shapes_one_graph_for_all_sizes():
    from support.util import RMSNorm

    model = nn.Sequential(nn.Linear(16, 33), RMSNorm(33))
    compiled = compile_llm(model)
    for n in (5, 9, 12):
        x = torch.randn(n, 16)
        torch._dynamo.mark_dynamic(x, 0)
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=1e-4)
    assert llm_inductor.stats()["graphs"] == 1
    assert llm_inductor.stats()["regions"] == 2
    rows = _state.reports[0].regions
    assert any("s" in shape for row in rows for shape in row.shapes), [r.shapes for r in rows]


def test_automatic_dynamic_recompiles_once():
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
    compiled = compile_llm(model)
    with torch.no_grad():
        for n in (3, 4, 6):
            x = torch.randn(n, 8)
            torch.testing.assert_close(compiled(x), model(x))
    assert llm_inductor.stats()["graphs"] == 2  # static for n=3, then one dynamic graph
    assert llm_inductor.stats()["regions"] == 2


class Counter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 6)
        self.register_buffer("running", torch.zeros(6))

    def forward(self, x):
        y = torch.relu(self.lin(x))
        self.running.mul_(0.9).add_(0.1 * y.mean(0))
        return y * self.running


def test_buffer_mutated_in_place():
    model, ref = Counter(), Counter()
    ref.load_state_dict(model.state_dict())
    compiled = compile_llm(model)
    with torch.no_grad():
        for _ in range(3):
            x = torch.randn(4, 6)
            torch.testing.assert_close(compiled(x), ref(x))
    torch.testing.assert_close(model.running, ref.running)
    assert llm_inductor.stats()["regions"] == 2


def with_graph_break(x, w):
    y = torch.sin(x) @ w
    torch._dynamo.graph_break()
    return torch.softmax(y * 2.0, dim=-1) + x.sum()


def test_function_with_graph_break():
    x, w = torch.randn(5, 7), torch.randn(7, 7)
    torch.testing.assert_close(compile_llm(with_graph_break)(x, w), with_graph_break(x, w))
    assert llm_inductor.stats()["graphs"] == 2
    assert llm_inductor.stats()["regions"] == 3
