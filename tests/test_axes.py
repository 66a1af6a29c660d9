"""Matrix axes beyond the model: who exported the file, which runtime version, which
deployment mode. Real torch.onnx, real onnxruntime releases from the package index, real
OpenVINO."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conformance.cli import main as conformance_main
from conformance.divergences import load_divergences
from conformance.matrix import load_matrix, select
from conformance.runner import Prepared, execute, prepare_matrix
from conformance.runtimes import load_runtime, runtime_names
from conformance.versions import site_for, split_name
from exporter.errors import ExportError


def _cells(rep) -> list[dict]:
    return json.loads((rep / "report.json").read_text())["cells"]


def test_torch_exports_judged_beside_ours(tmp_path):
    """ours and the TorchScript exporter pass; dynamo's frozen sequence is caught (and only
    as the reviewed divergence citing pytorch#115092)."""
    cases = select(load_matrix("smoke"), "i10h20-l1-tanh-uni-sf-h0in--b3s7")
    prepared = prepare_matrix(cases, tmp_path, exporters=["ours", "torch-dynamo",
                                                          "torch-legacy"])
    by = {p.exporter: p for p in prepared}
    assert set(by) == {"ours", "torch-dynamo", "torch-legacy"}
    assert len({p.case_id for p in prepared}) == 3            # ids stay unique
    dyn = by["torch-dynamo"]
    assert dyn.labels["dynamic"] is False and dyn.labels["output_dims"][0] == 5
    assert by["torch-legacy"].labels["recurrent_ops"] == ["RNN"]
    result = execute(prepared, ["ort-cpu"], isolate=False)
    cells = {c["exporter"]: c for c in result.cells}
    assert cells["ours"]["status"] == cells["torch-legacy"]["status"] == "pass"
    frozen = cells["torch-dynamo"]
    assert frozen["status"] == "xfail" and frozen["observed"] == "fail"
    assert frozen["divergence"]["id"] == "torch-dynamo-frozen-sequence"
    assert "115092" in frozen["divergence"]["citation"]


def test_a_case_torch_cannot_export_has_its_own_status(tmp_path):
    cases = select(load_matrix("smoke"), "i10h20-l1-gru-uni-sf-h0zero-seqlens--*")
    assert len(cases) == 1
    prepared = prepare_matrix(cases, tmp_path, exporters=["torch-dynamo"])
    (p,) = prepared
    assert p.unexported and "export failed" in p.problem
    (cell,) = execute(prepared, ["ort-cpu"], isolate=False).cells
    assert cell["observed"] == "unexported" and cell["status"] == "xfail"
    assert cell["divergence"]["id"] == "torch-dynamo-packed-sequence"
    # without the reviewed entry, the same cell fails the run: never a silent skip
    others = [d for d in load_divergences() if d.id != "torch-dynamo-packed-sequence"]
    result = execute(prepared, ["ort-cpu"], isolate=False, divergences=others)
    assert result.cells[0]["status"] == "unexported" and result.failed()


def test_exporters_flag_is_validated(capsys):
    assert conformance_main(["run", "--exporters", "ours,torch-nope"]) == 2
    assert "--exporters takes" in capsys.readouterr().err


def test_runtime_versions_are_names_with_a_version():
    assert split_name("ort-cpu@1.22.1") == ("ort-cpu", "1.22.1")
    assert runtime_names("ort-cpu@1.22.1,ort-cpu") == ["ort-cpu@1.22.1", "ort-cpu"]
    for bad in ("ort-web@1.0", "ort-cpu@banana", "nope@1.0", "ort-node@x"):
        with pytest.raises(ExportError):
            runtime_names(bad)
    assert site_for("ort-cpu@1.22.1").name == "onnxruntime-1.22.1"


def _pinned_beside_installed(tmp_path, monkeypatch, runtime: str, version: str,
                             case_id: str) -> list[Prepared]:
    """`runtime@version` and the installed `runtime` on one smoke case, in a cache of its
    own: each records its own version, both pass. The prepared case, for more."""
    monkeypatch.setenv("TORCH_RNN_ONNX_CACHE", str(tmp_path / "cache"))
    prepared = prepare_matrix(select(load_matrix("smoke"), case_id), tmp_path / "work")
    result = execute(prepared, [f"{runtime}@{version}", runtime])
    assert result.runtimes[f"{runtime}@{version}"]["version"] == version
    assert result.runtimes[runtime]["version"] != version
    assert {c["status"] for c in result.cells} == {"pass"}
    return prepared


