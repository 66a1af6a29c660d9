"""Every export verifies itself (exporter/verify.py), and what it cannot honour is refused by
name: hooks, instance-level forwards, global module hooks, a forward that branches on a size."""
from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from exporter import RNNSpec, export
from exporter.cli import main as exporter_main
from exporter.errors import ExportError
from exporter.spec import ExportOptions
from exporter.verify import verify_module, verify_rnn

from .mutations import mutate


class Head(nn.Module):
    """LSTM → Linear, the plain case."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 6)
        self.lin = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x)
        return self.lin(y)


class Guarded(Head):
    """Branches on the sequence length: torch.export traces the example's branch only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x)
        if x.shape[0] > 4:
            y = y * 2
        return self.lin(y)


def _x() -> torch.Tensor:
    return torch.randn(5, 2, 4, generator=torch.Generator().manual_seed(0))


def test_plain_module_exports_verified():
    torch.manual_seed(0)
    export(Head().eval(), (_x(),))


def test_a_size_guard_is_refused_naming_the_shape(tmp_path):
    torch.manual_seed(0)
    out = tmp_path / "g.onnx"
    with pytest.raises(ExportError, match=r"disagrees with the module at .*seq=1"):
        export(Guarded().eval(), (_x(),), out)
    assert not out.exists()
    export(Guarded().eval(), (_x(),), out, verify=False)     # the user's explicit choice
    assert out.is_file()


def test_cli_no_verify(tmp_path, monkeypatch, capsys):
    src = tmp_path / "guardmod.py"
    src.write_text("from tests.test_verify import Guarded as G\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "g.onnx"
    rc = exporter_main(["export", "--module", "guardmod:G", "--example-shape", "5,2,4",
                        "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "disagrees with the module" in err and not out.exists()
    assert exporter_main(["export", "--module", "guardmod:G", "--example-shape", "5,2,4",
                          "-o", str(out), "--no-verify"]) == 0


@pytest.mark.parametrize("how", ["forward hook", "forward pre-hook", "instance forward"])
def test_hooks_on_a_recurrent_module_are_refused(how, tmp_path):
    torch.manual_seed(0)
    m = Head().eval()
    if how == "forward hook":
        m.lstm.register_forward_hook(lambda mod, args, out: (out[0] * 2, out[1]))
    elif how == "forward pre-hook":
        m.lstm.register_forward_pre_hook(lambda mod, args: (args[0] * 2,))
    else:
        m.lstm.forward = lambda *a: nn.LSTM.forward(m.lstm, *a)
    with pytest.raises(ExportError, match=f"lstm has {how.replace('instance forward', 'a forward replaced')}"):
        export(m, (_x(),), tmp_path / "m.onnx")
    direct = nn.GRU(3, 4)
    direct.register_forward_hook(lambda *a: None)
    with pytest.raises(ExportError, match="forward hook"):
        export(direct)
    assert not (tmp_path / "m.onnx").exists()


def test_global_module_hooks_are_refused():
    from torch.nn.modules.module import register_module_forward_hook

    handle = register_module_forward_hook(lambda mod, args, out: out)
    try:
        with pytest.raises(ExportError, match="global module forward hook"):
            export(Head().eval(), (_x(),))
        with pytest.raises(ExportError, match="global module forward hook"):
            export(nn.RNN(3, 4))
    finally:
        handle.remove()
    export(nn.RNN(3, 4))        # gone with the hook


def test_verification_fails_on_a_wrong_file():
    """The self-check can fail: a file with one weight off by 0.1 % is refused."""
    spec = RNNSpec(10, 20, bidirectional=True)
    module = spec.build_module(seed=7)
    state = {k: v.numpy() for k, v in module.state_dict().items()}
    model = export(module)
    verify_rnn(model, spec, state, ExportOptions())
    with pytest.raises(ExportError, match="R_l0|output|h_n"):
        verify_rnn(mutate(model, "r_scaled"), spec, state, ExportOptions())


def test_verification_of_whole_models_fails_on_a_wrong_file():
    torch.manual_seed(0)
    m = Head().eval()
    model = export(m, (_x(),))
    w = next(t for t in model.graph.initializer if t.name.endswith("R_l0"))
    arr = onnx.numpy_helper.to_array(w) * 1.01
    w.CopyFrom(onnx.numpy_helper.from_array(arr, w.name))
    with pytest.raises(ExportError, match="disagrees with the module"):
        verify_module(m, (_x(),), model)


@pytest.mark.parametrize("options", [{}, {"sequence_lens": True}, {"initial_state": "zeros"},
                                     {"batch_layout": "attribute"}, {"lowering": "scan"}])
def test_direct_exports_verify_every_option(options):
    """layout=1 (which onnxruntime refuses) is verified through Transposes; sequence_lens
    through torch's packed sequences; LSTM's c_n kept apart from h_n."""
    for cell in ("rnn", "lstm", "gru"):
        spec = RNNSpec(5, 7, num_layers=2, bidirectional=True, batch_first=True, cell=cell)
        export(spec.build_module(seed=1), **options)
