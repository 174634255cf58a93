"""Whole models from ``transformers`` configs with random weights: prefill and a training step.

Configs are built from their classes directly (no download, no hub access) with
the layer shapes of the named checkpoint and fewer layers, so that the per-layer
kernels are the real ones. APIs used exist in transformers 4.45 to 5.24: config
kwargs, ``Model(config)``, ``model(input_ids=..., labels=...)``. Dropout is off
(the check compares modes, and dropout draws differ between eager and compiled
code); attention is SDPA, the default.

Prefill: ``model(input_ids)`` under no_grad at batch x sequence 4 x 2048, logits checked.
Train: forward with labels, backward, ``AdamW.step`` (fused on CUDA; eager in every
mode, so modes differ only in the model's kernels), ``zero_grad``; the check
compares the loss and every gradient of one forward-backward from the same weights.
FLOPs are counted by ``torch.utils.flop_counter`` on the eager step (matmuls and
attention; causal attention counted in full). Bytes: the weights once for
prefill (plus ids and logits); for training, weights read twice, gradients
written, AdamW reading weight, grad and two moments and writing three: 10x the
weight bytes, all bf16.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from benchmarks.common import Case, Step, Workload

BF16 = torch.bfloat16
SEQ = {False: (4, 2048), True: (2, 24)}
_NO_DROPOUT = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
_BERT_NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
_TINY = {
    "hidden_size": 64,
    "intermediate_size": 112,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 1,
    "vocab_size": 512,
    "max_position_embeddings": 128,
}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    config: str  # transformers config class
    model: str  # transformers model class
    full: dict[str, Any]
    tiny: dict[str, Any]
    about: str
    est_s: dict[str, float] = field(default_factory=dict)  # prefill seconds per mode on the H200 (train: x2)


SPECS = [
    ModelSpec(
        "llama",
        "LlamaConfig",
        "LlamaForCausalLM",
        {
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "num_hidden_layers": 2,
            "vocab_size": 128256,
            "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-5,
        },
        _TINY,
        "Llama-3-8B layers x2",
    ),
    ModelSpec(
        "qwen2",
        "Qwen2Config",
        "Qwen2ForCausalLM",
        {
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "num_hidden_layers": 2,
            "vocab_size": 152064,
            "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-6,
        },
        _TINY,
        "Qwen2-7B layers x2",
    ),
    ModelSpec(
        "gpt2",
        "GPT2Config",
        "GPT2LMHeadModel",
        {"n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257, "n_positions": 2048, **_NO_DROPOUT},
        {
            "n_embd": 64,
            "n_layer": 1,
            "n_head": 4,
            "vocab_size": 512,
            "n_positions": 128,
            "bos_token_id": 0,
            "eos_token_id": 0,
            **_NO_DROPOUT,
        },
        "GPT-2 small (124M), positions extended to 2048",
    ),
    ModelSpec(
        "bert",
        "BertConfig",
        "BertForMaskedLM",
        {
            "hidden_size": 768,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "intermediate_size": 3072,
            "vocab_size": 30522,
            "max_position_embeddings": 2048,
            **_BERT_NO_DROPOUT,
        },
        {
            "hidden_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "intermediate_size": 112,
            "vocab_size": 512,
            "max_position_embeddings": 128,
            **_BERT_NO_DROPOUT,
        },
        "BERT-base, masked LM head, positions extended to 2048",
    ),
    ModelSpec(
        "mixtral",
        "MixtralConfig",
        "MixtralForCausalLM",
        {
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "num_hidden_layers": 2,
            "vocab_size": 32000,
            "max_position_embeddings": 8192,
            "num_local_experts": 8,
            "num_experts_per_tok": 2,
        },
        {**_TINY, "num_local_experts": 4, "num_experts_per_tok": 2},
        "Mixtral-8x7B layers x2, 8 experts, top-2",
        {"inductor": 60.0, "llm": 60.0, "max-autotune": 200.0},
    ),
]


def build_model(spec: ModelSpec, device: str, tiny: bool) -> torch.nn.Module:
    import transformers

    kwargs = {**(spec.tiny if tiny else spec.full), "use_cache": False, "attn_implementation": "sdpa"}
    config = getattr(transformers, spec.config)(**kwargs)
    torch.manual_seed(0)
    with torch.device(device):  # initialise on the device: 1-3 B parameters on a CPU take tens of seconds
        model = getattr(transformers, spec.model)(config)
    return model.to(BF16)


def _param_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _inputs(model: torch.nn.Module, device: str, tiny: bool) -> torch.Tensor:
    b, s = SEQ[tiny]
    gen = torch.Generator(device=device).manual_seed(0)
    return torch.randint(0, model.config.vocab_size, (b, s), device=device, generator=gen)


def prefill(spec: ModelSpec) -> Callable[[str, bool], Workload]:
    def build(device: str, tiny: bool) -> Workload:
        model = build_model(spec, device, tiny).eval()
        ids = _inputs(model, device, tiny)

        def make_step(wrap: Callable[[Any], Any]) -> Step:
            m = wrap(model)

            def fwd() -> list[torch.Tensor]:
                with torch.no_grad():
                    return [m(input_ids=ids).logits]

            return Step(outputs=fwd, run=fwd)

        def reference(dtype: torch.dtype) -> list[torch.Tensor]:
            ref = copy.deepcopy(model).to(dtype)
            with torch.no_grad():
                out = [ref(input_ids=ids).logits.float()]
            del ref
            return out

        logits = ids.numel() * model.config.vocab_size * 2
        return Workload(
            "prefill", make_step, reference, flops=None, bytes=_param_bytes(model) + 8 * ids.numel() + logits
        )

    return build


def train(spec: ModelSpec) -> Callable[[str, bool], Workload]:
    def build(device: str, tiny: bool) -> Workload:
        model = build_model(spec, device, tiny).train()
        ids = _inputs(model, device, tiny)
        params = [p for p in model.parameters() if p.requires_grad]
        state0 = {k: v.detach().clone() for k, v in model.state_dict().items()}

        def restore() -> None:
            with torch.no_grad():
                model.load_state_dict(state0)
            for p in params:
                p.grad = None

        def make_step(wrap: Callable[[Any], Any]) -> Step:
            restore()
            m = wrap(model)
            opt = torch.optim.AdamW(params, lr=1e-5, fused=device == "cuda")

            def fwd_bwd() -> list[torch.Tensor]:
                loss = m(input_ids=ids, labels=ids).loss
                loss.backward()
                outs = [loss.detach(), *(p.grad for p in params)]
                for p in params:
                    p.grad = None
                return outs

            def step() -> torch.Tensor:
                loss = m(input_ids=ids, labels=ids).loss
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                return loss

            return Step(outputs=fwd_bwd, run=step, train=True)

        def reference(dtype: torch.dtype) -> list[torch.Tensor]:
            restore()
            ref = copy.deepcopy(model).to(dtype)
            loss = ref(input_ids=ids, labels=ids).loss
            loss.backward()
            out = [loss.detach().float(), *(p.grad.float() for p in ref.parameters() if p.requires_grad)]
            del ref, loss
            return out

        return Workload("train", make_step, reference, flops=None, bytes=10 * _param_bytes(model) + 16 * ids.numel())

    return build


def _est(spec: ModelSpec, factor: float) -> dict[str, float]:
    base = {"eager": 15.0, "inductor": 45.0, "llm": 45.0, "max-autotune": 150.0, **spec.est_s}
    base["llm-max-autotune"] = base["max-autotune"]
    return {k: v * factor for k, v in base.items()}


def _shape(spec: ModelSpec) -> Callable[[bool], str]:
    return lambda tiny: f"{'x'.join(map(str, SEQ[tiny]))} {'tiny' if tiny else spec.about}"


CASES = [
    c
    for spec in SPECS
    for c in (
        Case(f"{spec.name}_prefill", "models", "prefill", _shape(spec), prefill(spec), _est(spec, 1.0), matmul=True),
        Case(f"{spec.name}_train", "models", "train", _shape(spec), train(spec), _est(spec, 2.0), matmul=True),
    )
]
