"""Exporter hardening: whole models never frozen, any forward signature, hostile inputs refused
with one line and exit 2, files written safely. Real torch, real onnxruntime, real files."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from exporter import ExportError, RNNSpec, export, export_spec
from exporter.cli import main as exporter_main
from exporter.files import TEMP_TAG
from exporter.lowering.stack import GraphBuilder

from .helpers import ATOL, RTOL, ROOT


def _run(model_path, feeds):
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = exporter_main(["export", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _refused(capsys, *args: str, match: str) -> str:
    rc, _, err = _cli(capsys, *args)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert match in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------- whole models

class Aliased(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(4, 6)
        self.alias = self.rnn

    def forward(self, x):
        return self.alias(x)[0]


class MyRNN(nn.RNN):
    """A subclass that adds nothing to forward (e.g. a custom init)."""


class WithSubclass(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = MyRNN(4, 6, batch_first=True)

    def forward(self, x):
        return self.rnn(x)[0]


class TupleArg(nn.Module):
    """darts' _RNNModule shape: forward(x_in) with x_in = (x, None)."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(4, 6, batch_first=True)
        self.head = nn.Linear(6, 2)

    def forward(self, x_in):
        x, _ = x_in
        return self.head(self.rnn(x)[0])


class DictArg(nn.Module):
    """neuralforecast's shape: forward(windows_batch: dict)."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(4, 6, batch_first=True)

    def forward(self, windows_batch):
        return self.rnn(windows_batch["insample_y"])[0]


@pytest.mark.parametrize("cls", [Aliased, WithSubclass])
def test_aliased_and_subclassed_rnns_are_lowered_and_stay_dynamic(cls, tmp_path):
    module = cls().eval()
    batch_first = cls is WithSubclass
    example = torch.randn(2, 5, 4) if batch_first else torch.randn(5, 2, 4)
    export(module, (example,), tmp_path / "m.onnx")
    model = onnx.load(tmp_path / "m.onnx")
    assert [n.op_type for n in model.graph.node].count("RNN") == 1
    x = torch.randn(3, 9, 4) if batch_first else torch.randn(9, 3, 4)   # another length/batch
    (got,) = _run(tmp_path / "m.onnx", {model.graph.input[0].name: x.numpy()})
    with torch.no_grad():
        want = module(x).numpy()
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)


def test_subclass_overriding_forward_and_cells_are_refused_lstm_subclass_lowered():
    class Doubling(nn.RNN):
        def forward(self, x, hx=None):
            out, h = super().forward(x, hx)
            return out * 2, h

    class MyLSTM(nn.LSTM):
        pass

    holder = nn.Sequential()
    holder.add_module("rnn", nn.RNN(4, 4))
    holder.add_module("other", Doubling(4, 6))
    with pytest.raises(ExportError, match="overrides nn.RNN.forward"):
        export(holder.eval(), (torch.randn(5, 2, 4),))

    class WithCell(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.cell = nn.RNN(4, 4), nn.GRUCell(4, 4)

        def forward(self, x):
            return self.cell(self.rnn(x)[0][-1])

    with pytest.raises(ExportError, match=r"cell \(GRUCell\)"):
        export(WithCell().eval(), (torch.randn(5, 2, 4),))

    class WithMyLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = MyLSTM(4, 6)

        def forward(self, x):
            return self.lstm(x)[0]

    model = export(WithMyLSTM().eval(), (torch.randn(5, 2, 4),))
    assert [n.op_type for n in model.graph.node].count("LSTM") == 1


@pytest.mark.parametrize("cls", [TupleArg, DictArg])
def test_tree_shaped_forward_arguments_export_by_default(cls, tmp_path):
    module = cls().eval()
    x = torch.randn(2, 5, 4)
    args = ((x, None),) if cls is TupleArg else ({"insample_y": x},)
    export(module, args, tmp_path / "m.onnx")
    model = onnx.load(tmp_path / "m.onnx")
    (name,) = [i.name for i in model.graph.input]
    x2 = torch.randn(3, 8, 4)
    (got,) = _run(tmp_path / "m.onnx", {name: x2.numpy()})
    with torch.no_grad():
        want = module(((x2, None)) if cls is TupleArg else {"insample_y": x2}).numpy()
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)


def test_rnn_outside_the_module_tree_is_refused():
    class Hidden(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.RNN(4, 6)
            self.others = [nn.RNN(6, 6)]     # a plain list: invisible to named_modules

        def forward(self, x):
            return self.others[0](self.rnn(x)[0])[0]

    with pytest.raises(ExportError, match="outside the module tree"):
        export(Hidden().eval(), (torch.randn(5, 2, 4),))


def test_unbatched_input_is_a_clear_error():
    class Unbatched(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.RNN(4, 6)

        def forward(self, x):
            return self.rnn(x)[0]

    with pytest.raises(ExportError, match="only batched 3-D input"):
        export(Unbatched().eval(), (torch.randn(5, 4),))


def test_a_module_that_fixes_the_sequence_length_is_refused():
    class Specialised(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.RNN(4, 6, batch_first=True)

        def forward(self, x):
            if x.shape[1] != 5:                 # a guard: torch.export specialises seq to 5
                raise ValueError("windows of 5 only")
            return self.rnn(x)[0]

    with pytest.raises(ExportError, match="fixed the sequence length of an nn.RNN to 5"):
        export(Specialised().eval(), (torch.randn(2, 5, 4),))


# ---------------------------------------------------------------- files

def test_non_regular_and_directory_targets_are_refused(capsys, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    _refused(capsys, "-o", str(fifo), match="not a regular file")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    before = os.stat("/dev/null")
    _refused(capsys, "-o", "/dev/null", match="not a regular file")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_mode == before.st_mode
    _refused(capsys, "-o", str(tmp_path / "nodir") + "/", match="names a directory")
    assert not (tmp_path / "nodir").exists()
    _refused(capsys, "-o", str(tmp_path / ("x" * 300 + ".onnx")), match="too long")


def test_an_input_is_never_the_output(capsys, tmp_path):
    ck = tmp_path / "ck.pt"
    torch.save(nn.RNN(10, 20).state_dict(), ck)
    before = ck.read_bytes()
    _refused(capsys, "--checkpoint", str(ck), "-o", str(ck), match="also an input")
    assert ck.read_bytes() == before
    cfg = tmp_path / "cfg.json"
    cfg.write_text('{"input_size": 3, "hidden_size": 4}')
    _refused(capsys, "--config", str(cfg), "-o", str(cfg), match="also an input")
    assert json.loads(cfg.read_text())["input_size"] == 3


def test_modes_follow_the_umask_and_existing_files(capsys, tmp_path):
    old = os.umask(0o022)
    try:
        assert _cli(capsys, "-o", str(tmp_path / "a.onnx"))[0] == 0
        assert stat.S_IMODE(os.stat(tmp_path / "a.onnx").st_mode) == 0o644
        os.chmod(tmp_path / "a.onnx", 0o600)
        assert _cli(capsys, "-o", str(tmp_path / "a.onnx"), "--seed", "3")[0] == 0
        assert stat.S_IMODE(os.stat(tmp_path / "a.onnx").st_mode) == 0o600
    finally:
        os.umask(old)


def test_stale_temp_files_of_killed_writers_are_removed(capsys, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".rnn.onnx.{TEMP_TAG}.{dead}.abc.tmp"
    stale.write_bytes(b"half a model")
    mine = tmp_path / f".rnn.onnx.{TEMP_TAG}.{os.getpid()}.xyz.tmp"   # a live writer's
    mine.write_bytes(b"in progress")
    assert _cli(capsys, "-o", str(tmp_path / "rnn.onnx"))[0] == 0
    assert not stale.exists() and mine.exists()


def test_heatmap_never_follows_a_planted_symlink(tmp_path):
    from conformance.report import write_reports
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / ".heatmap.tmp.png").symlink_to(victim)
    report = {"schema_version": 1, "matrix": "t", "environment": {"torch": "", "onnx": "",
              "python": "", "cpu": ""}, "runtimes": {"ort-cpu": {"available": True}},
              "seconds": 0, "cells": [{"case": "c", "model": "m", "runtime": "ort-cpu",
                                        "status": "pass", "silently_wrong": False,
                                        "max_abs_err": 0.0, "max_rel_err": 0.0,
                                        "max_abs_err_f64": 0.0, "torch_f32_err": 0.0,
                                        "tolerance": None, "message": "", "wall_s": 0}]}
    write_reports(report, rep)
    assert victim.read_text() == "keep me"
    assert (rep / "heatmap.png").read_bytes()[:4] == b"\x89PNG"


def test_external_data_on_request_and_above_the_protobuf_limit(capsys, tmp_path, monkeypatch):
    rc, out, _ = _cli(capsys, "-o", str(tmp_path / "m.onnx"), "--external-data",
                      "--hidden-size", "64")
    assert rc == 0 and (tmp_path / "m.onnx.data").is_file() and "m.onnx.data" in out
    assert (tmp_path / "m.onnx").stat().st_size < 4096
    feeds = {"input": np.ones((3, 2, 10), np.float32), "h_0": np.zeros((1, 2, 64), np.float32)}
    got = _run(tmp_path / "m.onnx", feeds)
    model = export(RNNSpec(10, 64).build_module(seed=0))
    assert len(model.graph.initializer[0].raw_data) > 0      # the in-memory model is intact
    # automatic: pretend the limit is tiny, as a > 2 GiB model would meet it
    import exporter.graph as graph
    monkeypatch.setattr(graph, "EXTERNAL_DATA_THRESHOLD", 100)
    export(RNNSpec(10, 64).build_module(seed=0), f=tmp_path / "auto.onnx")
    assert (tmp_path / "auto.onnx.data").is_file()
    np.testing.assert_array_equal(_run(tmp_path / "auto.onnx", feeds)[0], got[0])


# ---------------------------------------------------------------- hostile and careless inputs

@pytest.mark.parametrize("args,match", [
    (["--hidden-size", str(2 ** 31)], "GiB"),
    (["--hidden-size", str(10 ** 6)], "GiB"),
    (["--seed", str(2 ** 64)], "seed must be in"),
    (["--seed", "-1"], "seed must be in"),
    (["--config", "/dev/zero"], "not a regular file"),
])
def test_bad_numbers_and_files_are_one_line(capsys, tmp_path, args, match):
    _refused(capsys, *args, "-o", str(tmp_path / "m.onnx"), match=match)
    assert not (tmp_path / "m.onnx").exists()


def test_deep_and_huge_json_are_one_line(capsys, tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    _refused(capsys, "--config", str(deep), match="not JSON")
    big = tmp_path / "big.json"
    big.write_text('{"input_size": 3, "pad": "' + "x" * (2 << 20) + '"}')
    _refused(capsys, "--config", str(big), match="larger than")


def _save(tmp_path, state, name="ck.pt"):
    path = tmp_path / name
    torch.save(state, path)
    return str(path)


def test_malformed_and_exotic_tensors_are_refused(capsys, tmp_path):
    base = nn.RNN(10, 20).state_dict()
    for bad, match in ((base["weight_ih_l0"][0], "has shape [10]"),
                       (base["weight_ih_l0"][None], "has shape [1, 20, 10]"),
                       (base["weight_ih_l0"].to_sparse(), "sparse_coo tensor"),
                       (torch.empty(20, 10, device="meta"), "meta tensor")):
        state = {**base, "weight_ih_l0": bad}
        _refused(capsys, "--checkpoint", _save(tmp_path, state), "-o",
                 str(tmp_path / "m.onnx"), match=match)


def test_nonfinite_weights_are_refused_unless_allowed(capsys, tmp_path):
    state = nn.RNN(10, 20).state_dict()
    state["weight_hh_l0"][3, 4] = float("inf")
    ck = _save(tmp_path, state)
    _refused(capsys, "--checkpoint", ck, "-o", str(tmp_path / "m.onnx"),
             match="weight_hh_l0 has 1 NaN/±Inf")
    assert _cli(capsys, "--checkpoint", ck, "--allow-nonfinite", "-o",
                str(tmp_path / "m.onnx"))[0] == 0

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.head = nn.RNN(4, 6), nn.Linear(6, 2)

        def forward(self, x):
            return self.head(self.rnn(x)[0])

    holder = Holder().eval()
    with torch.no_grad():
        holder.head.weight[0, 0] = float("nan")
    with pytest.raises(ExportError, match="head.weight has 1 NaN"):
        export(holder, (torch.randn(5, 2, 4),))


def test_refused_pickle_names_the_blocked_global(capsys, tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "x": Evil()}, path)
    line = _refused(capsys, "--checkpoint", str(path), match="system")
    assert "weights_only=False" not in line and "import the Python object" in line


def test_zip_bomb_checkpoint_is_refused_before_loading(capsys, tmp_path):
    ck = tmp_path / "bomb.pt"
    with zipfile.ZipFile(ck, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        z.writestr("archive/data/0", b"\0" * (64 << 20))
    assert ck.stat().st_size < 1 << 20
    _refused(capsys, "--checkpoint", str(ck), match="would expand")


def test_huge_example_shape_is_refused(capsys, tmp_path):
    _refused(capsys, "--module", "models.seed:SeedRNN", "--example-shape", "100000,100000,10",
             "--example-shape", "1,1,20", "-o", str(tmp_path / "m.onnx"), match="elements")


def test_module_must_be_a_module_class(tmp_path):
    """Checked before anything is called: `os:system` is never run."""
    marker = tmp_path / "ran"
    r = subprocess.run([sys.executable, "-m", "exporter", "export", "--module", "os:system",
                        "--module-kwargs", json.dumps({"command": f"touch {marker}"}),
                        "--example-shape", "1", "-o", str(tmp_path / "m.onnx")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2 and "not an nn.Module class" in r.stderr
    assert not marker.exists()
    pkg = tmp_path / "exits.py"
    pkg.write_text("import sys, warnings, torch\n"
                   "class M(torch.nn.Module):\n"
                   "    def __init__(self):\n"
                   "        warnings.warn('noise before the exit')\n"
                   "        sys.exit(3)\n")
    r = subprocess.run([sys.executable, "-m", "exporter", "export", "--module", "exits:M",
                        "--example-shape", "1,1,1"], capture_output=True, text=True, cwd=tmp_path,
                       timeout=120, env={**os.environ, "PYTHONPATH": f"{tmp_path}:{ROOT}"})
    assert r.returncode == 2 and "SystemExit" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_closed_stdout_ends_quietly(tmp_path):
    r = subprocess.run(f"{sys.executable} -m exporter export | head -1", shell=True,
                       capture_output=True, text=True, cwd=tmp_path, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.stdout.startswith("wrote") and "Traceback" not in r.stderr, r.stderr
    assert "BrokenPipe" not in r.stderr


def test_api_type_errors_are_export_errors(tmp_path):
    rnn = nn.RNN(3, 4)
    with pytest.raises(ExportError, match="f must be a file path"):
        export(rnn, f=123)
    with pytest.raises(ExportError, match="spec must be an RNNSpec"):
        export_spec("nope", {})
    with pytest.raises(ExportError, match="state must be a mapping"):
        export_spec(RNNSpec(3, 4), [1, 2])
    with pytest.raises(ExportError, match="opset must be an integer"):
        export(rnn, opset="17")
    with pytest.raises(ExportError, match="args must be"):
        export(rnn, args=("x",))


def test_name_allocation_is_linear_in_the_layer_count():
    """Thousands of layers: each fresh name costs O(1) look-ups, not O(layers)."""
    class Counting(set):
        probes = 0

        def __contains__(self, item):
            Counting.probes += 1
            return super().__contains__(item)

    b = GraphBuilder()
    b._names = Counting()
    for _ in range(3000):
        b.fresh("transpose")
    assert len(b._names) == 3000 and Counting.probes <= 2 * 3000