def test_a_pinned_onnxruntime_is_installed_once_and_recorded(tmp_path, monkeypatch):
    """Installs onnxruntime 1.22.1 from the package index into a cache of its own."""
    _pinned_beside_installed(tmp_path, monkeypatch, "ort-cpu", "1.22.1",
                             "i10h20-l2-tanh-bi-bf-h0in--b3s7")
    assert (tmp_path / "cache" / "runtimes" / "onnxruntime-1.22.1" / "onnxruntime").is_dir()


def test_a_pinned_onnxruntime_node_is_installed_once_and_judges_like_the_installed_one(
        tmp_path, monkeypatch):
    """Installs onnxruntime-node 1.24.3 from npm into a cache of its own: the Node harness
    imports that release (recorded per cell), a right file passes and a wrong one fails."""
    if load_runtime("ort-node").available() is not None:
        pytest.skip("onnxruntime-node (the Node.js harness) not installed")
    prepared = _pinned_beside_installed(tmp_path, monkeypatch, "ort-node", "1.24.3",
                                        "i10h20-l2-lstm-bi-sf-h0in--b3s7")
    site = tmp_path / "cache" / "runtimes" / "onnxruntime-node-1.24.3"
    assert (site / "node_modules" / "onnxruntime-node" / "package.json").is_file()
    wrong = tmp_path / "wrong.onnx"
    model = onnx.load(prepared[0].model_path)
    r = next(t for t in model.graph.initializer if t.name == "R_l0")
    r.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(r) * np.float32(1.001), "R_l0"))
    onnx.save(model, wrong)
    p = prepared[0]
    cells = execute([Prepared(p.case_id, "wrong", str(wrong), p.feeds, p.f32, p.f64, p.labels)],
                    ["ort-node@1.24.3"]).cells
    assert [c["status"] for c in cells] == ["fail"], cells[0]["message"]


def test_openvino_static_shapes_honour_sequence_lens(tmp_path):
    """The dynamic-shape plugin ignores sequence_lens (a known divergence); reshaped to the
    case's static shapes, the same file is exact."""
    if load_runtime("openvino").available() is not None:
        pytest.skip("OpenVINO not installed")
    cases = select(load_matrix("smoke"), "*seqlens*")
    result = execute(prepare_matrix(cases, tmp_path), ["openvino", "openvino-static"])
    for c in result.cells:
        if c["runtime"] == "openvino-static":
            assert c["status"] == "pass", (c["case"], c["message"])
        elif "lens_full" not in c["case"] and "-scan" not in c["case"]:   # RNN-op files
            assert c["status"] == "xfail"
            assert c["divergence"]["id"] == "openvino-sequence-lens-ignored"


def test_openvino_static_scan_rnn_body_is_a_known_divergence_lstm_scan_is_exact(tmp_path):
    """With static shapes OpenVINO mis-computes the nn.RNN scan body (found by this runner);
    the LSTM/GRU bodies, whose outputs carry several tensor names there, are exact. Nobody
    has pinned down what it computes instead (`computes = "unknown"`), so the entry cannot
    prove the wrong result is its mistake: the cell is `fail`, citing the entry."""
    if load_runtime("openvino").available() is not None:
        pytest.skip("OpenVINO not installed")
    cases = (select(load_matrix("smoke"), "i10h20-l1-tanh-uni-sf-h0in-scan--b3s20")
             + select(load_matrix("smoke"), "i10h20-l2-lstm-bi-sf-h0in-scan--b3s7")
             + select(load_matrix("smoke"), "i10h20-l2-gru-bi-bf-h0in-scan--b3s7"))
    assert len(cases) == 3
    cells = {c["case"]: c for c in execute(prepare_matrix(cases, tmp_path),
                                           ["openvino-static"]).cells}
    rnn = cells["i10h20-l1-tanh-uni-sf-h0in-scan--b3s20"]
    assert rnn["status"] == "fail" and rnn["observed"] == "fail"
    assert rnn["divergence"]["id"] == "openvino-static-scan-rnn-body"
    assert "does not explain this result" in rnn["message"]
    for case in ("i10h20-l2-lstm-bi-sf-h0in-scan--b3s7", "i10h20-l2-gru-bi-bf-h0in-scan--b3s7"):
        assert cells[case]["status"] == "pass", cells[case]["message"]


# ---- torch.onnx at a pinned onnxscript release -----------------------------------------------

