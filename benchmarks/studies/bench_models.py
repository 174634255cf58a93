"""Small models shared by the compile-overhead and cache-latency benchmarks: build(name, device) -> (model, inputs)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class Block(nn.Module):
    def __init__(self, d: int = 64, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = RMSNorm(d), RMSNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.norm2(x))


class GRU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(16, 32)

    def forward(self, xs):
        h = xs.new_zeros(xs.shape[1], 32)
        for x in xs.unbind(0):
            h = self.cell(x, h)
        return h


def build(name: str, device: str = "cpu"):
    torch.manual_seed(0)
    if name == "mlp":
        model, inputs = (
            nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 64), RMSNorm(64)),
            (torch.randn(32, 64),),
        )
    elif name == "cnn":
        model = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 8, 3), nn.Flatten()
        ).eval()
        inputs = (torch.randn(4, 3, 16, 16),)
    elif name == "block":
        model, inputs = Block(), (torch.randn(2, 16, 64),)
    elif name == "gru":
        model, inputs = GRU(), (torch.randn(6, 4, 16),)
    elif name == "llama":
        import transformers

        cfg = transformers.LlamaConfig(
            vocab_size=256,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
        )
        model, inputs = transformers.LlamaForCausalLM(cfg).eval(), (torch.randint(0, 256, (2, 16)),)
    else:
        raise SystemExit(f"unknown model {name!r}; choose from mlp, cnn, block, gru, llama")
    return model.to(device), tuple(t.to(device) for t in inputs)
