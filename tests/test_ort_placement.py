"""The strict onnxruntime accelerator adapter and placement evidence, without a GPU.

onnxruntime's CPU wheel has AzureExecutionProvider, which takes no standard op: a stand-in
for an accelerator (tests/fake_runtimes.py:StandInAccelerator runs the real OrtCuda code with
it). These tests pin what onnxruntime guarantees and what the adapter builds on it.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from conformance.runner import execute
from conformance.runtimes.ort import CPU_FALLBACK_REFUSAL, OrtCpu
from tests.fake_runtimes import StandInAccelerator

from .helpers import prepare_smoke_cases

STAND_IN = "tests.fake_runtimes:StandInAccelerator"


def _model(nodes, path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y" if nodes else "x", TensorProto.FLOAT, [2])
    opsets = [helper.make_opsetid("", 17)]
    model = helper.make_model(helper.make_graph(nodes, "m", [x], [y]), opset_imports=opsets,
                              ir_version=helper.find_min_ir_version_for(opsets))
    onnx.save(model, str(path))
    return str(path)


def test_onnxruntime_lists_cpu_beside_any_provider_asked_for(tmp_path):
    """The fact the old adapter got wrong: CPU is always listed, so it proves nothing."""
    rt = StandInAccelerator()
    sess = rt.load(_model([], tmp_path / "empty.onnx"))
    assert sess.strict
    assert sess.session.get_providers() == ["AzureExecutionProvider", "CPUExecutionProvider"]


def test_no_node_model_loads_strictly_and_runs(tmp_path):
    rt = StandInAccelerator()
    assert rt.available() is None
    sess = rt.load(_model([], tmp_path / "empty.onnx"))
    out = rt.run(sess, {"x": np.array([1.0, -2.0], np.float32)})
    assert out["x"].tolist() == [1.0, -2.0]
    assert rt.placement(sess) == {} and rt.placement_problem(sess) is None


def test_strict_mode_refuses_a_node_on_the_cpu(tmp_path):
    """What onnxruntime really enforces: one Relu that only the CPU takes is refused."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    path = _model([helper.make_node("Relu", ["x"], ["y"])], tmp_path / "relu.onnx")
    with pytest.raises(Exception, match=CPU_FALLBACK_REFUSAL):
        ort.InferenceSession(path, so, providers=["AzureExecutionProvider"])


def test_refused_strictly_then_judged_from_profile(tmp_path):
    rt = StandInAccelerator()
    sess = rt.load(_model([helper.make_node("Relu", ["x"], ["y"])], tmp_path / "relu.onnx"))
    assert not sess.strict and sess.notes
    out = rt.run(sess, {"x": np.array([1.0, -2.0], np.float32)})
    assert out["y"].tolist() == [1.0, 0.0]
    assert rt.placement(sess) == {"Relu": {"CPUExecutionProvider": 1}}
    assert rt.placement_problem(sess) is None       # a Relu is not recurrent compute


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare_smoke_cases(tmp_path_factory.mktemp("placement"), "i10h20-l2-tanh-bi-bf-h0in--b3s7",
                               "i10h20-l2-relu-bi-sf-h0in-scan--b3s20")


def test_recurrent_nodes_on_the_cpu_are_never_an_accelerator_pass(prepared):
    """The numbers are right (the CPU computed them), but the cell is not a pass."""
    result = execute(prepared, [STAND_IN])
    assert result.runtimes[STAND_IN]["available"]
    for cell in result.cells:
        assert cell["status"] == "unsupported", cell
        assert cell["message"].startswith("ran partly on the CPU:"), cell["message"]
        assert "on CPUExecutionProvider" in cell["message"]
        assert cell["max_abs_err"] < 1e-4          # errors still recorded
        assert "CPU fallback allowed" in cell["provider"]
    assert result.failed()


def test_every_ort_cpu_cell_carries_placement(prepared):
    result = execute(prepared, ["ort-cpu"])
    rnn, scan = sorted(result.cells, key=lambda c: "scan" in c["case"])
    assert rnn["status"] == scan["status"] == "pass"
    assert rnn["placement"]["RNN"] == {"CPUExecutionProvider": 2}     # one node per layer
    assert set(scan["placement"]["Scan"]) == {"CPUExecutionProvider"}
    assert all(set(p) == {"CPUExecutionProvider"} for p in scan["placement"].values())


def test_placement_problem_names_the_nodes():
    class Fake:
        placement = {"RNN": {"CPUExecutionProvider": 2}, "Shape": {"CPUExecutionProvider": 1},
                     "Transpose": {"CUDAExecutionProvider": 1}}
    from conformance.runtimes.ort import OrtCuda
    msg = OrtCuda().placement_problem(Fake())
    assert msg and "RNN on CPUExecutionProvider" in msg and "Shape" not in msg
    assert OrtCpu().placement_problem(Fake()) is None
