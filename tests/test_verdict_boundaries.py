"""Every verdict decision at its boundaries, each test written to fail when the decision is
wrong (issue 27): tolerances per element, each divergence entry's features and `unless`,
partial placement, junit's mapping of every status, pinned versions matching their base
runtime's entries, the Node harness's tolerance rule, LSTM states kept apart, layout=1 with
one layer, and checkpoint flags that disagree with a falsy value."""
from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pytest
from packaging.specifiers import SpecifierSet
import torch

from conformance.compare import compare, tolerance_for
from conformance.divergences import load_divergences
from conformance.features import feed_features
from conformance.report import _junit
from conformance.judge import judge_cell as _cell
from conformance.runner import Prepared, execute
from conformance.runtimes import load_runtime
from conformance.runtimes.ort import OrtCpu, OrtSession
from conformance.statuses import FAILING, STATUS, STATUSES
from conformance.truth import make_feeds, torch_truth
from conformance.vectors import write_vectors
from conformance.worker import Outcome
from exporter import RNNSpec, export
from exporter.cli import main as exporter_main

from .helpers import ATOL, RTOL


# ---- compare: the tolerance is per element ----------------------------------------------------

def _judge(got: list[float], want: list[float]) -> str:
    w = np.array(want, np.float32)
    return compare("ort-cpu", {"output": np.array(got, np.float32)}, {"output": w},
                   {"output": w.astype(np.float64)}).verdict


def test_tolerance_is_per_element_small_and_large_in_one_tensor():
    small, large = 1e-3, 1e3
    slack_small, slack_large = ATOL + RTOL * small, ATOL + RTOL * large
    assert _judge([small, large], [small, large]) == "pass"
    # the large element's slack must not cover the small one (a max-|want| rule would pass it)
    assert _judge([small + 2 * slack_small, large], [small, large]) == "fail"
    assert _judge([small + 0.5 * slack_small, large + 0.9 * slack_large],
                  [small, large]) == "pass"
    assert _judge([small, large + 1.2 * slack_large], [small, large]) == "fail"
    # relative to torch's answer, not the runtime's: a runtime that doubles a value fails
    assert _judge([2 * large], [large]) == "fail"


def test_atol_alone_near_zero():
    assert _judge([0.9 * ATOL], [0.0]) == "pass"
    assert _judge([1.5 * ATOL], [0.0]) == "fail"


def test_default_tolerance_is_the_toml_rule():
    t = tolerance_for("ort-cpu", "output")
    assert (t.atol, t.rtol) == (ATOL, RTOL)
    tf32 = tolerance_for("ort-cuda-tf32", "output")
    assert tf32.atol > t.atol and tf32.rtol > t.rtol


# ---- each divergence entry: exactly its features, and its unless sets --------------------------

_EXPORTER_RELEASES = ("0.7.0", "0.7.2", "0.6.2", "0.5.6")
_TORCH_RELEASES = ("2.13.0+cpu", "2.10.0+cu128", "2.15.0+cu132")


def _exporter_version(entry) -> str | None:
    """A release the entry covers (entries scoped with exporter_versions), else None."""
    if not entry.exporter_versions:
        return None
    return next(v for v in _EXPORTER_RELEASES if v in SpecifierSet(entry.exporter_versions))


def _exporter_torch(entry) -> str:
    """A torch release the entry covers (any, for entries not scoped with exporter_torch)."""
    return next(v for v in _TORCH_RELEASES
                if not entry.exporter_torch or v in SpecifierSet(entry.exporter_torch))


def _version_in(entry) -> str:
    for v in ("0.23.9", "1.23.2", "1.32.0", "2026.4.1", "1.30.0", "2.13.0", "0.7.2", "1.8", "0"):
        if entry.applies(_one(entry.runtime), v, entry.features, _one(entry.exporters),
                         _exporter_version(entry), _exporter_torch(entry)):
            return v
    raise AssertionError(f"no version in range for {entry.id}")


