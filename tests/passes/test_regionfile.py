"""The region file's one owner (passes/regionfile.py): paths, the typed sidecar, reads, the atomic write."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import llm_inductor
from llm_inductor._errors import UsageError
from llm_inductor._files import atomic_write
from llm_inductor.cache.key import TensorSpec
from llm_inductor.compile import state as _state
from llm_inductor.passes import regionfile
from llm_inductor.passes.regionfile import Sidecar, SidecarError, load, read_sidecar
from support.paths import REGIONS, ROOT  # REGIONS: checked-in sidecars of region schema 1


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A region file as the compile writes it today: dynamic sizes and an index input (index_high)."""
    out = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as mp:  # module-scoped: conftest's per-test cache directories are not set yet
        mp.setenv("LLM_INDUCTOR_CACHE_DIR", str(out / "llm_cache"))
        mp.setenv("TORCHINDUCTOR_CACHE_DIR", str(out / "inductor_cache"))
        _state.set_config(None)
        _state.export_dir = str(out / "regions")
        try:
            f = torch.compile(
                lambda w, i: (F.embedding(i, w) * 2).sum(-1),
                dynamic=True,
                backend=llm_inductor.backend(mode="discover", min_region_us=0),
            )
            with torch.no_grad():
                f(torch.randn(10, 7), torch.randint(0, 10, (5,)))
        finally:
            _state.export_dir = None
            _state.set_config(None)
    (py,) = regionfile.region_scripts(out / "regions")
    return py


def _raw(path: Path) -> dict:
    return json.loads(regionfile.sidecar_of(path).read_text())


# ----------------------------------------------------------------------------- files written by today's code


def test_a_compiled_region_reads_back_typed_and_unchanged(exported):
    raw = _raw(exported)
    side = read_sidecar(exported)
    assert side.to_dict() == raw
    assert side.key == raw["key"] and side.key16 == raw["key"][:16] == regionfile.key16_of(exported)
    assert side.region_schema == regionfile.REGION_SCHEMA and side.legacy_key == raw["legacy_key"]
    assert side.inputs == tuple(TensorSpec.from_dict(s) for s in raw["inputs"])
    assert side.inputs[1].dtype == "torch.int64" and side.inputs[1].index_high == "s0"
    assert dict(side.symbols) == {"s0": 10, "s1": 7, "s2": 5}
    assert dict(side.bindings) == {"s0": (0, 0), "s1": (0, 1), "s2": (1, 0)}
    assert side.ops == ("embedding", "mul", "sum") and side.extra == {}
    assert side.kernel_key().digest == side.key  # key_fields rebuild the recorded key
    # a graph compiled with dynamic shapes: its family keeps Dynamo's symbols (renamed canonically), no others
    assert side.family["key16"] == side.family["key"][:16] != side.key16
    assert dict(side.family["symbols"]) == {"s0": 10, "s1": 7, "s2": 5}


def test_the_one_write_reproduces_the_compiles_files_byte_for_byte(exported, tmp_path):
    region = load(exported)
    assert region.source == exported.read_text() and region.name == exported.stem
    py = regionfile.write(tmp_path / "again", region.sidecar.key16, region.source, region.sidecar)
    assert py == regionfile.script_path(tmp_path / "again", region.sidecar.key16)
    assert py.read_bytes() == exported.read_bytes()
    assert regionfile.sidecar_of(py).read_bytes() == regionfile.sidecar_of(exported).read_bytes()
    assert sorted(p.name for p in py.parent.iterdir()) == [py.with_suffix(".json").name, py.name]  # no temporaries


@pytest.mark.parametrize("name", sorted(p.stem for p in REGIONS.glob("region_*.json")))
def test_checked_in_schema_1_sidecars_read(name):
    py = REGIONS / f"{name}.py"
    raw = _raw(py)
    side = load(py).sidecar
    assert side.region_schema == 1 and side.legacy_key is None and "legacy_key" not in side.to_dict()
    assert side.to_dict() == raw and side.kernel_key().digest == side.key
    assert len(side.outputs) == len(raw["outputs"]) and side.ops == tuple(raw["ops"])


