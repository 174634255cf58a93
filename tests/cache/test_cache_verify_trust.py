"""`cache verify` and `cache add` trust only what they can check: the key's lines, never an entry's region file.

An attacker with write access to a pack or to the team's Redis controls everything in an
entry but this machine's own records. The attack here: a region file that runs code when
imported, and describes a computation (2x RMSNorm) for which the entry's kernel is
right, while the key names plain RMSNorm. Verifying against the entry's region would
import that file and then sign and serve a wrong kernel.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

import llm_inductor
from llm_inductor.cache import sign
from llm_inductor.cache.entry import Entry
from llm_inductor.cache.key import KernelKey
from llm_inductor.cache.pack import write_pack
from llm_inductor.cache.redis_store import PREFIX
from llm_inductor.cli import main
from llm_inductor.compile import state as _state
from llm_inductor.passes.rebuild import KeyGraphError, parse, rebuild
from support.cache_entries import RMS_KERNEL, open_test_store

pytestmark = pytest.mark.slow

_ATTACK = """import pathlib
pathlib.Path({marker!r}).write_text("the entry's region file ran")
import torch


def forward(in0, in1):
    return 2 * in0 * torch.rsqrt(in0.pow(2).mean(-1, keepdim=True) + 1e-6) * in1


def make_inputs(seed=0, device="cpu", sizes=None):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 33, generator=g), torch.randn(33, generator=g)
"""
_DOUBLED = RMS_KERNEL.replace(
    "y = x * (1.0 / tl.sqrt(mean_sq + eps)) * w", "y = 2.0 * x * (1.0 / tl.sqrt(mean_sq + eps)) * w"
)


class _RMSNorm(torch.nn.Module):
    def __init__(self, dim: int = 33) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


def _compile_here() -> dict:
    """A compile on this machine: the hot miss is recorded with its region (the local record)."""
    _state.reset()
    torch._dynamo.reset()
    with torch.no_grad():
        torch.compile(_RMSNorm(), backend=llm_inductor.backend(min_region_us=0))(torch.randn(8, 33))
    cache = Path(_state.config().cache_path)
    (sidecar,) = (cache / "regions").glob("region_*.json")
    return json.loads(sidecar.read_text())


def _foreign_entry(meta: dict, tmp_path: Path, kernel: str, marker: Path) -> Entry:
    """An entry for the local region's key, signed by a key this machine does not trust."""
    entry = Entry(
        key=meta["key"],
        key_fields=meta["key_fields"],
        kernel_source=kernel,
        region_source=_ATTACK.format(marker=str(marker)),
        region_meta={**meta, "outputs": meta["outputs"], "symbols": {"s0": 10**12}},
        provenance={"provider": "attacker"},
        versions={"torch": torch.__version__, "gpu": "cpu"},
    )
    return sign.local_key(tmp_path / "attacker").sign(entry)


@pytest.fixture
def cpu_cli(monkeypatch):
    monkeypatch.setenv("LLM_INDUCTOR_INTERPRET", "1")
    monkeypatch.setenv("LLM_INDUCTOR_MIN_REGION_US", "0")


def _verify_output(capsys) -> str:
    rc = main(["cache", "verify", "--device", "cpu"])
    out = capsys.readouterr().out
    return rc, out


@pytest.mark.parametrize(
    "kernel, accepted", [(_DOUBLED, False), (RMS_KERNEL, True)], ids=["wrong_kernel", "right_kernel"]
)
def test_a_packs_region_file_is_never_run_and_its_kernel_is_judged_against_the_key(
    tmp_path, capsys, cpu_cli, kernel, accepted
):
    meta = _compile_here()
    marker = tmp_path / "pwned"
    pack = tmp_path / "attack.jsonl"
    write_pack(pack, [_foreign_entry(meta, tmp_path, kernel, marker)])
    assert main(["cache", "import", str(pack)]) == 0
    capsys.readouterr()
    rc, out = _verify_output(capsys)
    assert not marker.exists()
    store = open_test_store(_state.config().cache_path, policy=None)
    hit = store.lookup(meta["key"])
    if not accepted:
        assert rc == 1 and "rejected (wrong_values)" in out, out
        assert hit is None
    else:
        assert rc == 0 and "verified (untrusted_key before)" in out, out
        assert hit is not None and hit.kernel_source == RMS_KERNEL
        assert "pathlib" not in hit.region_source and hit.region_source.count("torch.ops.aten.") == 6
        assert hit.region_meta["symbols"] == {}  # from the local record, not the entry's


