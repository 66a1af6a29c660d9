"""Every nn.RNN argument combination: exported, run on onnxruntime CPU, compared to torch."""
from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest

from exporter import RNNSpec, export

from .helpers import ATOL, RTOL, assert_close, feeds_for, make_inputs, ort_run, torch_outputs
from .numpy_rnn import run_model

AXES = list(itertools.product([1, 2, 3], ["tanh", "relu"], [True, False], [False, True],
                              [False, True], ["input", "zeros"]))
SHAPES = [(1, 1), (3, 17)]   # (batch, seq)


def _case_id(case) -> str:
    layers, nl, bias, bf, bi, init = case
    return RNNSpec(4, 5, layers, nl, bias, bf, 0.0, bi).id + f"-h0{init}"


@pytest.fixture(scope="module")
def exported():
    cache = {}

    def get(case):
        if case not in cache:
            layers, nl, bias, bf, bi, init = case
            spec = RNNSpec(4, 5, layers, nl, bias, bf, 0.0, bi)
            module = spec.build_module(seed=len(cache))
            cache[case] = (spec, module, export(module, initial_state=init, target="none"))
        return cache[case]
    return get


@pytest.mark.parametrize("case", AXES, ids=[_case_id(c) for c in AXES])
def test_matches_torch(case, exported):
    spec, module, model = exported(case)
    for batch, seq in SHAPES:
        x, h0 = make_inputs(spec, batch, seq, seed=batch * 100 + seq)
        h0 = h0 if case[-1] == "input" else None
        assert_close(ort_run(model, feeds_for(x, h0)), torch_outputs(module, x, h0))


@pytest.mark.parametrize("case", AXES, ids=[_case_id(c) for c in AXES])
def test_structure(case, exported):
    spec, _, model = exported(case)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("RNN") == spec.num_layers
    assert not {"Loop", "Scan", "MatMul", "Tanh", "Relu"} & set(ops)
    assert len(ops) <= 4 * spec.num_layers + 2
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    declared = {o.name: o.type for o in model.graph.output}
    for vi in inferred.graph.output:
        assert vi.type == declared[vi.name]
    for node in model.graph.node:
        if node.op_type == "RNN":
            acts = next(a for a in node.attribute if a.name == "activations").strings
            assert acts == [case[1].capitalize().encode()] * spec.num_directions
            assert (len(node.input) > 3 and node.input[3] != "") == spec.bias


def test_glue_budget_for_two_layer_bidirectional_batch_first():
    spec = RNNSpec(10, 20, num_layers=2, bidirectional=True, batch_first=True)
    model = export(spec.build_module(seed=0), target="none")
    assert len(model.graph.node) <= 10   # the legacy TorchScript exporter emits 19


def test_declared_io_contract():
    spec = RNNSpec(6, 7, num_layers=2, bidirectional=True, batch_first=True)
    model = export(spec.build_module(seed=0), target="none")

    def dims(vi):
        return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
    io = {vi.name: dims(vi) for vi in [*model.graph.input, *model.graph.output]}
    assert io == {"input": ["batch", "seq", 6], "h_0": [4, "batch", 7],
                  "output": ["batch", "seq", 14], "h_n": [4, "batch", 7]}
    zeros = export(spec.build_module(seed=0), initial_state="zeros", target="none")
    assert [i.name for i in zeros.graph.input] == ["input"]


def test_metadata_and_producer():
    import torch

    spec = RNNSpec(2, 3, nonlinearity="relu")
    model = export(spec.build_module(seed=0), opset=18, target="none")
    props = {p.key: p.value for p in model.metadata_props}
    assert RNNSpec.from_kwargs(__import__("json").loads(props["rnn_config"])) == spec
    assert props["torch_version"] == torch.__version__
    assert model.producer_name == "torch-rnn-onnx" and model.producer_version
    assert model.opset_import[0].version == 18


@pytest.mark.parametrize("case", [(1, "tanh", True, False, False, "input"),
                                  (3, "relu", False, True, True, "input"),
                                  (2, "tanh", True, True, True, "zeros"),
                                  (2, "relu", True, False, True, "input")],
                         ids=_case_id)
def test_numpy_spec_reading_agrees(case, exported):
    """Third opinion: the ONNX spec's equations on the exported weights match torch."""
    spec, module, model = exported(case)
    x, h0 = make_inputs(spec, 2, 9, seed=7)
    h0 = h0 if case[-1] == "input" else None
    out, hn = run_model(model, x.numpy(), None if h0 is None else h0.numpy().astype(np.float64),
                        spec.batch_first)
    want = torch_outputs(module, x, h0)
    np.testing.assert_allclose(out, want[0], atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(hn, want[1], atol=ATOL, rtol=RTOL)