def test_a_region_without_a_sidecar_loads_only_where_that_is_allowed():
    py = REGIONS / "region_offset_tanh.py"
    region = load(py, sidecar_optional=True)
    assert region.sidecar == Sidecar() and region.sidecar.to_dict() == {} and region.sidecar.outputs == ()
    assert region.ops == ["add", "tanh"]  # no ops recorded: read from the source
    with pytest.raises(UsageError, match="region sidecar .*region_offset_tanh.json does not exist.*regions --export"):
        load(py)


# ----------------------------------------------------------------------------- round trip and tolerance


def test_unknown_fields_and_later_additions_survive_a_rewrite(exported, tmp_path):
    raw = {**_raw(exported), "written_by_a_later_build": {"x": [1, 2]}}
    side = Sidecar(raw).with_fields(baseline_inductor_mode="max-autotune-no-cudagraphs")
    assert side.extra == {"written_by_a_later_build": {"x": [1, 2]}}
    assert side.baseline_inductor_mode == "max-autotune-no-cudagraphs" and side.key == raw["key"]
    regionfile.write_sidecar(tmp_path / "region_x.py", side)
    again = read_sidecar(tmp_path / "region_x.json")
    assert again == side and again.to_dict() == {**raw, "baseline_inductor_mode": "max-autotune-no-cudagraphs"}
    text = (tmp_path / "region_x.json").read_text()
    assert text == json.dumps(again.to_dict(), indent=1, sort_keys=True)


def test_a_partial_sidecar_is_read_and_a_reader_names_what_it_lacks():
    side = Sidecar(
        {"outputs": [{"dtype": "torch.float32", "shape": [4, "s0"], "stride": ["s0", 1]}], "legacy_key": None}
    )
    assert side.outputs == (TensorSpec("torch.float32", ("4", "s0"), ("s0", "1")),)  # integer sizes are read as text
    assert side.to_dict()["outputs"][0]["shape"] == [4, "s0"]  # ... and kept as written
    assert side.key is None and side.ops is None and dict(side.symbols) == {}
    with pytest.raises(SidecarError, match="lacks key, key_fields") as e:
        side.require("outputs", "key", "key_fields")
    assert e.value.field == "key"


def test_a_sidecar_does_not_change_with_the_dict_it_was_read_from(exported):
    raw = _raw(exported)
    side = Sidecar(raw)
    raw["key"] = "0" * 64
    raw["inputs"][0]["shape"].append("9")
    assert side.key != raw["key"] and side.to_dict() != raw
    side.to_dict()["ops"].append("exp")  # to_dict is a copy
    assert side.ops == ("embedding", "mul", "sum") and list(side.raw["ops"]) == ["embedding", "mul", "sum"]
    with pytest.raises(TypeError):
        side.symbols["s0"] = 3  # type: ignore[index]
    with pytest.raises(ValueError, match="init=False"):  # typed fields follow raw: change them with with_fields
        dataclasses.replace(side, key="0" * 64)


# ----------------------------------------------------------------------------- validation


def _set(path: str, value):
    """A change to a valid sidecar: the value at a dotted path (list indices as numbers), or removed (value=...)."""

    def apply(d: dict) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        for p in parents:
            d = d[p]
        if value is ...:
            del d[last]
        else:
            d[last] = value

    return apply