def _one(glob) -> str:
    first = glob if isinstance(glob, str) else glob[0]
    return first.replace("*", "ort-cpu") if first != "*" else "ort-cpu"


@pytest.mark.parametrize("entry", load_divergences(), ids=lambda e: e.id)
def test_each_entry_needs_every_one_of_its_features(entry):
    rt, ex = _one(entry.runtime), _one(entry.exporters).replace("ort-cpu", "ours")
    if entry.exporters != ("*",):
        ex = entry.exporters[0]
    version, xv, tv = _version_in(entry), _exporter_version(entry), _exporter_torch(entry)

    def applies(runtime: str, v: str | None, feats, exporter: str, x: str | None = xv,
                t: str | None = tv) -> bool:
        return entry.applies(runtime, v, feats, exporter, x, t)
    assert applies(rt, version, entry.features, ex)
    for f in entry.features:
        assert not applies(rt, version, entry.features - {f}, ex), (entry.id, f)
    for unless in entry.unless:
        assert not applies(rt, version, entry.features | unless, ex), (entry.id, unless)
        # one feature short of the unless set: the entry still applies
        for f in unless:
            partial = (entry.features | unless) - {f}
            if entry.features <= partial:
                assert applies(rt, version, partial, ex), (entry.id, unless, f)
    if entry.runtime != "*":
        assert not applies("no-such-runtime", version, entry.features, ex)
    if entry.exporters != ("*",):       # torch.onnx's own entries: never about our files
        assert not applies(rt, version, entry.features, "ours")
    assert not applies(rt, None, entry.features, ex)
    if entry.exporter_versions:         # a release-scoped entry: not without a release, nor
        assert not applies(rt, version, entry.features, ex, x=None)   # outside its range
        outside = [v for v in ("0.1.0", "99.0.0")
                   if v not in SpecifierSet(entry.exporter_versions)]
        assert outside and not applies(rt, version, entry.features, ex, x=outside[0])
    if entry.exporter_torch:            # the same for the torch release that wrote the file
        assert not applies(rt, version, entry.features, ex, t=None)
        outside = [v for v in ("1.0.0", "99.0.0") if v not in SpecifierSet(entry.exporter_torch)]
        assert outside and not applies(rt, version, entry.features, ex, t=outside[0])


def test_lengths_all_full_are_not_padded():
    spec = RNNSpec(10, 20)
    full = make_feeds(spec, 3, 6, True, 0, "full")
    assert "padded" not in feed_features(full)
    assert "padded" in feed_features(make_feeds(spec, 3, 6, True, 0, "unsorted"))
    ones = make_feeds(spec, 3, 1, True, 0, "ones")          # seq 1: length 1 is full
    assert "padded" not in feed_features(ones)


def test_sequence_lens_all_full_pass_on_runtimes_that_ignore_them(tmp_path):
    """With every sequence full, ignoring sequence_lens is harmless: the seqlens entries do
    not apply (no "padded"), and the cell must pass, not xfail or xpass."""
    spec = RNNSpec(10, 20, bidirectional=True)
    module = spec.build_module(seed=3)
    path = tmp_path / "m.onnx"
    onnx.save(export(module, sequence_lens=True), path)
    feeds = make_feeds(spec, 3, 6, True, 1, "full")
    f32, f64 = torch_truth(module, feeds)
    runtimes = [r for r in ("onnx-reference", "openvino") if load_runtime(r).available() is None]
    cells = execute([Prepared("c", "m", str(path), feeds, f32, f64)], runtimes,
                    isolate=False).cells
    assert [c["status"] for c in cells] == ["pass"] * len(runtimes), cells


# ---- placement ---------------------------------------------------------------------------------

class _Accel(OrtCpu):
    provider_name = "AzureExecutionProvider"


