"""The scan lowering: same contract as the RNN-op lowering, checked against torch on
onnxruntime CPU and on onnx's reference evaluator (independent of onnxruntime's kernels)."""
from __future__ import annotations

import itertools

import onnx
import pytest
from onnx.reference import ReferenceEvaluator

from conformance.truth import make_feeds, torch_truth
from exporter import ExportError, RNNSpec, export

from .helpers import assert_close, ort_run

AXES = list(itertools.product([1, 2, 3], ["tanh", "relu"], [True, False], [False, True],
                              [False, True], ["input", "zeros"], [False, True]))


def _id(case) -> str:
    layers, nl, bias, bf, bi, init, lens = case
    return RNNSpec(3, 4, layers, nl, bias, bf, 0.0, bi).id + f"-h0{init}" + ("-lens" if lens else "")


@pytest.mark.parametrize("case", AXES, ids=[_id(c) for c in AXES])
def test_scan_matches_torch(case):
    layers, nl, bias, bf, bi, init, lens = case
    spec = RNNSpec(3, 4, layers, nl, bias, bf, 0.0, bi)
    module = spec.build_module(seed=layers)
    model = export(module, initial_state=init, sequence_lens=lens, lowering="scan")
    ref = ReferenceEvaluator(model)
    for batch, seq in ((1, 1), (4, 11)):
        feeds = make_feeds(spec, batch, seq, init == "input", seed=seq,
                           lengths="mixed" if lens else None)
        want, _ = torch_truth(module, feeds)
        want = [want["output"], want["h_n"]]
        assert_close(ort_run(model, feeds), want)
        assert_close(ref.run(["output", "h_n"], feeds), want)


def test_scan_structure_and_contract():
    spec = RNNSpec(5, 6, num_layers=2, bidirectional=True, batch_first=True)
    module = spec.build_module(seed=0)
    scan, rnn = export(module, lowering="scan"), export(module)
    onnx.checker.check_model(scan, full_check=True)
    ops = [n.op_type for n in scan.graph.node]
    assert ops.count("Scan") == 2 and "RNN" not in ops and "Loop" not in ops
    assert [(i.name, i.type) for i in scan.graph.input] == [(i.name, i.type) for i in rnn.graph.input]
    assert [(o.name, o.type) for o in scan.graph.output] == [(o.name, o.type) for o in rnn.graph.output]
    props = {p.key: p.value for p in scan.metadata_props}
    assert props["lowering"] == "scan"
    # the recurrence is all that runs per step: MatMul, Add, activation (Identity for the output)
    body = next(a.g for a in scan.graph.node[ops.index("Scan")].attribute if a.name == "body")
    assert sorted({n.op_type for n in body.node}) == ["Add", "Identity", "MatMul", "Tanh"]


def test_scan_refuses_layout_attribute():
    with pytest.raises(ExportError, match="scan lowering has no RNN op"):
        export(RNNSpec(2, 3, batch_first=True).build_module(), lowering="scan",
               batch_layout="attribute")
    with pytest.raises(ExportError, match="lowering must be one of"):
        export(RNNSpec(2, 3).build_module(), lowering="loop")


def _body(model: onnx.ModelProto) -> onnx.GraphProto:
    scan = next(n for n in model.graph.node if n.op_type == "Scan")
    return next(a.g for a in scan.attribute if a.name == "body")


@pytest.mark.parametrize("cell,groups,acts", [
    ("lstm", [3, 1], {"Sigmoid": 1, "Tanh": 2}),    # σ(i, o, f) | tanh(c̃), then tanh(c)
    ("gru", [1, 1, 1], {"Sigmoid": 2, "Tanh": 1}),  # σ(z) | σ(r) | tanh(n)
])
def test_scan_gate_groups_one_gemm_each_and_no_split_of_the_step_input(cell, groups, acts):
    """One hoisted Gemm per gate group, each group's slice a Scan input of its own (the body
    never splits its input), one activation node per group; the bias rides on a column of
    ones (no Gemm has a C input, no bias Add outside the Scan)."""
    H = 6
    spec = RNNSpec(5, H, cell=cell)
    model = export(spec.build_module(seed=0), lowering="scan")
    gemms = [n for n in model.graph.node if n.op_type == "Gemm"]
    assert len(gemms) == len(groups) and all(len(g.input) == 2 for g in gemms)
    inits = {i.name: i for i in model.graph.initializer}
    assert [inits[g.input[1]].dims for g in gemms] == [[k * H, 5 + 1] for k in groups]
    pad = next(n for n in model.graph.node if n.op_type == "Pad")
    assert onnx.numpy_helper.to_array(inits[pad.input[2]]) == 1.0
    body = _body(model)
    assert len(body.input) == len(spec.cell_info.states) + len(groups)
    assert [i.type.tensor_type.shape.dim[1].dim_value for i in body.input][-len(groups):] == \
        [k * H for k in groups]
    ops = [n.op_type for n in body.node]
    assert ops.count("MatMul") == len(groups)
    assert {a: ops.count(a) for a in acts} == acts
    assert ops.count("Split") == (1 if cell == "lstm" else 0)   # i, o, f out of σ's output


def test_scan_without_bias_has_no_ones_column():
    model = export(RNNSpec(5, 6, bias=False, cell="lstm").build_module(seed=0), lowering="scan")
    assert "Pad" not in [n.op_type for n in model.graph.node]
    inits = {i.name: i for i in model.graph.initializer}
    assert [inits[n.input[1]].dims for n in model.graph.node if n.op_type == "Gemm"] == \
        [[18, 5], [6, 5]]