def test_a_redis_body_with_an_attack_is_refused_with_nothing_run(tmp_path, capsys, cpu_cli, monkeypatch, redis_server):
    url, _, client = redis_server
    monkeypatch.setenv("LLM_INDUCTOR_REDIS_URL", url)
    meta = _compile_here()
    marker = tmp_path / "pwned"
    entry = _foreign_entry(meta, tmp_path, _DOUBLED, marker)
    client.hset(PREFIX + "entry:" + entry.key, entry.entry_id, entry.to_json())  # someone with Redis write access
    rc, out = _verify_output(capsys)
    assert rc == 1 and "rejected (wrong_values)" in out, out
    assert not marker.exists()


def test_an_entry_no_compile_here_recorded_is_not_verified(tmp_path, capsys, cpu_cli):
    """Without a local record there are no trusted sizes: the entry's own (10**12) are never used."""
    meta = _compile_here()
    foreign = _foreign_entry(meta, tmp_path, RMS_KERNEL, tmp_path / "pwned")
    shutil.rmtree(Path(_state.config().cache_path) / "regions")  # every region file and family file
    store = open_test_store(_state.config().cache_path, policy=None)
    store.resolve_pending(meta["key"])
    store.write(foreign, sign_unsigned=False)
    rc, out = _verify_output(capsys)
    assert rc == 1 and "not verified (not_recorded)" in out, out
    assert store.lookup(meta["key"]) is None


def _key_with(meta: dict, line: str) -> dict:
    key = KernelKey.from_dict(meta["key_fields"])
    return dataclasses.replace(key, graph=(line, *key.graph[1:])).to_dict()


@pytest.mark.parametrize(
    "line, reason",
    [
        ("v0 = __import__('os').system('touch /tmp/pwned')", "grammar"),
        ("v0 = torch.ops.aten.pow.Tensor_Scalar(in0, 2); import os", "grammar"),
        ("v0 = torch.ops.aten.pow.Tensor_Scalar(in0, (lambda: 2)())", "grammar"),
        ("v0 = torch.ops.aten.pow.Tensor_Scalar(in0, 2).__class__", "grammar"),
        ("v0 = torch.ops.aten.add_.Tensor(in0, 2)", "op"),
        ("v0 = torch.ops.aten.bernoulli.default(in0)", "op"),
        ("v0 = torch.ops.aten.no_such_op.default(in0)", "op"),
        ("v0 = torch.ops.profiler._record_function_enter.default('x')", "grammar"),
        ("v0 = torch.ops.aten.pow.Tensor_Scalar(in0, 2, 3)", "mismatch"),
    ],
)
def test_a_key_outside_the_grammar_is_refused_with_its_reason(tmp_path, line, reason):
    meta = _compile_here()
    key = KernelKey.from_dict(_key_with(meta, line))
    with pytest.raises(KeyGraphError) as e:
        rebuild(key, {})
    assert e.value.reason == reason, e.value


def test_a_key_whose_specs_its_graph_does_not_produce_is_a_mismatch(tmp_path):
    """A self-consistent key of another computation is a key like any other; one whose stated
    output specs its own graph does not produce is refused."""
    meta = _compile_here()
    key = KernelKey.from_dict(meta["key_fields"])
    assert rebuild(key, {}).digest == key.digest
    wrong = dataclasses.replace(key.outputs[0], dtype="torch.bfloat16")
    with pytest.raises(KeyGraphError) as e:
        rebuild(dataclasses.replace(key, outputs=(wrong, *key.outputs[1:])), {})
    assert e.value.reason == "mismatch" and "output[0]" in str(e.value)


