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


def test_recurrent_nodes_inside_subgraphs_and_outer_scope_reads():
    """An RNN inside an If branch counts; a node outside whose result only a subgraph reads
    is live (the subgraph's outer-scope read keeps it)."""
    inner = _rnn_model(activations=["Relu"])
    branch = helper.make_graph(list(inner.graph.node), "then", [],
                               [helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, None)],
                               initializer=list(inner.graph.initializer))
    other = helper.make_graph([helper.make_node("Identity", ["X"], ["o"])], "else", [],
                              [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("Identity", ["X_in"], ["X"]),        # read only by the branches
             helper.make_node("If", ["cond"], ["out"], then_branch=branch, else_branch=other)]
    g = helper.make_graph(nodes, "g", [
        helper.make_tensor_value_info("X_in", TensorProto.FLOAT, ["seq", "batch", 2]),
        helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, "batch", 3]),
        helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    feats = graph_features(m)
    assert {"rnn-op", "rnn-activation-relu"} <= feats, feats
    from conformance.features import _live
    assert [n.op_type for n in _live(m.graph)] == ["If", "Identity"]


def test_features_of_several_recurrent_nodes_add_up():
    first = _rnn_model(activations=["Relu"])
    second = helper.make_node("GRU", ["Y_h2", "W2", "R2"], ["Y2", "Y_h2_out"], hidden_size=3,
                              direction="bidirectional")
    squeeze = helper.make_node("Squeeze", ["Y_h"], ["Y_h2"])  # [1, batch, 3] → [batch, 3]…
    first.graph.node.extend([squeeze, second])
    first.graph.initializer.extend([
        numpy_helper.from_array(np.zeros((2, 9, 3), np.float32), "W2"),
        numpy_helper.from_array(np.zeros((2, 9, 3), np.float32), "R2")])
    first.graph.output[0].name = "Y_h2_out"
    feats = graph_features(first)
    assert {"rnn-op", "rnn-activation-relu", "gru-op", "rnn-bidirectional",
            "rnn-unidirectional"} <= feats, feats


def test_symbolic_batch_reads_shape_inference_and_unknown_shapes():
    fixed = _rnn_model(batch=4)
    fixed.graph.input[0].name = "X_in"                 # X only known through an Identity
    fixed.graph.node.insert(0, helper.make_node("Identity", ["X_in"], ["X"]))
    assert "rnn-symbolic-batch" not in graph_features(fixed)
    unknown = _rnn_model(batch=4)
    unknown.graph.input[0].type.tensor_type.ClearField("shape")   # nothing says the batch
    assert "rnn-symbolic-batch" in graph_features(unknown)


def test_scan_body_with_every_allowed_op_and_a_zero_step():
    assert "scan-rnn-body" in graph_features(_scan_model(["MatMul", "Add", "Tanh", "Relu"]))
    assert "negative-step-slice" not in graph_features(_scan_model(["Add", "Tanh"], step=0))


def test_mistakes_reach_recurrent_nodes_inside_subgraphs():
    inner = _rnn_model(direction="bidirectional", activations=["Relu", "Relu"], layout=1,
                       seq_lens=True)
    branch = helper.make_graph(list(inner.graph.node), "then", [],
                               [helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, None)])
    outer = helper.make_node("If", ["cond"], ["out"], then_branch=branch, else_branch=branch)
    model = helper.make_model(helper.make_graph([outer], "g", [], []))
    for name in ("activations-as-tanh", "sequence-lens-ignored", "layout-read-as-0"):
        MISTAKES[name].rewrite(model)
    node = model.graph.node[0].attribute[0].g.node[0]
    assert _attr(node, "activations") == [b"Tanh", b"Tanh"]
    assert node.input[4] == "" and _attr(node, "layout") == 0


def test_sequence_lens_mistake_on_a_node_with_a_bias_and_nothing_after():
    node = helper.make_node("RNN", ["X", "W", "R", "B"], ["Y"], hidden_size=3)
    model = helper.make_model(helper.make_graph([node], "g", [], []))
    MISTAKES["sequence-lens-ignored"].rewrite(model)
    assert list(model.graph.node[0].input) == ["X", "W", "R", "B"]


def test_features_follow_a_file_rewritten_in_place(tmp_path):
    """The feature cache is keyed by path, modification time and size: a file rewritten with
    the same size (Relu → Tanh) is read again, for the graph and for its declared sizes."""
    path = tmp_path / "m.onnx"
    onnx.save(_rnn_model(activations=["Relu"], batch=4), path)
    feeds = {"X": np.zeros((5, 4, 2), np.float32)}
    assert "rnn-activation-relu" in model_features(str(path))
    assert "fixed-size-mismatch" not in case_features(str(path), feeds)
    size = path.stat().st_size
    import time
    time.sleep(0.01)
    onnx.save(_rnn_model(activations=["Tanh"], batch=5), path)
    assert path.stat().st_size == size
    assert "rnn-activation-relu" not in model_features(str(path))
    assert "fixed-size-mismatch" in case_features(str(path), feeds)


def test_outer_scope_reads_two_levels_down():
    """A node read only from a subgraph of a subgraph is live too."""
    leaf = helper.make_graph([helper.make_node("Identity", ["deep"], ["r"])], "leaf", [],
                             [helper.make_tensor_value_info("r", TensorProto.FLOAT, None)])
    middle = helper.make_graph([helper.make_node("If", ["c"], ["m"], then_branch=leaf,
                                                 else_branch=leaf)], "mid", [],
                               [helper.make_tensor_value_info("m", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("Relu", ["x"], ["deep"]), helper.make_node("Relu", ["x"], ["dead"]),
             helper.make_node("If", ["c"], ["out"], then_branch=middle, else_branch=middle)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]),
                                       helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)])
    from conformance.features import _live
    assert [n.output[0] for n in _live(g)] == ["out", "deep"]


@pytest.mark.parametrize("cell,layers,lowering,expected", [
    ("lstm", 2, "rnn", True),      # c_n = Concat(Y_c of each layer): both states consumed
    ("lstm", 2, "scan", True),     # the Scan's final h and c, concatenated
    ("lstm", 1, "rnn", False),     # Y_h, Y_c are the graph outputs themselves
    ("gru", 2, "rnn", False),
    ("gru", 2, "scan", False),     # one state per direction, no c
    ("rnn", 2, "scan", False),
])
def test_lstm_states_consumed(cell, layers, lowering, expected):
    from exporter import RNNSpec, export

    spec = RNNSpec(4, 3, cell=cell, num_layers=layers, bidirectional=True)
    model = export(spec.build_module(seed=0), target="none", lowering=lowering)
    assert ("lstm-states-consumed" in graph_features(model)) == expected


def test_mistake_cell_state_as_hidden_rewires_only_the_readers_of_c():
    from exporter import RNNSpec, export

    model = export(RNNSpec(4, 3, cell="lstm", num_layers=2).build_module(seed=0), target="none")
    wrong = onnx.ModelProto()
    wrong.CopyFrom(model)
    MISTAKES["cell-state-as-hidden"].rewrite(wrong)
    concat = {n.output[0]: list(n.input) for n in wrong.graph.node if n.op_type == "Concat"}
    assert concat["c_n"] == concat["h_n"] == ["Y_h_l0", "Y_h_l1"]
    # nothing else moved: the LSTM nodes still write Y_c, the next layer reads its own state
    assert [list(n.output) for n in wrong.graph.node if n.op_type == "LSTM"] == [
        list(n.output) for n in model.graph.node if n.op_type == "LSTM"]
