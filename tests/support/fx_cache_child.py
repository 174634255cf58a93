"""One phase of the FX-graph-cache test, run in a fresh process: python fx_cache_child.py ENTRY.json|- OUT.json"""

import json
import sys
from pathlib import Path

import torch
from torch._dynamo.utils import counters

import llm_inductor
from llm_inductor.cache.entry import Entry
from llm_inductor.cache.store import MemoryStore
from llm_inductor.compile import state as _state
from support.util import RMSNorm

entry_path, out_path = sys.argv[1], sys.argv[2]
if entry_path != "-":
    _state.set_store(MemoryStore([Entry.from_json(Path(entry_path).read_text())]))
else:
    _state.set_store(MemoryStore())
torch.manual_seed(0)
model, x = RMSNorm(33), torch.randn(5, 33)
with torch.no_grad():
    out = torch.compile(model, backend=llm_inductor.backend(min_region_us=0, interpret=True))(x)
    err = (out - model(x)).abs().max().item()
Path(out_path).write_text(
    json.dumps(
        {
            "stats": llm_inductor.stats(),
            "fx_hit": counters["inductor"]["fxgraph_cache_hit"],
            "fx_miss": counters["inductor"]["fxgraph_cache_miss"],
            "fx_bypass": counters["inductor"]["fxgraph_cache_bypass"],
            "err": err,
        }
    )
)