BATCHED = [(cell, extra, init, lens) for cell, extra in (
               ("rnn", {"num_layers": 2}), ("rnn", {"nonlinearity": "relu", "batch_first": True}),
               ("lstm", {"num_layers": 2}), ("lstm", {"proj_size": 2, "bias": False}),
               ("gru", {"num_layers": 2}), ("gru", {"bias": False}))
           for init, lens in (("zeros", False), ("input", True))]


@pytest.mark.parametrize("cell,extra,init,lens", BATCHED,
                         ids=[f"{c}-{'-'.join(e)}-{i}{'-lens' if s else ''}"
                              for c, e, i, s in BATCHED])
def test_both_directions_as_one_batched_recurrence_match_torch(cell, extra, init, lens,
                                                               monkeypatch):
    """The measured alternative (BATCHED_DIRECTIONS, off for every cell today) stays exact:
    one Scan per bidirectional layer over a [2, batch, ·] state, on onnxruntime and onnx's
    reference evaluator, against torch."""
    import onnxruntime as ort

    import exporter.lowering.scan as scan

    monkeypatch.setattr(scan, "BATCHED_DIRECTIONS", {"rnn": True, "lstm": True, "gru": True})
    spec = RNNSpec.from_kwargs({"cell": cell, "input_size": 3, "hidden_size": 4,
                                "bidirectional": True, **extra})
    module = spec.build_module(seed=1)
    model = export(module, initial_state=init, sequence_lens=lens, lowering="scan",
                   verify=False)
    scans = [n for n in model.graph.node if n.op_type == "Scan"]
    assert len(scans) == spec.num_layers
    states = next(i for i in _body(model).input)
    assert states.type.tensor_type.shape.dim[0].dim_value == 2            # [2, batch, ·]
    ref = ReferenceEvaluator(model)
    names = ["output", "h_n"] + (["c_n"] if cell == "lstm" else [])
    for batch, seq in ((1, 1), (4, 9)):
        feeds = make_feeds(spec, batch, seq, init == "input", seed=seq,
                           lengths="mixed" if lens else None)
        want, _ = torch_truth(module, feeds)
        want = [want[n] for n in names]
        sess = ort.InferenceSession(model.SerializeToString(),
                                    providers=["CPUExecutionProvider"])
        assert_close(sess.run(names, feeds), want)
        assert_close(ref.run(names, feeds), want)


def _computed_gathers(model: onnx.ModelProto) -> list[str]:
    """Gathers whose indices are computed, not constant: the time flips of flip "gather"
    (a layer's initial state is taken per direction with a constant index)."""
    consts = {i.name for i in model.graph.initializer} | {
        o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in model.graph.node if n.op_type == "Gather" and n.input[1] not in consts]


SCAN_DIRECTIONS = [(cell, extra, init, lens) for cell, extra in (
                       ("rnn", {"num_layers": 2, "nonlinearity": "relu"}),
                       ("lstm", {"num_layers": 2, "batch_first": True}),
                       ("lstm", {"proj_size": 2, "bias": False}),
                       ("gru", {"num_layers": 2}), ("gru", {"bias": False, "batch_first": True}))
                   for init, lens in (("zeros", False), ("input", True))]


@pytest.mark.parametrize("cell,extra,init,lens", SCAN_DIRECTIONS,
                         ids=[f"{c}-{'-'.join(e)}-{i}{'-lens' if s else ''}"
                              for c, e, i, s in SCAN_DIRECTIONS])
def test_the_ort_target_steps_the_reverse_direction_in_the_scan(cell, extra, init, lens):
    """target="ort": the reverse direction runs backwards in the Scan itself (its
    scan_input_directions / scan_output_directions), no time flip around it; exact against
    torch on onnxruntime, and refused by onnx's reference evaluator, which lacks them (what
    onnx-reference-scan-directions-unimplemented says, and why "any" keeps a flip)."""
    from conformance.features import graph_features

    spec = RNNSpec.from_kwargs({"cell": cell, "input_size": 3, "hidden_size": 4,
                                "bidirectional": True, **extra})
    module = spec.build_module(seed=2)
    model = export(module, initial_state=init, sequence_lens=lens, lowering="scan",
                   target="ort")
    scans = [n for n in model.graph.node if n.op_type == "Scan"]
    assert len(scans) == spec.num_layers
    G = {"rnn": 1, "lstm": 2, "gru": 3}[cell]                 # gate groups: scan inputs per dir
    for scan in scans:
        attrs = {a.name: list(a.ints) for a in scan.attribute if a.ints}
        assert attrs["scan_input_directions"] == [0] * G + [1] * G + ([0, 1] if lens else [])
        assert attrs["scan_output_directions"] == [0, 1]
    feats = graph_features(model)
    assert {"scan", "scan-reverse-direction"} <= feats and "negative-step-slice" not in feats
    assert not _computed_gathers(model)                       # no time flip by Gather either
    flipped = export(module, initial_state=init, sequence_lens=lens, lowering="scan",
                     target="any", verify=False)
    assert _computed_gathers(flipped) and "scan-reverse-direction" not in graph_features(flipped)
    names = ["output", "h_n"] + (["c_n"] if cell == "lstm" else [])
    for batch, seq in ((1, 1), (4, 9)):
        feeds = make_feeds(spec, batch, seq, init == "input", seed=seq,
                           lengths="mixed" if lens else None)
        want, _ = torch_truth(module, feeds)
        assert_close(ort_run(model, feeds, tuple(names)), [want[n] for n in names])
    with pytest.raises(RuntimeError, match="input_direction than 0"):
        ReferenceEvaluator(model).run(names, feeds)
