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