BAD = [
    ("region_schema", "2", "region_schema"),
    ("key", 5, "key"),
    ("key16", "f" * 16, "key16"),
    ("key_fields", ["graph"], "key_fields"),
    ("legacy_key", 7, "legacy_key"),
    ("device", None, "device"),
    ("inputs", "8,33", "inputs"),
    ("inputs.0", ["torch.float32"], "inputs[0]"),
    ("inputs.0.dtype", ..., "inputs[0].dtype"),
    ("inputs.0.dtype", 32, "inputs[0].dtype"),
    ("inputs.1.shape", "s2", "inputs[1].shape"),
    ("inputs.0.shape.1", True, "inputs[0].shape[1]"),
    ("outputs.0.stride.0", 1.5, "outputs[0].stride[0]"),
    ("inputs.0.aligned", "yes", "inputs[0].aligned"),
    ("inputs.1.index_high", ["s0"], "inputs[1].index_high"),
    ("symbols.s0", "10", "symbols.s0"),
    ("symbols", [10], "symbols"),
    ("bindings.s1", [0], "bindings.s1"),
    ("bindings.s1", [0, "1"], "bindings.s1[1]"),
    ("ops", "embedding", "ops"),
    ("ops.1", None, "ops[1]"),
    ("anchor", 3, "anchor"),
    ("cost", [1.0], "cost"),
    ("torch_version", 2.13, "torch_version"),
    ("baseline_inductor_mode", False, "baseline_inductor_mode"),
    ("regions", "5bec26b55092cb30", "regions"),
]


@pytest.mark.parametrize("path, value, field", BAD, ids=[f"{b[0]}={b[1]!r}" for b in BAD])
def test_each_bad_field_is_named(exported, tmp_path, path, value, field):
    raw = copy.deepcopy(_raw(exported))
    _set(path, value)(raw)
    with pytest.raises(SidecarError) as e:
        Sidecar(raw)
    assert e.value.field == field and repr(field) in str(e.value)
    # read from a file: a usage error (exit 2) naming the file, the field and the fix
    bad = tmp_path / "region_bad.py"
    regionfile.sidecar_of(bad).write_text(json.dumps(raw))
    with pytest.raises(UsageError) as u:
        read_sidecar(bad)
    assert u.value.exit_code == 2
    msg = str(u.value)
    assert str(regionfile.sidecar_of(bad)) in msg and repr(field) in msg and "regions --export" in msg


def test_a_sidecar_that_is_not_an_object_is_refused():
    for value in ([1, 2], "region", None):
        with pytest.raises(SidecarError, match="the sidecar is .*expected a JSON object"):
            Sidecar(value)


# ----------------------------------------------------------------------------- missing and corrupt files


def test_missing_unreadable_and_corrupt_files_are_usage_errors(tmp_path):
    py = tmp_path / "region_0123456789abcdef.py"
    with pytest.raises(UsageError, match=re.escape(f"region file {py} does not exist")):
        load(py)
    py.write_text("def forward(x):\n    return x\n")
    with pytest.raises(UsageError) as e:
        load(py)
    assert e.value.exit_code == 2 and f"region sidecar {py.with_suffix('.json')} does not exist" in str(e.value)
    assert "LLM_INDUCTOR_CACHE_DIR/regions" in str(e.value) and "llm-inductor regions --export" in str(e.value)
    assert read_sidecar(py, optional=True) == Sidecar()

    side = py.with_suffix(".json")
    side.write_text('{"key": ')
    for optional in (False, True):  # a sidecar that is there must be right, wanted or not
        with pytest.raises(UsageError, match=f"malformed region sidecar {re.escape(str(side))}: not JSON"):
            read_sidecar(py, optional=optional)
    side.write_text("[1, 2]")
    with pytest.raises(UsageError, match="expected a JSON object"):
        read_sidecar(side)
    side.write_bytes(b'{"key": "\xff"}')
    with pytest.raises(UsageError, match="cannot read region sidecar"):
        read_sidecar(py)
    side.write_text("{}")
    with pytest.raises(UsageError, match="lacks key, key_fields"):
        read_sidecar(py, require=("key", "key_fields"))
    py.write_bytes(b"x = '\xff'\n")
    with pytest.raises(UsageError, match="is not UTF-8 text"):
        load(py)


# ----------------------------------------------------------------------------- the atomic write


