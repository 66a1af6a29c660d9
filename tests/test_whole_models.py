"""Whole modules containing nn.RNNs: every RNN layer a native RNN node, dynamic shapes, torch's
numbers on onnxruntime CPU."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from exporter import ExportError, export
from models import COMPOSITES

from .helpers import ATOL, RTOL

SHAPES = [(1, 1), (3, 17), (2, 64)]     # (batch, seq); none is the export example's (2, 5)


def _torch(module: nn.Module, feeds: dict[str, np.ndarray], comp=None) -> list[np.ndarray]:
    tensors = {k: torch.from_numpy(v) for k, v in feeds.items()}
    with torch.no_grad():
        out = module(*(comp.call(tensors) if comp else tensors.values()))
    return [o.numpy() for o in torch.utils._pytree.tree_leaves(out)]


def _export(name: str, batch: int = 2, seq: int = 5, target: str = "none"):
    comp = COMPOSITES[name]
    torch.manual_seed(0)
    module = comp.build().eval()
    example = comp.inputs(batch, seq, np.random.default_rng(0))
    model = export(module, comp.call({k: torch.from_numpy(v) for k, v in example.items()}),
                   input_names=list(example), output_names=list(comp.outputs),
                   **{"target": target, **comp.options()})
    return comp, module, model


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_structure(name):
    comp, module, model = _export(name)
    ops = [n.op_type for n in model.graph.node]
    scan = comp.options().get("lowering") == "scan"
    for cls, op in ((nn.RNN, "RNN"), (nn.LSTM, "LSTM"), (nn.GRU, "GRU")):
        layers = sum(m.num_layers for m in module.modules() if type(m) is cls)
        assert ops.count(op) == (0 if scan else layers), op
    assert ("Scan" in ops) == scan and "Loop" not in ops
    assert not any(n.domain for n in model.graph.node)
    assert [o.name for o in model.graph.output] == list(comp.outputs)
    onnx.checker.check_model(model, full_check=True)
    # A longer example does not grow the graph: nothing is unrolled per step.
    longer = _export(name, 2, 40)[2]
    assert len(longer.graph.node) == len(model.graph.node)


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_numbers_at_other_shapes(name):
    comp, module, model = _export(name, target="any")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch, seq in SHAPES:
        feeds = comp.inputs(batch, seq, np.random.default_rng(batch * 100 + seq))
        got = sess.run(list(comp.outputs), feeds)
        for g, w in zip(got, _torch(module, feeds, comp)):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, atol=ATOL, rtol=RTOL)


def test_target_any_chooses_per_module_and_records_it():
    """RNNTagger's relu RNN becomes the scan lowering for `any` (tract runs Relu as Tanh);
    the metadata names the module, the choice and the divergence behind it."""
    import json

    _, _, model = _export("tagger", target="any")
    props = {p.key: p.value for p in model.metadata_props}
    how = json.loads(props["construction"])["rnn"]
    assert props["target"] == "any" and how["lowering"] == "scan" and how["flip"] == "gather"
    assert ["lowering=scan", "tract-activations-ignored"] in how["because"]
    assert "RNN" not in {n.op_type for n in model.graph.node}


def test_h0_passed_or_omitted():
    class Maybe(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.RNN(3, 4, num_layers=2, batch_first=True)

        def forward(self, x, h0=None):
            return self.rnn(x, h0)[0]

    m = Maybe().eval()
    x = torch.randn(2, 5, 3)
    without = export(m, (x,))
    assert [i.name for i in without.graph.input] == ["x"]
    with_h0 = export(m, (x, torch.randn(2, 2, 4)))
    assert len(with_h0.graph.input) == 2
    sess = ort.InferenceSession(without.SerializeToString(), providers=["CPUExecutionProvider"])
    x = torch.randn(4, 9, 3)
    np.testing.assert_allclose(sess.run(None, {"x": x.numpy()})[0], m(x).detach().numpy(),
                               atol=ATOL, rtol=RTOL)


def test_refusals():
    class WithCell(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.cell = nn.RNN(3, 4), nn.LSTMCell(4, 4)

        def forward(self, x):
            return self.cell(self.rnn(x)[0][-1])[0]

    with pytest.raises(ExportError, match="cell.*LSTMCell.*refusing"):
        export(WithCell().eval(), (torch.randn(5, 2, 3),))
    with pytest.raises(ExportError, match="holds no nn.RNN, nn.LSTM or nn.GRU"):
        export(nn.Linear(3, 4), (torch.randn(2, 3),))

    class Dropping(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.RNN(3, 4, num_layers=2, dropout=0.5)

        def forward(self, x):
            return self.rnn(x)[0]

    with pytest.raises(ExportError, match="rnn is in training mode with dropout=0.5"):
        export(Dropping(), (torch.randn(5, 2, 3),))
    with pytest.raises(ExportError, match="example args"):
        export(Dropping().eval())
    with pytest.raises(ExportError, match="sequence_lens applies to exporting a recurrent module itself"):
        export(Dropping().eval(), (torch.randn(5, 2, 3),), sequence_lens=True)


def test_packed_sequence_inside_module_is_refused():
    from models import PaddedSentenceClassifier

    clf = PaddedSentenceClassifier().eval()
    with pytest.raises(ExportError, match="PackedSequence"):
        export(clf, (torch.randint(1, 100, (3, 6)), torch.tensor([6, 2, 4])))


def test_module_is_restored_after_export():
    comp, module, _ = _export("classifier")
    assert isinstance(module.rnn, nn.RNN)


def test_the_stand_in_reads_like_the_module():
    """A forward may read its recurrent module's attributes and weights and call
    flatten_parameters() while torch.export traces it (the stand-in answers as the module)."""
    from models.composite import StatefulLSTM

    torch.manual_seed(0)
    m = StatefulLSTM().eval()
    model = export(m, (torch.randn(2, 5, 5),), output_names=["scores", "h_n", "c_n"])
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 8, 5)
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = m(x)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), atol=ATOL, rtol=RTOL)
    # the stand-in's registered weights are not left in the file beside the lowered ones
    assert not [t.name for t in model.graph.initializer if "weight_ih" in t.name]


def test_root_cause_is_the_telling_error_not_stop_iteration():
    from exporter.errors import ExportError

    class Two(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = torch.nn.GRU(3, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.gru(x)[0]

    with pytest.raises(ExportError, match="too many positional arguments"):
        export(Two(), (torch.randn(5, 2, 3), {}))


def test_a_recurrent_module_outside_the_tree_is_refused_from_the_program():
    from exporter.errors import ExportError

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = torch.nn.GRU(3, 3)
            self.kept = [torch.nn.LSTM(3, 4)]          # a plain list: not a submodule

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.kept[0](self.gru(x)[0])[0]

    with pytest.raises(ExportError, match=r"outside the module tree \(aten.lstm"):
        export(Hidden(), (torch.randn(5, 2, 3),))