@pytest.mark.parametrize("placement,problem", [
    ({"RNN": {"AzureExecutionProvider": 2}}, False),
    ({"RNN": {"AzureExecutionProvider": 1, "CPUExecutionProvider": 1}}, True),  # some nodes
    ({"Gemm": {"CPUExecutionProvider": 1}, "RNN": {"AzureExecutionProvider": 1}}, True),
    ({"Transpose": {"CPUExecutionProvider": 3}, "RNN": {"AzureExecutionProvider": 1}}, False),
])
def test_placement_when_only_some_nodes_left_the_accelerator(placement, problem):
    session = OrtSession(session=None, profile_dir="/nonexistent", strict=False,
                         placement=placement)
    said = _Accel().placement_problem(session)
    assert bool(said) == problem, said
    if problem:
        assert "CPUExecutionProvider" in said


# ---- junit and the status table ----------------------------------------------------------------

def test_junit_maps_every_status():
    cells = [{"runtime": "rt", "case": s, "status": s, "wall_s": 0, "max_abs_err": None,
              "max_rel_err": None, "tolerance": None, "message": s} for s in STATUSES]
    root = ET.fromstring(_junit({"cells": cells, "seconds": 1.0}))
    kind = {tc.get("name"): next((c.tag for c in tc), None) for tc in root.iter("testcase")}
    assert kind == {"pass": None, "fail": "failure", "xpass": "failure", "error": "error",
                    "unsupported": "error", "unexported": "error", "xfail": "skipped",
                    "unavailable": "skipped"}
    assert (root.get("failures"), root.get("errors"), root.get("skipped")) == ("2", "3", "2")
    # a failing status is never a junit pass or skip: CI's junit view goes red with the run
    for s in FAILING:
        assert kind[s] in ("failure", "error"), s
    assert {s for s in STATUS if STATUS[s].failing} == FAILING


# ---- pinned versions match the base runtime's entries -----------------------------------------

def test_pinned_version_cells_match_the_base_runtimes_entries(tmp_path):
    spec = RNNSpec(10, 20, batch_first=True)
    path = tmp_path / "m.onnx"
    onnx.save(export(spec.build_module(seed=0), batch_layout="attribute"), path)
    feeds = make_feeds(spec, 2, 3, True, 0)
    p = Prepared("c", "m", str(path), feeds, {}, {})
    info = {"version": "1.22.1", "options": {}}
    refused = Outcome("unsupported", message="layout_ == 0 was false")
    cell = _cell(p, "ort-cpu@1.22.1", info, refused, load_divergences())
    assert cell["status"] == "xfail"
    assert cell["divergence"]["id"] == "onnxruntime-layout1-refused"
    # outside the entry's version range, the pinned cell stays unsupported
    cell = _cell(p, "ort-cpu@1.7.0", {"version": "1.7.0", "options": {}}, refused,
                 load_divergences())
    assert cell["status"] == "unsupported" and cell["divergence"] is None


# ---- the Node harness's tolerance rule ---------------------------------------------------------

def _harness(vectors: Path) -> list[dict]:
    from conformance.runtimes.node import HARNESS_DIR
    r = subprocess.run(["node", str(HARNESS_DIR / "harness.mjs"), "replay", str(vectors)],
                       capture_output=True, text=True, timeout=120)
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


@pytest.fixture
def harness_vectors(tmp_path):
    if load_runtime("ort-node").available() is not None:
        pytest.skip("onnxruntime-node not installed")
    spec = RNNSpec(10, 20)
    module = spec.build_module(seed=0)
    path = tmp_path / "m.onnx"
    onnx.save(export(module), path)
    feeds = make_feeds(spec, 3, 9, True, 0)
    f32, f64 = torch_truth(module, feeds)
    out = tmp_path / "v"
    write_vectors([Prepared("c", "m", str(path), feeds, f32, f64)], out)
    return out, f32


def _set_case(out: Path, tolerance: dict) -> None:
    case = out / "m" / "test_data_set_0" / "case.json"
    meta = json.loads(case.read_text())
    meta["tolerance"] = tolerance
    case.write_text(json.dumps(meta))