def test_pinned_exporter_names_are_checked():
    from conformance.exporters import exporter_names
    from conformance.versions import exporter_sites, split_exporter

    assert split_exporter("torch-dynamo@onnxscript=0.7.0") == ("torch-dynamo",
                                                               {"onnxscript": "0.7.0"})
    assert split_exporter("torch-dynamo") == ("torch-dynamo", {})
    assert exporter_sites("torch-dynamo@onnxscript=0.7.0")["onnxscript"].name == "onnxscript-0.7.0"
    assert exporter_names("ours,torch-dynamo@onnxscript=0.7.1") == [
        "ours", "torch-dynamo@onnxscript=0.7.1"]
    assert split_exporter("torch-legacy@torch=2.14.1") == ("torch-legacy", {"torch": "2.14.1"})
    both = "torch-dynamo@torch=2.10.0@onnxscript=0.5.7"
    assert split_exporter(both) == ("torch-dynamo", {"torch": "2.10.0", "onnxscript": "0.5.7"})
    assert [p.name for p in exporter_sites(both).values()] == ["torch-2.10.0", "onnxscript-0.5.7"]
    for bad in ("torch-legacy@onnxscript=0.7.0", "torch-dynamo@onnxscript=x.y",
                "torch-dynamo@onnx=1.2", "torch-dynamo@onnxscript", "ours@torch=2.13.0",
                "torch-legacy@torch=two", "torch-legacy@torch",
                "torch-dynamo@torch=2.14.1@torch=2.15.0", "torch-legacy@torch=2.14.1@onnxscript=0.7.1"):
        with pytest.raises(ExportError):
            exporter_names(bad)