def test_cache_add_verifies_against_the_keys_region_not_the_py_file(tmp_path, capsys, cpu_cli):
    meta = _compile_here()
    cache = Path(_state.config().cache_path)
    (region,) = (cache / "regions").glob("region_*.py")
    marker = tmp_path / "pwned"
    region.write_text(_ATTACK.format(marker=str(marker)))  # a region file that claims 2x RMSNorm
    doubled = tmp_path / "doubled.py"
    doubled.write_text(_DOUBLED)
    assert main(["cache", "add", str(region), str(doubled), "--device", "cpu"]) == 1
    captured = capsys.readouterr()
    assert "rejected (wrong_values)" in captured.err and "differs from the region its key describes" in captured.err
    assert not marker.exists()
    # a sidecar whose key lines are code: a usage error naming the grammar, before anything runs
    region.with_suffix(".json").write_text(json.dumps({**meta, "key_fields": _key_with(meta, "v0 = exec('1')")}))
    assert main(["cache", "add", str(region), str(doubled), "--device", "cpu"]) == 2
    assert "key_grammar" in capsys.readouterr().err


def test_every_line_the_partitioner_writes_parses():
    """The grammar accepts what ``_Canon.statement`` emits: constants, dtypes, devices, sizes, getitem."""
    fields = {
        "graph": [
            "v0 = torch.ops.aten.full.default([s0, 4], float('-inf'), device=_device, dtype=torch.float32, "
            "layout=torch.strided, pin_memory=False)",
            "v1 = torch.ops.aten.var_mean.correction(in0, [-1], correction=0, keepdim=True)",
            "v2 = v1[1]",
            "v3 = torch.ops.aten.view.default(v2, [FloorDiv(s0*4, 2), -1])",
            "v4 = torch.ops.aten.clone.default(v3, memory_format=torch.contiguous_format)",
        ],
        "inputs": [{"dtype": "torch.float32", "shape": ["s0", "4"], "stride": ["4", "1"]}],
        "outputs": [],
        "device": "cpu",
        "returns": ["v4", "v0"],
        "schema": 2,
    }
    stmts = parse(KernelKey.from_dict(fields))
    assert [s.name for s in stmts] == ["v0", "v1", "v2", "v3", "v4"]
    assert stmts[0].args[1] == float("-inf") and stmts[0].kwargs["dtype"] is torch.float32


def test_an_entry_of_key_schema_1_is_migrated_by_cache_verify(tmp_path, capsys, cpu_cli, caplog):
    """Schema 1 keys named no returned values. Such an entry is never served; the compile says so
    once, and `cache verify` re-verifies it against the region recorded here, under the new key."""
    meta = _compile_here()
    new = KernelKey.from_dict(meta["key_fields"])
    old = dataclasses.replace(new, returns=(), schema=1)
    assert old.digest == meta["legacy_key"] != new.digest
    store = open_test_store(_state.config().cache_path, policy=None)
    store.put(
        Entry(
            key=old.digest,
            key_fields=old.to_dict(),
            kernel_source=RMS_KERNEL,
            region_source="# schema 1\n",
            region_meta={"key": old.digest},
            versions={"torch": torch.__version__, "gpu": "cpu"},
        )
    )
    with caplog.at_level("WARNING", logger="llm_inductor"):
        _compile_here()
    assert llm_inductor.stats()["substituted"] == 0
    assert any("key_schema" in r.getMessage() and "cache verify" in r.getMessage() for r in caplog.records)
    rc, out = _verify_output(capsys)
    assert rc == 0 and "verified (key_schema" in out, out
    hit = open_test_store(_state.config().cache_path, policy=None).lookup(new.digest)
    assert hit is not None and hit.kernel_source == RMS_KERNEL and hit.key_fields["schema"] == 2
