"""``torchrun --nproc-per-node 2`` (gloo) in tune mode: one rank's requests reach the LLM, both serve its kernel.

The ranks have a cache directory each, as on two machines, and share the Redis tier and a team key; the
LLM is the loopback OpenAI-compatible server, answering every request with a correct kernel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from llm_inductor.cache import sign
from support.loopback import LoopbackLLM, Reply, sequence
from support.paths import ROOT
from support.search import GOOD, answer

pytestmark = pytest.mark.redis

RANK = r"""
import json, os, sys
rank, work = os.environ["RANK"], sys.argv[1]
os.environ["LLM_INDUCTOR_CACHE_DIR"] = os.path.join(work, "rank" + rank)  # one cache per rank: two machines
import torch, torch.distributed as dist
import llm_inductor
from llm_inductor.compile import runtime, state
dist.init_process_group("gloo")
g = torch.Generator().manual_seed(0)
w, x = torch.randn(33, generator=g), torch.randn(8, 33, generator=g)
f = lambda x: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w
options = {"tune": True, "interpret": True, "min_region_us": 0, "candidates": 1, "rounds": 1}
with torch.no_grad():
    y = torch.compile(f, backend="llm", options=options)(x)
total = y.sum().reshape(1)
dist.all_reduce(total)  # a collective after the compile: neither rank was left behind
out = {"stats": llm_inductor.stats(), "kernels": sorted(runtime._kernels), "total": total.item(),
       "status": [row.status for r in state.reports for row in r.regions], "err": (y - f(x)).abs().max().item()}
json.dump(out, open(os.path.join(work, f"out{rank}.json"), "w"))
dist.destroy_process_group()
"""


@pytest.mark.timeout(600)
def test_two_ranks_tune_once_and_serve_the_same_kernel(tmp_path, redis_server):
    url, _, _ = redis_server
    key, pub = sign.generate(tmp_path / "team", "team")
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    with LoopbackLLM(sequence(Reply.text(answer(GOOD)))) as llm:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
            "OPENAI_BASE_URL": llm.base_url,
            "OPENAI_API_KEY": "sk-test",
            "LLM_INDUCTOR_MODEL": "loopback-model",
            "LLM_INDUCTOR_REDIS_URL": url,
            "LLM_INDUCTOR_SIGNING_KEY": str(key),
            "LLM_INDUCTOR_TRUSTED_KEYS": str(pub),
            "LLM_INDUCTOR_INTERPRET": "1",
            "TRITON_INTERPRET": "1",
        }
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        proc = subprocess.run([*cmd, str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=560)
        requests = len(llm.seen)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = [json.loads((tmp_path / f"out{r}.json").read_text()) for r in (0, 1)]
    assert requests == 1, f"{requests} LLM requests: each rank asked"  # one rank's search, one candidate
    assert out[0]["kernels"] == out[1]["kernels"] and len(out[0]["kernels"]) == 1  # the same kernel on both
    assert [o["status"] for o in out] == [["hit (tuned now)"]] * 2
    assert all(o["stats"]["substituted"] == 1 and o["stats"]["kernel_calls"] == 1 for o in out)
    assert out[0]["total"] == out[1]["total"] and max(o["err"] for o in out) < 1e-4
    assert "waiting up to 600 s" in proc.stderr  # the other rank waited for the tuner, then served its kernel
