"""Features read from graphs and feeds (conformance/features.py), one at a time, each with a
graph that has it and one that does not; and the mistakes' graph rewrites
(conformance/mistakes.py) on small hand-built graphs."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conformance.features import case_features, feed_features, graph_features, model_features
from conformance.mistakes import MISTAKES


def _rnn_model(op: str = "RNN", *, direction: str = "forward", activations=None, layout: int = 0,
               seq_lens: bool = False, h0: bool = True, batch="batch", dead: bool = False,
               extra_nodes=(), extra_inits=()) -> onnx.ModelProto:
    gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[op]
    D = 2 if direction == "bidirectional" else 1
    H, I = 3, 2
    x_shape = [batch, "seq", I] if layout else ["seq", batch, I]
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)]
    inits = [numpy_helper.from_array(np.zeros((D, gates * H, I), np.float32), "W"),
             numpy_helper.from_array(np.zeros((D, gates * H, H), np.float32), "R")]
    node_inputs = ["X", "W", "R", ""]
    if seq_lens:
        inputs.append(helper.make_tensor_value_info("L", TensorProto.INT32, [batch]))
    node_inputs.append("L" if seq_lens else "")
    if h0:
        inputs.append(helper.make_tensor_value_info(
            "h0", TensorProto.FLOAT, [batch, D, H] if layout else [D, batch, H]))
    node_inputs.append("h0" if h0 else "")
    while node_inputs and not node_inputs[-1]:
        node_inputs.pop()
    attrs = {"hidden_size": H, "direction": direction}
    if activations:
        attrs["activations"] = activations
    if layout:
        attrs["layout"] = 1
    node = helper.make_node(op, node_inputs, ["Y", "Y_h"], name="rnn", **attrs)
    nodes = [node, *extra_nodes]
    outputs = [helper.make_tensor_value_info("Y_h" if not dead else "other", TensorProto.FLOAT,
                                             None)]
    if dead:    # the recurrent node feeds nothing that reaches the output
        nodes.append(helper.make_node("Identity", ["X"], ["other"]))
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits + list(extra_inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("kwargs,has,lacks", [
    ({}, {"rnn-op", "rnn-unidirectional", "rnn-symbolic-batch"},
     {"lstm-op", "gru-op", "rnn-bidirectional", "rnn-layout1", "rnn-sequence-lens",
      "rnn-no-initial-h", "rnn-activation-relu", "rnn-activation-not-tanh"}),
    ({"op": "LSTM"}, {"lstm-op"}, {"rnn-op"}),
    ({"op": "GRU"}, {"gru-op"}, {"rnn-op"}),
    ({"direction": "bidirectional"}, {"rnn-bidirectional"}, {"rnn-unidirectional"}),
    ({"direction": "reverse"}, {"rnn-unidirectional"}, {"rnn-bidirectional"}),
    ({"activations": ["Relu"]}, {"rnn-activation-relu", "rnn-activation-not-tanh"}, set()),
    ({"activations": ["Sigmoid"]}, {"rnn-activation-not-tanh"}, {"rnn-activation-relu"}),
    ({"activations": ["Tanh"]}, set(), {"rnn-activation-not-tanh", "rnn-activation-relu"}),
    ({"direction": "bidirectional", "activations": ["Tanh", "Relu"]},
     {"rnn-activation-relu", "rnn-activation-not-tanh"}, set()),
    ({"layout": 1}, {"rnn-layout1", "rnn-symbolic-batch"}, set()),
    ({"seq_lens": True}, {"rnn-sequence-lens"}, set()),
    ({"h0": False}, {"rnn-no-initial-h"}, set()),
    ({"h0": False, "batch": 4}, {"rnn-no-initial-h"}, {"rnn-symbolic-batch"}),
    ({"layout": 1, "batch": 4}, {"rnn-layout1"}, {"rnn-symbolic-batch"}),
    ({"dead": True}, set(), {"rnn-op", "rnn-unidirectional", "rnn-symbolic-batch"}),
])
def test_recurrent_node_features(kwargs, has, lacks):
    feats = graph_features(_rnn_model(**kwargs))
    assert has <= feats, feats
    assert not (lacks & feats), feats


def _scan_model(body_ops: list[str], step=None) -> onnx.ModelProto:
    """A Scan whose body chains body_ops over [1, 3] slices; a Slice with `step` after it."""
    b_in = [helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, 3]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])]
    nodes, last = [], "x"
    for k, op in enumerate(body_ops):
        ins = [last, "s"] if op in ("Add", "MatMul", "Mul") else [last]
        nodes.append(helper.make_node(op, ins, [f"t{k}"]))
        last = f"t{k}"
    body = helper.make_graph(nodes + [helper.make_node("Identity", [last], ["y"])], "body",
                             b_in, [helper.make_tensor_value_info(last, TensorProto.FLOAT, [1, 3]),
                                    helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    scan = helper.make_node("Scan", ["s0", "xs"], ["sT", "ys"], body=body, num_scan_inputs=1)
    outer = [scan]
    inits = []
    out = "ys"
    if step is not None:
        for name, v in (("st", [0]), ("en", [10]), ("ax", [0]), ("sp", [step])):
            inits.append(numpy_helper.from_array(np.array(v, np.int64), name))
        outer.append(helper.make_node("Slice", ["ys", "st", "en", "ax", "sp"], ["flip"]))
        out = "flip"
    g = helper.make_graph(outer, "g", [
        helper.make_tensor_value_info("s0", TensorProto.FLOAT, [1, 3]),
        helper.make_tensor_value_info("xs", TensorProto.FLOAT, ["seq", 1, 3])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_scan_features():
    assert {"scan", "scan-rnn-body"} <= graph_features(_scan_model(["MatMul", "Add", "Tanh"]))
    assert {"scan", "scan-rnn-body"} <= graph_features(_scan_model(["Add", "Relu"]))
    gated = graph_features(_scan_model(["MatMul", "Add", "Sigmoid", "Mul", "Tanh"]))
    assert "scan" in gated and "scan-rnn-body" not in gated
    assert "scan-rnn-body" not in graph_features(_scan_model(["MatMul", "Add"]))  # no activation
    assert "negative-step-slice" in graph_features(_scan_model(["Add", "Tanh"], step=-1))
    assert "negative-step-slice" not in graph_features(_scan_model(["Add", "Tanh"], step=1))


def test_negative_step_from_a_constant_node():
    m = _scan_model(["Add", "Tanh"], step=1)
    m.graph.node.insert(0, helper.make_node("Constant", [], ["neg"],
                                            value=numpy_helper.from_array(np.array([-1], np.int64))))
    next(n for n in m.graph.node if n.op_type == "Slice").input[4] = "neg"
    assert "negative-step-slice" in graph_features(m)


def test_feed_features():
    x = np.zeros((6, 3, 2), np.float32)                 # [seq 6, batch 3, 2]
    assert feed_features({"input": x, "sequence_lens": np.array([6, 6, 6], np.int32)}) \
        == frozenset()
    assert "padded" in feed_features({"input": x, "sequence_lens": np.array([6, 5, 6], np.int32)})
    xb = np.zeros((3, 6, 2), np.float32)                # batch_first [batch 3, seq 6, 2]
    assert "padded" in feed_features({"input": xb, "sequence_lens": np.array([6, 1, 6])})
    assert "padded" not in feed_features({"input": xb, "sequence_lens": np.array([6, 6, 6])})
    assert "batch1-seq1" in feed_features({"input": np.zeros((1, 1, 2), np.float32)})
    assert "batch1-seq1" not in feed_features({"input": np.zeros((1, 2, 2), np.float32)})


def test_case_features_frozen_and_fixed_sizes(tmp_path):
    m = _rnn_model(batch=4)
    m.graph.output[0].name = "output"
    m.graph.node[0].output[1] = "output"
    m.graph.output[0].type.CopyFrom(helper.make_tensor_type_proto(TensorProto.FLOAT, [5, 4, 3]))
    m.graph.input[0].name = "input"
    m.graph.node[0].input[0] = "input"
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    h0 = np.zeros((1, 4, 3), np.float32)
    same = case_features(str(path), {"input": np.zeros((5, 4, 2), np.float32), "h0": h0})
    assert not {"frozen-output-size", "fixed-size-mismatch"} & same
    other = case_features(str(path), {"input": np.zeros((7, 2, 2), np.float32), "h0": h0})
    assert {"frozen-output-size", "fixed-size-mismatch"} <= other
    assert model_features(str(path)) == graph_features(onnx.load(path))


# ---- mistakes as graph rewrites ---------------------------------------------------------------

def _rewritten(name: str, model: onnx.ModelProto) -> onnx.NodeProto:
    MISTAKES[name].rewrite(model)
    return next(n for n in model.graph.node if n.op_type in ("RNN", "LSTM", "GRU"))


def _attr(node, name, default=None):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name),
                default)


def test_mistake_activations_as_tanh():
    node = _rewritten("activations-as-tanh", _rnn_model(direction="bidirectional",
                                                        activations=["Relu", "Relu"]))
    assert _attr(node, "activations") == [b"Tanh", b"Tanh"]
    node = _rewritten("activations-as-tanh", _rnn_model(activations=["Relu"]))
    assert _attr(node, "activations") == [b"Tanh"]
    lstm = _rewritten("activations-as-tanh", _rnn_model("LSTM"))
    assert _attr(lstm, "activations") is None            # only RNN nodes: LSTM untouched


def test_mistake_sequence_lens_ignored():
    node = _rewritten("sequence-lens-ignored", _rnn_model(seq_lens=True))
    assert node.input[4] == "" and node.input[5] == "h0"
    node = _rewritten("sequence-lens-ignored", _rnn_model())
    assert list(node.input)[:3] == ["X", "W", "R"]


def test_mistake_layout_read_as_0():
    assert _attr(_rewritten("layout-read-as-0", _rnn_model(layout=1)), "layout") == 0
    assert _attr(_rewritten("layout-read-as-0", _rnn_model()), "layout", 0) == 0


def test_the_file_as_written_changes_nothing_and_needs_no_right_file():
    m = _rnn_model(layout=1, seq_lens=True, activations=["Relu"])
    before = m.SerializeToString()
    MISTAKES["the-file-as-written"].rewrite(m)
    assert m.SerializeToString() == before
    assert not MISTAKES["the-file-as-written"].file_must_be_right
    assert all(MISTAKES[n].file_must_be_right for n in MISTAKES if n != "the-file-as-written")
