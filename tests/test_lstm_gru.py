"""nn.LSTM and nn.GRU under the nn.RNN contract: random configs of all three cells, both
lowerings, with and without sequence_lens, judged against torch by the runner's compare()."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from conformance.compare import compare
from conformance.truth import make_feeds, torch_truth
from exporter import ExportError, RNNSpec, export, spec_from_checkpoint
from exporter.cli import main as exporter_main

from .helpers import ATOL, RTOL


def _ort(model: onnx.ModelProto, feeds: dict) -> dict:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


@st.composite
def configs(draw):
    cell = draw(st.sampled_from(["rnn", "lstm", "gru"]))
    lowering = draw(st.sampled_from(["rnn", "scan"]))
    hidden = draw(st.integers(1, 9))
    proj = draw(st.integers(0, hidden - 1)) if cell == "lstm" and lowering == "scan" else 0
    spec = RNNSpec(draw(st.integers(1, 6)), hidden, num_layers=draw(st.integers(1, 3)),
                   nonlinearity=draw(st.sampled_from(["tanh", "relu"])) if cell == "rnn"
                   else "tanh", bias=draw(st.booleans()), batch_first=draw(st.booleans()),
                   bidirectional=draw(st.booleans()), cell=cell, proj_size=proj)
    return (spec, lowering, draw(st.booleans()), draw(st.booleans()),
            draw(st.integers(1, 4)), draw(st.integers(1, 12)), draw(st.integers(0, 2 ** 16)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_random_configs_match_torch(case):
    spec, lowering, with_h0, seq_lens, batch, seq, seed = case
    module = spec.build_module(seed=seed)
    model = export(module, lowering=lowering, sequence_lens=seq_lens,
                   initial_state="input" if with_h0 else "zeros")
    lengths = "unsorted" if seq_lens else None
    feeds = make_feeds(spec, batch, seq, with_h0, seed, lengths)
    f32, f64 = torch_truth(module, feeds)
    assert set(f32) == ({"output", "h_n", "c_n"} if spec.cell == "lstm" else {"output", "h_n"})
    cmp = compare("ort-cpu", _ort(model, feeds), f32, f64)
    assert cmp.passed, (spec, lowering, with_h0, seq_lens, batch, seq, cmp.message)


@pytest.mark.parametrize("cell,op", [("lstm", "LSTM"), ("gru", "GRU")])
def test_one_native_node_per_layer_and_the_contract(cell, op):
    spec = RNNSpec(4, 6, num_layers=3, bidirectional=True, batch_first=True, cell=cell)
    model = export(spec.build_module(seed=0))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count(op) == 3 and "Scan" not in ops and "Loop" not in ops
    ins = [(i.name, [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim])
           for i in model.graph.input]
    outs = [o.name for o in model.graph.output]
    if cell == "lstm":
        assert ins == [("input", ["batch", "seq", 4]), ("h_0", [6, "batch", 6]),
                       ("c_0", [6, "batch", 6])]
        assert outs == ["output", "h_n", "c_n"]
    else:
        assert [n for n, _ in ins] == ["input", "h_0"] and outs == ["output", "h_n"]
        node = next(n for n in model.graph.node if n.op_type == "GRU")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["linear_before_reset"] == 1     # torch applies r after the projection


def test_proj_size_needs_the_scan_lowering():
    module = nn.LSTM(4, 6, proj_size=3)
    with pytest.raises(ExportError, match='lowering="scan"'):
        export(module, lowering="rnn")
    model = export(module)                                      # the scan lowering, chosen
    assert {n.op_type for n in model.graph.node} >= {"Scan"}
    h0 = [i for i in model.graph.input if i.name == "h_0"][0]
    assert h0.type.tensor_type.shape.dim[2].dim_value == 3      # h is projected
    c0 = [i for i in model.graph.input if i.name == "c_0"][0]
    assert c0.type.tensor_type.shape.dim[2].dim_value == 6


@pytest.mark.parametrize("module,cell,proj", [(nn.LSTM(5, 7, 2, bidirectional=True), "lstm", 0),
                                              (nn.LSTM(5, 7, proj_size=4), "lstm", 4),
                                              (nn.GRU(5, 7, bias=False), "gru", 0),
                                              (nn.RNN(5, 7), "rnn", 0)])
def test_checkpoints_tell_their_cell(module, cell, proj, tmp_path):
    path = tmp_path / "ck.pt"
    torch.save(module.state_dict(), path)
    spec, _ = spec_from_checkpoint(path)
    assert (spec.cell, spec.hidden_size, spec.proj_size) == (cell, 7, proj)
    other = "gru" if cell != "gru" else "lstm"
    with pytest.raises(ExportError, match="disagrees with the checkpoint"):
        spec_from_checkpoint(path, cell=other)


def test_cli_exports_each_cell(capsys, tmp_path):
    for args in (["--cell", "lstm", "--bidirectional"], ["--cell", "gru", "--batch-first"],
                 ["--cell", "lstm", "--proj-size", "5", "--lowering", "scan"]):
        out = tmp_path / "m.onnx"
        assert exporter_main(["export", *args, "-o", str(out)]) == 0
        assert "nn.LSTM" in capsys.readouterr().out or args[1] == "gru"
    assert exporter_main(["export", "--cell", "gru", "--nonlinearity", "relu"]) == 2
    assert "nn.RNN's argument" in capsys.readouterr().err


def test_whole_model_lstm_tagger_runs_at_any_length(tmp_path):
    """The issue's example: Embedding → 2-layer bidirectional LSTM → Linear, exported with
    exporter.export(model, (ids,), f), at lengths and batches it was not exported with."""
    from models.composite import LSTMTagger

    torch.manual_seed(0)
    model = LSTMTagger().eval()
    export(model, (torch.randint(0, 50, (2, 5)),), tmp_path / "tagger.onnx")
    onnx_model = onnx.load(tmp_path / "tagger.onnx")
    assert [n.op_type for n in onnx_model.graph.node].count("LSTM") == 2
    for batch, seq in ((1, 1), (3, 17), (2, 64)):
        ids = torch.randint(0, 50, (batch, seq))
        (got,) = _ort(onnx_model, {onnx_model.graph.input[0].name: ids.numpy()}).values()
        with torch.no_grad():
            want = model(ids).numpy()
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)