def _full_disk(monkeypatch, writes_that_fit: int = 0, n_bytes: int = 10) -> None:
    """After ``writes_that_fit`` whole writes, every write keeps its first n_bytes, then fails as a full disk would."""
    real, done = Path.write_text, []

    def write_text(self, data, *args, **kwargs):
        if len(done) < writes_that_fit:
            done.append(self)
            return real(self, data, *args, **kwargs)
        real(self, data[:n_bytes], *args, **kwargs)
        raise OSError(28, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", write_text)


def test_a_failed_write_leaves_the_old_file_whole_and_no_temporary(exported, tmp_path, monkeypatch):
    side = read_sidecar(exported)
    py = regionfile.write(tmp_path, side.key16, "# v1\n", side)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    _full_disk(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        regionfile.write_sidecar(py, side.with_fields(baseline_inductor_mode="max-autotune-no-cudagraphs"))
    with pytest.raises(OSError, match="No space left"):
        regionfile.write(tmp_path, side.key16, "# v2\n", side)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("writes_that_fit", [0, 1], ids=["sidecar fails", "script fails"])
def test_a_failed_first_write_leaves_no_script_so_the_next_compile_writes_it_again(
    exported, tmp_path, monkeypatch, writes_that_fit
):
    """The sidecar is written first: a script on disk (what writers test) always has its whole sidecar beside it."""
    side = read_sidecar(exported)
    folder = tmp_path / "regions"
    _full_disk(monkeypatch, writes_that_fit)
    with pytest.raises(OSError):
        regionfile.write(folder, side.key16, exported.read_text(), side)
    left = sorted(p.name for p in folder.iterdir())
    assert left == ([] if writes_that_fit == 0 else [f"region_{side.key16}.json"])
    if left:
        assert read_sidecar(folder / left[0]) == side


def test_atomic_write_takes_text_and_bytes_and_replaces(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    atomic_write(target, "é\n")
    assert target.read_bytes() == "é\n".encode()
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


# ----------------------------------------------------------------------------- paths and ownership


def test_paths(tmp_path):
    py = regionfile.script_path(tmp_path, "0123456789abcdef")
    assert py == tmp_path / "region_0123456789abcdef.py"
    assert regionfile.sidecar_path(tmp_path, "0123456789abcdef") == regionfile.sidecar_of(py) == py.with_suffix(".json")
    assert regionfile.script_of(regionfile.sidecar_of(py)) == py and regionfile.sidecar_of(
        py.with_suffix(".json")
    ) == py.with_suffix(".json")
    assert regionfile.script_path(tmp_path, "0123456789abcdef", prefix="graph").name == "graph_0123456789abcdef.py"
    assert regionfile.key16_of(py) == "0123456789abcdef"
    assert (
        regionfile.region_scripts(tmp_path / "nowhere") == [] and regionfile.region_sidecars(tmp_path / "nowhere") == []
    )
    py.write_text("")
    assert not regionfile.is_region_file(py)  # a script without its sidecar is not a region file
    py.with_suffix(".json").write_text("{}")
    (tmp_path / "graph_0123456789abcdef.py").write_text("")
    assert regionfile.is_region_file(py) and regionfile.region_scripts(tmp_path) == [py]
    assert regionfile.region_sidecars(tmp_path) == [py.with_suffix(".json")]


def test_no_other_module_reads_or_writes_a_sidecar_by_hand():
    """Only passes/regionfile.py turns a region path into its sidecar's or globs the regions folder."""
    hand = re.compile(r"""with_suffix\(["']\.json["']\)|glob\(f?["']region_\*""")
    found = [
        f"{p.relative_to(ROOT)}:{n}"
        for folder in ("llm_inductor", "passes", "cache")
        for p in sorted((ROOT / folder).rglob("*.py"))
        if p.name != "regionfile.py"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if hand.search(line)
    ]
    assert not found, "use llm_inductor.passes.regionfile: " + ", ".join(found)
