"""Verdict paths that used to end green on a wrong or empty input (issue: verdicts that cannot
lie). Real torch, real onnxruntime, real files; each test names the path it guards."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from conformance.cli import main as conformance_main
from conformance.features import case_features, feed_features
from conformance.matrix import load_matrix, select
from conformance.runner import prepare_matrix
from conformance.vectors import write_vectors
from exporter import RNNSpec, export


def _report(rep: Path) -> dict:
    return json.loads((rep / "report.json").read_text())


def _check(model: Path, ckpt: Path, rep: Path, *extra: str) -> int:
    return conformance_main(["check", str(model), "--checkpoint", str(ckpt), "--inputs", "2x5",
                             "--runtimes", "ort-cpu,onnx-reference", "--report-dir", str(rep),
                             "--no-heatmap", *extra])


def test_check_with_a_nan_checkpoint_is_an_error_not_a_pass(tmp_path):
    """check: torch's own answer is NaN, so nothing can be judged against it."""
    module = RNNSpec(10, 20).build_module(seed=3)
    onnx.save(export(module), tmp_path / "other.onnx")
    state = module.state_dict()
    state["weight_hh_l0"][0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    assert _check(tmp_path / "other.onnx", tmp_path / "nan.pt", tmp_path / "rep") == 1
    cells = _report(tmp_path / "rep")["cells"]
    assert cells and all(c["status"] == "error" for c in cells)
    assert all("torch's answer" in c["message"] and "NaN" in c["message"] for c in cells)


def test_check_bidirectional_reverse_weights_wrong_under_any_name(tmp_path):
    """check: the reverse half differs from the checkpoint; a name full of divergence
    keywords used to make it xfail on onnx-reference."""
    module = RNNSpec(10, 20, bidirectional=True).build_module(seed=4)
    torch.save(module.state_dict(), tmp_path / "ck.pt")
    with torch.no_grad():
        module.weight_hh_l0_reverse.mul_(1.01)
    model = export(module)
    for name in ("plain.onnx", "release-seqlens-v2.onnx", "relu-layout1-h0zero-scan.onnx"):
        onnx.save(model, tmp_path / name)
        rep = tmp_path / f"rep-{name}"
        assert _check(tmp_path / name, tmp_path / "ck.pt", rep) == 1, name
        assert {c["status"] for c in _report(rep)["cells"]} == {"fail"}, name


def _vectors(tmp_path: Path) -> Path:
    cases = select(load_matrix("smoke"), "i10h20-l2-tanh-bi-bf-h0in--b3s7")
    out = tmp_path / "vectors"
    write_vectors(prepare_matrix(cases, tmp_path / "work"), out)
    return next(out.iterdir())


def _replay(folder: Path, rep: Path) -> int:
    return conformance_main(["replay", str(folder), "--runtimes", "ort-cpu",
                             "--report-dir", str(rep), "--no-heatmap"])


def test_replay_of_a_good_folder_passes(tmp_path):
    folder = _vectors(tmp_path)
    assert _replay(folder, tmp_path / "rep") == 0


def test_replay_with_every_truth_deleted_fails(tmp_path):
    folder = _vectors(tmp_path)
    for f in folder.glob("test_data_set_*/output_*.pb"):
        f.unlink()
    shutil.rmtree(folder / "truth_f64")
    assert _replay(folder, tmp_path / "rep") == 1
    (cell,) = _report(tmp_path / "rep")["cells"]
    assert cell["status"] == "fail" and "nothing was checked" in cell["message"]


def test_replay_with_one_truth_deleted_fails(tmp_path):
    folder = _vectors(tmp_path)
    (folder / "test_data_set_0" / "output_1.pb").unlink()
    shutil.rmtree(folder / "truth_f64")
    assert _replay(folder, tmp_path / "rep") == 1
    (cell,) = _report(tmp_path / "rep")["cells"]
    assert "extra output h_n" in cell["message"]


def test_replay_with_two_truths_of_one_name_is_an_error(tmp_path):
    folder = _vectors(tmp_path)
    data = folder / "test_data_set_0"
    proto = onnx.TensorProto()
    proto.ParseFromString((data / "output_0.pb").read_bytes())
    (data / "output_2.pb").write_bytes(proto.SerializeToString())
    assert _replay(folder, tmp_path / "rep") == 1
    (cell,) = _report(tmp_path / "rep")["cells"]
    assert cell["status"] == "error" and "two output tensors named 'output'" in cell["message"]


def test_replay_with_no_data_sets_is_an_error(tmp_path):
    folder = _vectors(tmp_path)
    shutil.rmtree(folder / "test_data_set_0")
    assert _replay(folder, tmp_path / "rep") == 1


def test_replay_matches_unnamed_tensors_by_position(tmp_path):
    """onnx's own backend test data carries no tensor names: matched by graph position."""
    folder = _vectors(tmp_path)
    for f in folder.rglob("*_*.pb"):
        proto = onnx.TensorProto()
        proto.ParseFromString(f.read_bytes())
        proto.name = ""
        f.write_bytes(proto.SerializeToString())
    (folder / "test_data_set_0" / "case.json").unlink()
    assert _replay(folder, tmp_path / "rep") == 0
    # ...and a wrong model is still caught with unnamed tensors
    model = onnx.load(folder / "model.onnx")
    r = next(t for t in model.graph.initializer if t.name == "R_l0")
    r.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(r) * np.float32(1.001), "R_l0"))
    onnx.save(model, folder / "model.onnx")
    assert _replay(folder, tmp_path / "rep2") == 1


