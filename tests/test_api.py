from __future__ import annotations

import pytest
import torch

from exporter import ExportError, RNNSpec, export, spec_from_checkpoint
from models import PRESETS, SeedRNN

from .helpers import assert_close, feeds_for, make_inputs, ort_run, torch_outputs


def test_training_mode_with_dropout_is_refused():
    module = torch.nn.RNN(3, 4, num_layers=2, dropout=0.5)  # modules start in training mode
    with pytest.raises(ExportError, match="training mode with dropout=0.5.*eval"):
        export(module)
    export(module.eval())


def test_training_mode_without_dropout_is_the_same_computation():
    module = torch.nn.RNN(3, 4)
    assert module.training
    model = export(module)
    x, h0 = make_inputs(RNNSpec(3, 4), 2, 5)
    assert_close(ort_run(model, feeds_for(x, h0)), torch_outputs(module, x, h0))


def test_example_args_are_checked():
    module = torch.nn.RNN(3, 4).eval()
    export(module, (torch.zeros(5, 1, 3), torch.zeros(1, 1, 4)))
    with pytest.raises(ExportError, match="example input has shape"):
        export(module, (torch.zeros(5, 1, 2),))
    with pytest.raises(ExportError, match="example h_0 has shape"):
        export(module, (torch.zeros(5, 2, 3), torch.zeros(1, 1, 4)))
    with pytest.raises(ExportError, match="initial_state='zeros'"):
        export(module, (torch.zeros(5, 1, 3), torch.zeros(1, 1, 4)), initial_state="zeros")


def test_unknown_option_and_non_rnn_are_refused():
    with pytest.raises(ExportError, match="unknown export option"):
        export(torch.nn.RNN(3, 4), opsett=17)
    with pytest.raises(ExportError, match="LSTMCell.*refusing"):
        export(torch.nn.LSTMCell(3, 4), (torch.zeros(2, 3),))
    with pytest.raises(ExportError, match="expected a torch.nn.Module"):
        export("not a module")


def test_write_to_path_is_atomic(tmp_path):
    out = tmp_path / "m.onnx"
    export(torch.nn.RNN(3, 4).eval(), f=out)
    good = out.read_bytes()
    with pytest.raises(ExportError):
        export(torch.nn.RNN(3, 4, dropout=0.2, num_layers=2), f=out)
    assert out.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    with pytest.raises(ExportError, match="output directory does not exist"):
        export(torch.nn.RNN(3, 4), f=tmp_path / "nope" / "m.onnx")


def test_seed_wrapper_checkpoint_round_trip(tmp_path):
    seed = SeedRNN().eval()
    path = tmp_path / "seed.pt"
    torch.save(seed.state_dict(), path)
    spec, state = spec_from_checkpoint(path)
    assert spec == PRESETS["seed"]
    from exporter import export_spec
    model = export_spec(spec, state)
    x, h0 = torch.randn(5, 1, 10), torch.randn(1, 1, 20)
    assert_close(ort_run(model, feeds_for(x, h0)), torch_outputs(seed, x, h0))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_export_and_match(name):
    spec = PRESETS[name]
    module = spec.build_module(seed=3)
    if spec.cell != "rnn":   # every cell, judged by the runner's compare() with c_n too
        from conformance.compare import compare
        from conformance.truth import make_feeds, torch_truth
        model = export(module, lowering="scan" if spec.proj_size else "rnn")
        feeds = make_feeds(spec, 2, 6, True, 1)
        f32, f64 = torch_truth(module, feeds)
        sess = __import__("onnxruntime").InferenceSession(model.SerializeToString(),
                                                          providers=["CPUExecutionProvider"])
        got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
        assert compare("ort-cpu", got, f32, f64).passed
        return
    model = export(module)
    x, h0 = make_inputs(spec, 2, 6, seed=1)
    assert_close(ort_run(model, feeds_for(x, h0)), torch_outputs(module, x, h0))
