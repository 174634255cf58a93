"""One phase of test_aot_cache's multi-process test: python aot_cache_child.py compile|add|revoke OUT.json

compile: compile the tiny RMSNorm with backend="llm" over the persistent store, run it once.
add:     first put a kernel for its region (from the region file the first phase wrote), then compile.
revoke:  first revoke that kernel's key (another process's act), then compile.
"""

import json
import sys
from pathlib import Path

import torch
from torch._dynamo.utils import counters

import llm_inductor
from llm_inductor.compile import state as _state
from support.util import RMSNorm, entry_for

phase, out_path = sys.argv[1], sys.argv[2]
store = _state.store()
if phase != "compile":
    (region,) = (_state.config().cache_path / "regions").glob("region_*.py")
    entry = entry_for(region, "rmsnorm.py")
    if phase == "add":
        from llm_inductor.cache.trust import current_versions

        entry.versions = current_versions("cpu")
        store.trust().policy = lambda src: []  # the tests' kernel is trusted as written; policy is tested elsewhere
        store.put(entry)
        assert store.lookup(entry.key) is not None, "the test kernel is not servable here"
    else:
        store.revoke(f"key:{entry.key}", "test")
torch.manual_seed(0)
model, x = RMSNorm(33), torch.randn(5, 33)
with torch.no_grad():
    out = torch.compile(model, backend="llm")(x)
    err = (out - model(x)).abs().max().item()
Path(out_path).write_text(
    json.dumps(
        {
            "stats": llm_inductor.stats(),
            "aot_hit": counters["aot_autograd"]["autograd_cache_hit"],
            "err": err,
        }
    )
)