def test_harness_case_json_may_tighten(harness_vectors):
    out, _ = harness_vectors
    assert [r["status"] for r in _harness(out)] == ["pass"]
    _set_case(out, {"output": {"atol": 0, "rtol": 0}, "h_n": {"atol": 0, "rtol": 0}})
    (r,) = _harness(out)
    # float32 rounding differs from torch by ~1e-7: zero tolerance makes it a fail
    assert r["status"] == "fail", r


def test_harness_case_json_may_not_loosen(harness_vectors):
    out, f32 = harness_vectors
    wrong = f32["output"].copy()
    wrong[0, 0, 0] += 1e-3                                # one element off by 1e-3
    (out / "m" / "test_data_set_0" / "output_0.pb").write_bytes(
        onnx.numpy_helper.from_array(wrong, "output").SerializeToString())
    _set_case(out, {"output": {"atol": 1.0, "rtol": 1.0}, "h_n": {"atol": -1, "rtol": "x"}})
    (r,) = _harness(out)
    assert r["status"] == "fail" and "output: 1/" in r["message"], r


# ---- LSTM states apart; layout=1 with one layer; falsy checkpoint flags -----------------------

class _LSTMStates(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(4, 6, num_layers=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y, (h, c) = self.lstm(x)
        return y, h, c


def test_whole_model_lstm_h_n_and_c_n_kept_apart():
    torch.manual_seed(0)
    m = _LSTMStates().eval()
    x = torch.randn(5, 2, 4)
    model = export(m, (x,), output_names=["y", "h_n", "c_n"])
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x2 = torch.randn(7, 3, 4)
    y, h, c = sess.run(["y", "h_n", "c_n"], {sess.get_inputs()[0].name: x2.numpy()})
    with torch.no_grad():
        ty, th, tc = m(x2)
    assert np.abs(th.numpy() - tc.numpy()).max() > 0.1       # a swap would be visible
    np.testing.assert_allclose(h, th.numpy(), atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(c, tc.numpy(), atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(y, ty.numpy(), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_layout1_with_one_layer(cell):
    """batch_layout="attribute" on a single-layer model (the default matrix reached it only
    with two layers): verified on onnxruntime through Transposes against torch, for every
    direction setting."""
    from exporter.verify import layout0
    import onnxruntime as ort

    for bidirectional in (False, True):
        spec = RNNSpec(5, 7, batch_first=True, bidirectional=bidirectional, cell=cell)
        module = spec.build_module(seed=2)
        model = export(module, batch_layout="attribute")
        node = next(n for n in model.graph.node if n.op_type == spec.cell_info.onnx_op)
        assert any(a.name == "layout" and a.i == 1 for a in node.attribute)
        layout0(model)
        sess = ort.InferenceSession(model.SerializeToString(),
                                    providers=["CPUExecutionProvider"])
        feeds = make_feeds(spec, 3, 4, True, 5)
        f32, _ = torch_truth(module, feeds)
        names = [o.name for o in sess.get_outputs()]
        for name, got in zip(names, sess.run(names, feeds)):
            np.testing.assert_allclose(got, f32[name], atol=ATOL, rtol=RTOL)


def test_no_bias_flag_on_a_biased_checkpoint(tmp_path, capsys):
    """A flag whose value is falsy (bias=False) still disagrees with the checkpoint."""
    ckpt = tmp_path / "c.pt"
    torch.save(torch.nn.RNN(10, 20).state_dict(), ckpt)
    rc = exporter_main(["export", "--checkpoint", str(ckpt), "--no-bias",
                        "-o", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert rc == 2 and "bias=False disagrees with the checkpoint (bias=True)" in err, err
    ckpt2 = tmp_path / "nobias.pt"
    torch.save(torch.nn.RNN(10, 20, bias=False).state_dict(), ckpt2)
    assert exporter_main(["export", "--checkpoint", str(ckpt2), "--no-bias",
                          "-o", str(tmp_path / "m.onnx")]) == 0
