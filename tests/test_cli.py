"""The exporter CLI through a real subprocess, including every bad input."""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import onnx
import torch

from models import SeedRNN

from .helpers import run_module


def cli(*args: str, cwd: Path):
    return run_module("exporter", *args, cwd=cwd, timeout=120)


def test_no_flags_exports_the_seed_model(tmp_path):
    r = cli("export", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    model = onnx.load(tmp_path / "rnn.onnx")
    assert [n.op_type for n in model.graph.node] == ["RNN", "Squeeze"]
    assert "rnn.onnx" in r.stdout and "input[seq, batch, 10]" in r.stdout
    import onnxruntime as ort
    sess = ort.InferenceSession(str(tmp_path / "rnn.onnx"), providers=["CPUExecutionProvider"])
    out, hn = sess.run(None, {"input": torch.randn(5, 1, 10).numpy(),
                              "h_0": torch.randn(1, 1, 20).numpy()})
    assert out.shape == (5, 1, 20) and hn.shape == (1, 1, 20)


def test_help_documents_every_flag(tmp_path):
    r = cli("export", "--help", cwd=tmp_path)
    for flag in ("--output", "--input-size", "--hidden-size", "--num-layers", "--nonlinearity",
                 "--no-bias", "--batch-first", "--dropout", "--bidirectional", "--config",
                 "--checkpoint", "--seed", "--opset", "--initial-state", "--batch-layout", "--lowering",
                 "--sequence-lens"):
        assert flag in r.stdout


def test_flags_and_config(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"input_size": 3, "hidden_size": 5, "num_layers": 2,
                               "nonlinearity": "relu", "bidirectional": True}))
    r = cli("export", "--config", str(cfg), "--batch-first", "--initial-state", "zeros",
            "--opset", "18", "-o", "m.onnx", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    model = onnx.load(tmp_path / "m.onnx")
    props = {p.key: json.loads(p.value) if p.key == "rnn_config" else p.value
             for p in model.metadata_props}
    assert props["rnn_config"]["batch_first"] is True
    assert props["rnn_config"]["nonlinearity"] == "relu"
    assert [i.name for i in model.graph.input] == ["input"]
    assert model.opset_import[0].version == 18


def test_checkpoint_of_wrapper_module(tmp_path):
    torch.save(SeedRNN(10, 20, 2).state_dict(), tmp_path / "seed.pt")
    r = cli("export", "--checkpoint", "seed.pt", "-o", "s.onnx", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sum(n.op_type == "RNN" for n in onnx.load(tmp_path / "s.onnx").graph.node) == 2


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    good = SeedRNN().state_dict()
    torch.save(good, tmp / "good.pt")
    (tmp / "corrupt.pt").write_bytes(b"\x00not a checkpoint at all" * 10)
    torch.save([1, 2, 3], tmp / "list.pt")
    torch.save({**good, "rnn1.extra": torch.zeros(1)}, tmp / "extra.pt")
    torch.save({k: v for k, v in good.items() if k != "rnn1.bias_hh_l0"}, tmp / "missing.pt")
    torch.save({**good, "rnn1.weight_ih_l1": torch.zeros(20, 20)}, tmp / "layers.pt")
    torch.save({"rnn1.weight_ih_l0": _Evil()}, tmp / "evil.pt")
    with open(tmp / "evil.pkl", "wb") as fh:
        pickle.dump({"rnn1.weight_ih_l0": _Evil()}, fh, protocol=2)
    (tmp / "bad.json").write_text("{not json")
    unreadable = tmp / "unreadable.pt"
    unreadable.mkdir()
    return {
        "zero-size": (["--hidden-size", "0"], "hidden_size must be a positive integer"),
        "negative-input": (["--input-size", "-3"], "input_size must be a positive integer"),
        "zero-layers": (["--num-layers", "0"], "num_layers must be a positive integer"),
        "dropout-1": (["--dropout", "1"], r"dropout must be a number in \[0, 1\)"),
        "dropout-neg": (["--dropout", "-0.5"], r"dropout must be a number in \[0, 1\)"),
        "nonlinearity": (["--config", "nl.json"], "nonlinearity must be one of"),
        "opset-low": (["--opset", "13"], "unsupported opset 13"),
        "opset-high": (["--opset", "999"], "unsupported opset 999"),
        "missing-ckpt": (["--checkpoint", "nope.pt"], "checkpoint not found"),
        "unreadable-ckpt": (["--checkpoint", "unreadable.pt"], "checkpoint not found"),
        "corrupt-ckpt": (["--checkpoint", "corrupt.pt"], "cannot read checkpoint"),
        "not-state-dict": (["--checkpoint", "list.pt"], "not a state_dict"),
        "evil-pickle": (["--checkpoint", "evil.pt"], "refused by weights_only.*system"),
        "evil-legacy": (["--checkpoint", "evil.pkl"], "refused by weights_only.*system"),
        "extra-key": (["--checkpoint", "extra.pt"], "unexpected key 'rnn1.extra'"),
        "missing-key": (["--checkpoint", "missing.pt"], "missing for .*bias_hh_l0"),
        "layer-mismatch": (["--checkpoint", "layers.pt"], "weight_hh_l1"),
        "flag-disagrees": (["--checkpoint", "good.pt", "--hidden-size", "30"],
                           "hidden_size=30 disagrees with the checkpoint"),
        "layers-disagree": (["--checkpoint", "good.pt", "--num-layers", "2"],
                            "num_layers=2 disagrees"),
        "bad-config": (["--config", "bad.json"], "cannot read config"),
        "missing-config": (["--config", "none.json"], "config file not found"),
        "no-out-dir": (["-o", "no/such/dir/m.onnx"], "output directory does not exist"),
    }


def test_bad_inputs_give_one_line_exit_2_and_keep_the_old_file(tmp_path):
    (tmp_path / "nl.json").write_text(json.dumps({"input_size": 2, "hidden_size": 2,
                                                  "nonlinearity": "gelu"}))
    cases = _bad_inputs(tmp_path)
    (tmp_path / "rnn.onnx").write_bytes(b"precious")
    for name, (args, message) in cases.items():
        r = cli("export", *args, cwd=tmp_path)
        assert r.returncode == 2, (name, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr, (name, r.stderr)
        assert __import__("re").search(message, lines[0]), (name, lines[0])
        assert (tmp_path / "rnn.onnx").read_bytes() == b"precious", name
    assert not (tmp_path / "PWNED").exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_argparse_errors_exit_2(tmp_path):
    r = cli("export", "--nonlinearity", "gelu", cwd=tmp_path)
    assert r.returncode == 2 and "invalid choice" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_whole_module_from_the_cli(tmp_path):
    torch.save(SeedRNN().state_dict(), tmp_path / "seed.pt")
    r = cli("export", "--module", "models.seed:SeedRNN", "--checkpoint", "seed.pt",
            "--example-shape", "5,1,10", "--example-shape", "1,1,20", "--output-names",
            "output,h_n", "-o", "seed.onnx", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "x[seq, batch, 10], h0[1, batch, 20]" in r.stdout
    model = onnx.load(tmp_path / "seed.onnx")
    assert [n.op_type for n in model.graph.node] == ["RNN", "Squeeze"]
    import onnxruntime as ort
    sess = ort.InferenceSession(str(tmp_path / "seed.onnx"), providers=["CPUExecutionProvider"])
    seed = SeedRNN().eval()
    seed.load_state_dict(torch.load(tmp_path / "seed.pt", weights_only=True))
    x, h0 = torch.randn(9, 3, 10), torch.randn(1, 3, 20)
    out, hn = sess.run(None, {"x": x.numpy(), "h0": h0.numpy()})
    want = seed(x, h0)
    assert abs(out - want[0].detach().numpy()).max() < 1e-5
    assert abs(hn - want[1].detach().numpy()).max() < 1e-5


def test_whole_module_bad_inputs(tmp_path):
    torch.save({"rnn1.weight_ih_l0": torch.zeros(3, 3)}, tmp_path / "bad.pt")
    (tmp_path / "rnn.onnx").write_bytes(b"precious")
    for args, message in (
            (["--module", "models.seed:Nope", "--example-shape", "5,1,10"], "cannot import"),
            (["--module", "nocolon", "--example-shape", "5,1,10"], "package.module:Class"),
            (["--module", "models.seed:SeedRNN"], "needs --example-shape"),
            (["--module", "models.seed:SeedRNN", "--example-shape", "5,x"], "--example-shape"),
            (["--module", "models.seed:SeedRNN", "--hidden-size", "3", "--example-shape",
              "5,1,10"], "--hidden-size describe an nn.RNN export"),
            (["--module", "models.seed:SeedRNN", "--checkpoint", "bad.pt", "--example-shape",
              "5,1,10", "--example-shape", "1,1,20"], "does not fit"),
            (["--module", "models.seed:SeedRNN", "--module-kwargs", "[1]", "--example-shape",
              "5,1,10"], "JSON object"),
            (["--module", "models.seed:SeedRNN", "--example-shape", "5,1,7", "--example-shape",
              "1,1,20"], "torch.onnx could not export")):
        r = cli("export", *args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, r.stderr)
        assert (tmp_path / "rnn.onnx").read_bytes() == b"precious"
