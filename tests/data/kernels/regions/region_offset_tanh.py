"""A hand-written region without a sidecar (its specs are traced): 1e6 + tanh(x).

Its output is nearly constant (it moves by at most 2 in 1e6 whatever the input),
which is the case where a floor-based tolerance would accept a constant kernel.
"""
import torch

SYMBOLS = {}


def forward(in0):
    v0 = torch.ops.aten.tanh.default(in0)
    return torch.ops.aten.add.Tensor(v0, 1000000.0)


def make_inputs(seed=0, device="cpu", sizes=None):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(33, 65, generator=g).to(device),)