def test_a_bad_torch_release_is_one_line_and_installs_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_RNN_ONNX_CACHE", str(tmp_path / "cache"))
    assert conformance_main(["exporters", "--torch", "2.x", "-o", str(tmp_path / "t.md"),
                             "--report-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'2.x' is not a version" in err[0]
    assert not (tmp_path / "cache").exists() and not (tmp_path / "t.md").exists()


def test_a_release_is_matched_as_pip_reads_it():
    from conformance.versions import same_release

    assert same_release("2.13.0+cpu", "2.13.0") and same_release("2.14.1", "2.14.1")
    assert not same_release("2.13.0+cpu", "2.13.0+cu130")
    assert not same_release("2.13.1", "2.13.0") and not same_release(None, "2.13.0")


def test_a_version_scoped_divergence_covers_its_releases_only():
    from conformance.divergences import load_divergences, match

    entries = load_divergences()
    feats = {"gru-op", "rnn-bidirectional"}
    hit = match(entries, "ort-cpu", "1.32.0", feats, "torch-dynamo@onnxscript=0.7.0", "0.7.0")
    assert hit is not None and hit.id == "onnxscript-gru-linear-before-reset"
    assert match(entries, "ort-cpu", "1.32.0", feats, "torch-dynamo", "0.7.0") is hit
    for exporter, version in (("torch-dynamo", "0.7.1"), ("torch-dynamo", "0.5.6"),
                              ("torch-dynamo", None), ("ours", "0.7.0")):
        assert match(entries, "ort-cpu", "1.32.0", feats, exporter, version) is None


def test_a_divergence_scoped_to_torch_releases_covers_those_only():
    """torch 2.10's nn.RNN export failure with onnxscript 0.6.2 is known for that torch and
    that onnxscript only; a frozen LSTM file is known for torch < 2.15, whose local build
    names (+cpu, +cu130) count as their release."""
    from conformance.divergences import load_divergences, match

    entries = load_divergences()
    rnn = {"rnn-op"}
    name = "torch-dynamo@torch=2.10.0@onnxscript=0.6.2"
    hit = match(entries, "ort-cpu", "1.32.0", rnn, name, "0.6.2", "2.10.0+cu128")
    assert hit is not None and hit.id == "torch-dynamo-rnn-opset-mismatch"
    for onnxscript, torch in (("0.6.2", "2.13.0+cpu"), ("0.7.0", "2.10.0"), ("0.6.2", None)):
        assert match(entries, "ort-cpu", "1.32.0", rnn, name, onnxscript, torch) is None
    lstm = {"lstm-op", "frozen-output-size"}
    assert match(entries, "ort-cpu", "1.32.0", lstm, "torch-dynamo", "0.7.2",
                 "2.14.1+cu130").id == "torch-dynamo-frozen-lstm"
    assert match(entries, "ort-cpu", "1.32.0", lstm, "torch-dynamo", "0.7.2",
                 "2.15.0+cu132") is None


def test_onnxscript_releases_judged_side_by_side(tmp_path, monkeypatch):
    """Installs onnxscript 0.7.0 and 0.7.1 from the package index into a cache of their own:
    0.7.0's GRU files are silently wrong (linear_before_reset=0), a `fail` without the
    version-scoped entry and a proven xfail with it; 0.7.1's pass."""
    monkeypatch.setenv("TORCH_RNN_ONNX_CACHE", str(tmp_path / "cache"))
    cases = select(load_matrix("smoke"), "i10h20-l2-gru-bi-bf-h0in--b3s7")
    exporters = ["torch-dynamo@onnxscript=0.7.0", "torch-dynamo@onnxscript=0.7.1"]
    prepared = prepare_matrix(cases, tmp_path / "work", exporters=exporters)
    assert [p.labels["onnxscript"] for p in prepared] == ["0.7.0", "0.7.1"]
    judged = {c["exporter"]: c for c in execute(prepared, ["ort-cpu"]).cells}
    bad, good = judged[exporters[0]], judged[exporters[1]]
    assert good["status"] == "pass", good.get("message")
    assert bad["status"] == "xfail" and bad["observed"] == "fail", bad.get("message")
    assert bad["divergence"]["id"] == "onnxscript-gru-linear-before-reset"
    assert bad["max_abs_err"] > 0.05
    plain = {c["exporter"]: c for c in execute(prepared, ["ort-cpu"], divergences=[]).cells}
    assert plain[exporters[0]]["status"] == "fail"
    assert (tmp_path / "cache" / "exporters" / "onnxscript-0.7.0" / "onnx_ir").is_dir()
    assert not (tmp_path / "cache" / "exporters" / "onnxscript-0.7.0" / "numpy").exists()


# ---- torch.onnx at a pinned torch release ------------------------------------------------------

@pytest.fixture(scope="module")
def torch_cache(tmp_path_factory):
    """A versions cache in which the pinned-torch tests install torch 2.13.0 once: the CPU
    wheel this project's CI installs from (about 1 GB unpacked, where a CUDA release is about
    5 GB), which still proves the mechanism — the export runs on the cache's copy, not the
    installed one (export_child checks where torch came from)."""
    return tmp_path_factory.mktemp("torch-cache")


def test_a_pinned_torch_exports_in_its_own_process_and_is_recorded(torch_cache, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("TORCH_RNN_ONNX_CACHE", str(torch_cache))
    cases = select(load_matrix("smoke"), "i10h20-l2-gru-bi-bf-h0in--b3s7")
    exporters = ["torch-legacy@torch=2.13.0", "torch-dynamo@torch=2.13.0"]
    prepared = prepare_matrix(cases, tmp_path, exporters=exporters)
    assert [p.labels["exporter_torch"] for p in prepared] == ["2.13.0+cpu"] * 2
    assert prepared[1].labels["onnxscript"] is not None
    judged = {c["exporter"]: c for c in execute(prepared, ["ort-cpu"]).cells}
    assert [judged[e]["status"] for e in exporters] == ["pass", "pass"]
    site = torch_cache / "exporters" / "torch-2.13.0"
    assert (site / "torch").is_dir() and not (site / "numpy").exists()


def test_a_pinned_export_holds_the_callers_weights_not_a_reseeded_module(torch_cache, tmp_path,
                                                                          monkeypatch):
    """The child rebuilds the module from the seed, then loads the caller's weights: a module
    whose weights differ from the seeded ones exports those weights (the truth's), and the
    seeded module would come out wrong against it."""
    import onnxruntime as ort
    import torch

    from conformance.exporters import torch_export
    from exporter.spec import RNNSpec

    monkeypatch.setenv("TORCH_RNN_ONNX_CACHE", str(torch_cache))
    spec = RNNSpec.from_kwargs({"cell": "lstm", "input_size": 4, "hidden_size": 5})
    module = spec.build_module(seed=7)
    with torch.no_grad():
        module.weight_hh_l0.mul_(1.5)
    path = tmp_path / "m.onnx"
    labels: dict = {}
    torch_export("torch-legacy@torch=2.13.0", module, spec, False, False, path, seed=7,
                 info=labels)
    assert labels["exporter_torch"] == "2.13.0+cpu"
    assert not list(tmp_path.glob(".*state.pt"))          # the weights file is cleaned up
    x = torch.randn(6, 3, 4)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want, seeded = module(x)[0].numpy(), spec.build_module(seed=7)(x)[0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(got - seeded).max() > 1e-3