def test_editing_case_json_cannot_change_a_verdict(tmp_path):
    """case.json names the case; a known-divergence-looking name or a loose tolerance there
    changes nothing."""
    folder = _vectors(tmp_path)
    model = onnx.load(folder / "model.onnx")
    r = next(t for t in model.graph.initializer if t.name == "R_l0")
    r.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(r) * np.float32(1.001), "R_l0"))
    onnx.save(model, folder / "model.onnx")
    meta_file = folder / "test_data_set_0" / "case.json"
    meta = json.loads(meta_file.read_text())
    meta.update(case="i10h20-l1-relu-bi-bf-h0zero-layout1-seqlens--b5s12-lens_unsorted",
                tolerance={"output": {"atol": 1e9, "rtol": 1e9}, "h_n": {"atol": 1e9, "rtol": 1e9}})
    meta_file.write_text(json.dumps(meta))
    assert conformance_main(["replay", str(folder), "--runtimes", "ort-cpu,onnx-reference",
                             "--report-dir", str(tmp_path / "rep"), "--no-heatmap"]) == 1
    cells = _report(tmp_path / "rep")["cells"]
    assert {c["status"] for c in cells} == {"fail"} and all(c["divergence"] is None for c in cells)


def test_features_come_from_the_graph_and_feeds(tmp_path):
    spec = RNNSpec(3, 4, nonlinearity="relu", bidirectional=True)
    path = tmp_path / "m.onnx"
    onnx.save(export(spec.build_module(seed=0), initial_state="zeros", sequence_lens=True,
                     target="none"), path)
    x = np.zeros((5, 2, 3), np.float32)
    full = case_features(str(path), {"input": x, "sequence_lens": np.array([5, 5], np.int32)})
    assert {"rnn-op", "rnn-bidirectional", "rnn-activation-relu", "rnn-activation-not-tanh",
            "rnn-sequence-lens", "rnn-no-initial-h"} <= full and "padded" not in full
    assert "padded" in feed_features({"input": x, "sequence_lens": np.array([5, 3], np.int32)})
    assert "padded" in feed_features({"input": x, "sequence_lens": np.array([4, 4], np.int32)})
    assert "batch1-seq1" in feed_features({"input": np.zeros((1, 1, 3), np.float32)})
    scan = tmp_path / "scan.onnx"
    onnx.save(export(spec.build_module(seed=0), lowering="scan", target="none"), scan)
    assert {"scan", "negative-step-slice"} <= case_features(str(scan), {"input": x})
    assert "rnn-op" not in case_features(str(scan), {"input": x})
