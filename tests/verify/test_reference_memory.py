"""The parent's host memory per draw: references that free each value at its last use, a chunked input
transform, inputs kept once (in their file), and a build estimate from the references' measured peaks.

At 16384 x 128256 the cross-entropy region's float64 reference kept four 17 GB intermediates alive at once,
and its inputs lived twice (as tensors and in the workers' file): the H200's host could not build its draws.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from llm_inductor.verify import draw_set, draws, reference
from llm_inductor.verify.draws import Draw, build_inputs, load_inputs
from llm_inductor.verify.loaded_region import load_region
from support.paths import REGIONS

CE = REGIONS / "region_cross_entropy.py"  # labels (33,) and float32 logits (33, 781): forward as Inductor wrote it


def _logits_bytes(region) -> int:
    (_, logits) = region.make_inputs(seed=0)
    return logits.numel() * 8  # as float64


def test_lean_forward_computes_forward_and_frees_each_value_at_its_last_use():
    region = load_region(CE)
    inputs = list(region.make_inputs(seed=3))
    want = region.forward(*inputs)
    args = list(inputs)
    live = reference._LiveBytes()
    for t in args:
        live.track(t)
    with live:
        got = reference.call_lean(region, args)
    assert args == []  # the caller's list no longer holds the inputs
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    logits = inputs[1].numel() * 4
    # in1, its shifted copy, exp and the log-softmax: the code as written keeps all four until it returns;
    # lean, at most two of them are alive at once (the caller's `inputs` still holds in1 here).
    assert live.peak <= 3 * logits + 4096, live.peak / logits


def test_a_forward_that_is_not_straight_line_runs_as_written(tmp_path):
    src = CE.read_text().replace(
        "    v0 = torch.ops.aten.ne.Scalar(in0, -100)\n",
        "    if in0.numel() < 0:\n        raise ValueError\n    v0 = torch.ops.aten.ne.Scalar(in0, -100)\n",
        1,
    )
    path = tmp_path / CE.name
    path.write_text(src)
    shutil.copy(CE.with_suffix(".json"), path.with_suffix(".json"))
    region = load_region(path)
    assert reference.lean(region) is None
    inputs = list(region.make_inputs(seed=1))
    args = list(inputs)
    torch.testing.assert_close(reference.call_lean(region, args), region.forward(*inputs), rtol=0, atol=0)
    assert args == []


def test_the_references_peaks_are_measured_on_the_meta_device():
    region = load_region(CE)
    specs = region.declared("inputs")
    peak64, peak_eager, out64 = reference.reference_peaks(region, specs)
    wide = _logits_bytes(region)
    # float64: the upcast logits and their shifted copy, then that copy and exp (or the log-softmax), never
    # three at once; eager in float32: the same in half the bytes, its inputs not counted (the draw's own).
    assert 2 * wide <= peak64 < 2 * wide + 4096
    assert wide <= peak_eager < wide + 4096
    assert out64 == 33 * 8
    # The same at other sizes: the estimate follows the draw's sizes, not the region's own.
    big = [reference.TensorMeta(m.dtype, (4 * m.shape[0], *m.shape[1:]), m.stride) for m in specs]
    assert reference.reference_peaks(region, big)[0] >= 4 * 2 * wide


def test_the_build_estimate_takes_the_largest_stage_and_falls_back_to_a_flat_one(monkeypatch):
    region = load_region(CE)
    d = Draw("normal", 5)
    kept = 33 * 8 + 33 * 781 * 4
    peak64 = 2 * _logits_bytes(region)
    est = draw_set.build_bytes(region, d)
    assert kept + draw_set.MARGIN * peak64 <= est < kept + draw_set.MARGIN * (peak64 + 8192)
    flat = draw_set.BYTES_PER_ELEMENT * (33 + 33 * 781 + 33)
    assert est < 0.6 * flat  # the old flat 40 bytes per element of inputs and outputs
    monkeypatch.setattr(draw_set, "reference_peaks", lambda region, inputs: None)
    monkeypatch.setattr(draw_set, "_peak_memo", {})
    assert draw_set.build_bytes(region, d) == flat  # a region the meta device cannot run


@pytest.mark.parametrize("dist", draws.BASE_DISTS)
def test_the_transform_in_chunks_is_the_transform(monkeypatch, dist):
    region = load_region(REGIONS / "region_softmax_bf16_wide.py")
    d = Draw(dist, 77, dist)
    whole = build_inputs(region.module.make_inputs, d, "cpu")
    monkeypatch.setattr(draws, "CHUNK", 1000)  # many chunks, one ending mid-row
    chunked = build_inputs(region.module.make_inputs, d, "cpu")
    again = build_inputs(region.module.make_inputs, d, "cpu")
    for a, b, c in zip(whole, chunked, again):
        assert (a.shape, a.stride(), a.dtype) == (b.shape, b.stride(), b.dtype)
        torch.testing.assert_close(b, c, rtol=0, atol=0, equal_nan=True)  # the same bits every time
        if dist != "mixed":  # mixed's random decades are drawn per chunk: other values, same distribution
            torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
        finite = b.isfinite()
        if dist == "nan_inf":
            specials = (~finite).sum().item()
            assert 1 <= specials <= 16 and b.isnan().any() and b.isposinf().any() and b.isneginf().any()
        else:
            assert finite.all()
        if dist == "mixed":
            mag = b[finite].float().abs()
            assert mag.max() / mag[mag > 0].min() > 1e4  # six decades per element, as before


def test_a_built_draw_keeps_its_inputs_once_in_the_file_workers_copy(tmp_path):
    region = load_region(CE)
    ds = draw_set.DrawSet(region, "cpu", "default")
    try:
        d = Draw("normal", 9)
        exp = ds.expect(d)
        (path,) = ds._files.values()
        assert path.is_file()  # written when built, not when a worker first asks
        fresh = build_inputs(region.module.make_inputs, d, "cpu")
        for kept, on_disk, want in zip(exp.inputs, load_inputs(path), fresh):
            torch.testing.assert_close(kept, want, rtol=0, atol=0)
            torch.testing.assert_close(on_disk, want, rtol=0, atol=0)
        copy = ds.inputs_file(d, tmp_path)
        assert copy.parent == tmp_path and copy.read_bytes() == path.read_bytes()
        ds.forget(d)
        assert not path.exists()
    finally:
        ds.close()


def test_a_value_never_read_is_freed_after_its_store_and_a_closure_keeps_forward_as_written(tmp_path):
    src = CE.read_text()
    unread = src.replace(
        "    v0 = torch.ops.aten.ne.Scalar(in0, -100)\n",
        "    unused = torch.ops.aten.exp.default(in1)\n    v0 = torch.ops.aten.ne.Scalar(in0, -100)\n",
        1,
    )
    closure = src.replace(
        "    v0 = torch.ops.aten.ne.Scalar(in0, -100)\n",
        "    later = lambda: in1\n    v0 = torch.ops.aten.ne.Scalar(later(), -100) if False else "
        "torch.ops.aten.ne.Scalar(in0, -100)\n",
        1,
    )
    regions = {}
    for name, text in (("unread", unread), ("closure", closure)):
        path = tmp_path / name / CE.name
        path.parent.mkdir()
        path.write_text(text)
        shutil.copy(CE.with_suffix(".json"), path.with_suffix(".json"))
        regions[name] = load_region(path)
    specs = regions["unread"].declared("inputs")
    wide = _logits_bytes(regions["unread"])
    assert reference.reference_peaks(regions["unread"], specs)[0] < 2 * wide + 4096  # exp(in1) dies at once
    assert reference.lean(regions["closure"]) is None
    inputs = list(regions["closure"].make_inputs(seed=2))
    want = regions["closure"].forward(*inputs)
    torch.testing.assert_close(reference.call_lean(regions["closure"], list(inputs)), want, rtol=0, atol=0)
