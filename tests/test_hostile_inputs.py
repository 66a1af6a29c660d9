"""Hostile and unusual inputs on every front door: one line and exit 2 (or the right verdict),
nothing written outside the target, never a traceback. Each test is one finding of the
outside red team's second round (issue 29); the suite's older ones live in test_hardening.py."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from conformance.cli import main as conformance_main
from conformance.runner import execute
from conformance.runtimes import load_runtime
from conformance.vectors import read_vectors, write_vectors
from exporter import RNNSpec, export
from exporter.cli import main as exporter_main
from exporter.errors import ExportError

from .helpers import ROOT, prepare_smoke_cases


def _one_line_exit_2(rc: int, capsys, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    # progress bars may precede it; the error itself is one line, and no traceback
    assert "Traceback" not in err and err.splitlines()[-1].count(": error: ") == 1, err
    err = err.splitlines()[-1]
    for w in words:
        assert w in err, err
    return err


# ---- the exporter's front doors --------------------------------------------------------------

@pytest.mark.parametrize("flags,word", [
    (["--num-layers", "1000000000"], "parameters"),
    (["--num-layers", "100000000", "--hidden-size", "1", "--input-size", "1"], "GiB"),
])
def test_absurd_sizes_are_refused_before_allocating(flags, word, tmp_path, capsys):
    start = time.perf_counter()
    rc = exporter_main(["export", *flags, "-o", str(tmp_path / "m.onnx")])
    _one_line_exit_2(rc, capsys, word)
    assert time.perf_counter() - start < 10        # no per-layer list was built first
    assert not (tmp_path / "m.onnx").exists()


def _save(path: Path, state: dict) -> Path:
    torch.save(state, path)
    return path


@pytest.mark.parametrize("make,word", [
    (lambda: {"weight_ih_l999999999": torch.zeros(20, 10), "weight_ih_l0": torch.zeros(20, 10),
              "weight_hh_l0": torch.zeros(20, 20)}, "layers"),
    (lambda: {"weight_ih_l" + "9" * 5000: torch.zeros(20, 10),
              "weight_ih_l0": torch.zeros(20, 10), "weight_hh_l0": torch.zeros(20, 20)},
     "unexpected key"),
    (lambda: {"weight_ih_l0": torch.zeros(1).expand(2000, 1000),
              "weight_hh_l0": torch.zeros(1).expand(2000, 2000)}, "zero-stride"),
])
def test_hostile_checkpoints(make, word, tmp_path, capsys):
    ckpt = _save(tmp_path / "c.pt", make())
    rc = exporter_main(["export", "--checkpoint", str(ckpt), "-o", str(tmp_path / "m.onnx")])
    _one_line_exit_2(rc, capsys, word)
    assert not (tmp_path / "m.onnx").exists()


def test_truncated_and_garbled_pickles(tmp_path, capsys):
    good = _save(tmp_path / "good.pt", torch.nn.RNN(10, 20).state_dict())
    data = good.read_bytes()
    legacy = tmp_path / "legacy.pt"
    torch.save(torch.nn.RNN(10, 20).state_dict(), legacy, _use_new_zipfile_serialization=False)
    cases = {"trunc.pt": data[:len(data) // 2], "garbled.pt": b"\x80\x02" + bytes(range(256)) * 3,
             "legacy-trunc.pt": legacy.read_bytes()[:300]}
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        rc = exporter_main(["export", "--checkpoint", str(tmp_path / name),
                            "-o", str(tmp_path / "m.onnx")])
        _one_line_exit_2(rc, capsys, "checkpoint")


@pytest.mark.parametrize("bad", ["text", None, [1.0, 2.0], object(),
                                 np.zeros((20, 10), np.complex64)])
def test_export_spec_refuses_what_is_not_a_weight(bad):
    from exporter import export_spec
    spec = RNNSpec(10, 20)
    state = {k: v.numpy() for k, v in torch.nn.RNN(10, 20).state_dict().items()}
    state["weight_ih_l0"] = bad
    with pytest.raises(ExportError, match="weight_ih_l0"):
        export_spec(spec, state)


def test_api_none_and_meta_are_export_errors():
    from exporter.checkpoint import spec_from_checkpoint
    with pytest.raises(ExportError):
        spec_from_checkpoint(None)
    with pytest.raises(ExportError):
        RNNSpec.from_kwargs(None)
    with torch.device("meta"):
        lstm = torch.nn.LSTM(3, 4)
    with pytest.raises(ExportError, match="meta"):
        export(lstm)

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = torch.nn.GRU(3, 4)

        def forward(self, x):
            return self.gru(x)[0]
    with torch.device("meta"):
        wrapper = Wrapper()
    with pytest.raises(ExportError, match="meta"):
        export(wrapper, (torch.zeros(5, 2, 3),))


def test_output_never_overwrites_the_module_source(tmp_path, capsys, monkeypatch):
    src = tmp_path / "usermod.py"
    src.write_text("import torch\nclass M(torch.nn.Module):\n    def __init__(self):\n"
                   "        super().__init__(); self.rnn = torch.nn.GRU(3, 4)\n"
                   "    def forward(self, x):\n        return self.rnn(x)[0]\n")
    before = src.read_bytes()
    monkeypatch.syspath_prepend(str(tmp_path))
    rc = exporter_main(["export", "--module", "usermod:M", "--example-shape", "5,2,3",
                        "-o", str(src)])
    _one_line_exit_2(rc, capsys, "input of this command")
    assert src.read_bytes() == before


def test_save_checkpoint_with_module_and_only_beside_a_written_model(tmp_path, capsys):
    out, ckpt = tmp_path / "m.onnx", tmp_path / "m.pt"
    assert exporter_main(["export", "--module", "models.composite:RNNClassifier",
                          "--example-shape", "2,5,12", "-o", str(out),
                          "--save-checkpoint", str(ckpt)]) == 0
    state = torch.load(ckpt, weights_only=True)
    assert "rnn.weight_ih_l0" in state and "head.weight" in state
    capsys.readouterr()
    rc = exporter_main(["export", "-o", str(tmp_path / "missing" / "x.onnx"),
                        "--save-checkpoint", str(tmp_path / "lone.pt")])
    _one_line_exit_2(rc, capsys, "does not exist")
    assert not (tmp_path / "lone.pt").exists()


# ---- conformance: bad paths and files --------------------------------------------------------

@pytest.mark.parametrize("target", ["FILE", "/dev/null", "/proc/x"])
def test_report_dir_is_checked_before_running(target, tmp_path, capsys):
    report = tmp_path / "file.txt" if target == "FILE" else Path(target)
    if target == "FILE":
        report.write_text("keep me")
    start = time.perf_counter()
    rc = conformance_main(["run", "--runtimes", "ort-cpu", "--select", "*b1s1",
                           "--report-dir", str(report), "--no-heatmap"])
    _one_line_exit_2(rc, capsys, str(report))
    assert time.perf_counter() - start < 20
    if target == "FILE":
        assert report.read_text() == "keep me"


@pytest.mark.parametrize("args,word", [
    (["--runtimes", "foo"], "foo"), (["--export-seqs", "x"], "export-seqs"),
    (["--out", "/dev/null"], "/dev/null")])
def test_bench_arguments_are_checked_before_measuring(args, word, capsys):
    start = time.perf_counter()
    _one_line_exit_2(conformance_main(["bench", "--smoke", *args]), capsys, word)
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("content", ["not json", '{"a": 1}', "[]", '{"cells": [1], "runtimes": {}}'])
def test_support_refuses_what_is_not_a_report(content, tmp_path, capsys):
    report = tmp_path / "r.json"
    report.write_text(content)
    out = tmp_path / "support.md"
    rc = conformance_main(["support", "--reports", str(report), "-o", str(out)])
    _one_line_exit_2(rc, capsys, "report")
    assert not out.exists()


@pytest.mark.parametrize("target", ["/dev/null", "FILE", "/proc/x"])
def test_vectors_output_must_be_a_folder(target, tmp_path, capsys):
    out = tmp_path / "regular" if target == "FILE" else Path(target)
    if target == "FILE":
        out.write_text("keep me")
    rc = conformance_main(["vectors", "--select", "*b1s1", "-o", str(out)])
    _one_line_exit_2(rc, capsys)
    if target == "FILE":
        assert out.read_text() == "keep me"


def test_vectors_never_write_through_a_planted_link(tmp_path, capsys):
    precious = tmp_path / "precious.txt"
    precious.write_text("precious")
    out = tmp_path / "out"
    model_dir = out / "i10h20-l1-relu-uni-sf-h0in"
    (model_dir / "test_data_set_0").mkdir(parents=True)
    for name in ("model.onnx", "test_data_set_0/input_0.pb", "test_data_set_0/case.json"):
        (model_dir / name).symlink_to(precious)
    assert conformance_main(["vectors", "--select", "*relu-uni-sf-h0in--b1s1", "-o",
                             str(out)]) == 0
    assert precious.read_text() == "precious"
    assert not (model_dir / "model.onnx").is_symlink()          # the link was replaced
    onnx.load(model_dir / "model.onnx")
    # a planted folder link is refused, not followed
    out2 = tmp_path / "out2"
    out2.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out2 / "i10h20-l1-relu-uni-sf-h0in").symlink_to(elsewhere, target_is_directory=True)
    capsys.readouterr()
    rc = conformance_main(["vectors", "--select", "*relu-uni-sf-h0in--b1s1", "-o", str(out2)])
    _one_line_exit_2(rc, capsys, "symbolic link")
    assert list(elsewhere.iterdir()) == []


def test_check_input_sizes_are_checked_before_allocating(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    assert exporter_main(["export", "-o", str(model)]) == 0
    rc = conformance_main(["check", str(model), "--inputs", "100000x100000",
                           "--report-dir", str(tmp_path / "r")])
    _one_line_exit_2(rc, capsys, "100000x100000")


def test_check_external_data_from_another_folder_and_outside(tmp_path, capsys, monkeypatch):
    sub = tmp_path / "sub"
    sub.mkdir()
    model, ckpt = sub / "m.onnx", sub / "m.pt"
    assert exporter_main(["export", "-o", str(model), "--external-data",
                          "--save-checkpoint", str(ckpt)]) == 0
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    rc = conformance_main(["check", "../sub/m.onnx", "--runtimes", "ort-cpu,ort-web"
                           if load_runtime("ort-web").available() is None else "ort-cpu",
                           "--report-dir", "rep", "--no-heatmap"])
    assert rc == 0, capsys.readouterr()
    # a file whose external data points outside its folder: one line, nothing read
    evil = onnx.load(str(model), load_external_data=False)
    for t in evil.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../../../etc/hostname"
    onnx.save(evil, sub / "evil.onnx")
    capsys.readouterr()
    rc = conformance_main(["check", "../sub/evil.onnx", "--checkpoint", "../sub/m.pt",
                           "--report-dir", "rep2", "--no-heatmap"])
    _one_line_exit_2(rc, capsys, "not a file inside the model's folder")


def _vectors(tmp_path: Path, *case_ids: str) -> Path:
    out = tmp_path / "vectors"
    write_vectors(prepare_smoke_cases(tmp_path / "work", *case_ids), out)
    return out


def test_replay_relative_dir_on_node_runtimes(tmp_path, monkeypatch):
    runtimes = [r for r in ("ort-node", "ort-web") if load_runtime(r).available() is None]
    if not runtimes:
        pytest.skip("no Node.js runtime installed")
    _vectors(tmp_path, "i10h20-l1-tanh-uni-sf-h0in--b1s1")
    monkeypatch.chdir(tmp_path)
    rc = conformance_main(["replay", "vectors", "--runtimes", ",".join(runtimes),
                           "--report-dir", "rep", "--no-heatmap"])
    cells = json.loads((tmp_path / "rep" / "report.json").read_text())["cells"]
    assert rc == 0 and {c["status"] for c in cells} == {"pass"}, cells


def test_replay_one_bad_folder_is_its_own_error_cell(tmp_path, monkeypatch):
    out = _vectors(tmp_path, "i10h20-l1-tanh-uni-sf-h0in--b1s1", "i10h20-l1-relu-uni-sf-h0in--b1s1",
                   "i10h20-l1-tanh-bi-sf-h0in--b1s1")
    folders = sorted(p.parent for p in out.glob("*/model.onnx"))
    assert len(folders) == 3
    real_glob = Path.glob

    def glob(self, pattern):    # root cannot make a folder unreadable: fake the refusal
        if self == folders[1] and pattern.startswith("test_data_set"):
            raise PermissionError(13, "Permission denied")
        return real_glob(self, pattern)
    monkeypatch.setattr(Path, "glob", glob)
    prepared = read_vectors(out)
    assert [bool(p.problem) for p in prepared] == [False, True, False]
    assert "Permission denied" in prepared[1].problem


def test_replay_float64_truth_of_another_shape(tmp_path):
    out = _vectors(tmp_path, "i10h20-l1-tanh-uni-sf-h0in--b1s1")
    f64 = next(out.glob("*/truth_f64/test_data_set_0/output_0.pb"))
    f64.write_bytes(onnx.numpy_helper.from_array(np.zeros((2, 2)), "output").SerializeToString())
    (cell,) = execute(read_vectors(out), ["ort-cpu"], isolate=False).cells
    assert cell["status"] == "error" and "float64 truth of output" in cell["message"]


@pytest.mark.parametrize("content", ["[1, 2]", "null", "[" * 100000 + "]" * 100000, "7"])
def test_replay_odd_case_json(content, tmp_path):
    out = _vectors(tmp_path, "i10h20-l1-tanh-uni-sf-h0in--b1s1")
    next(out.glob("*/test_data_set_0/case.json")).write_text(content)
    (cell,) = execute(read_vectors(out), ["ort-cpu"], isolate=False).cells
    assert cell["status"] == "pass"
    if load_runtime("ort-node").available() is None:
        from conformance.runtimes.node import HARNESS_DIR
        r = subprocess.run(["node", str(HARNESS_DIR / "harness.mjs"), "replay", str(out)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stdout.strip().endswith("1 passed, 0 failed"), r


# ---- runs lost to one bad part ---------------------------------------------------------------

def test_a_case_too_large_is_an_error_cell_not_a_lost_run(tmp_path, capsys):
    matrix = tmp_path / "m.toml"
    matrix.write_text('[[m]]\npresets = ["seed"]\ninputs = [[1, 1], [100000, 100000]]\n\n'
                      '[[m]]\nnum_layers = [100000000]\nhidden_size = [1]\ninput_size = [1]\n'
                      'inputs = [[1, 1]]\n')
    rc = conformance_main(["run", "--matrix", str(matrix), "--runtimes", "ort-cpu",
                           "--report-dir", str(tmp_path / "r"), "--no-heatmap"])
    assert rc == 1
    cells = json.loads((tmp_path / "r" / "report.json").read_text())["cells"]
    assert sorted(c["status"] for c in cells) == ["error", "error", "pass"]
    assert all("preparation failed" in c["message"] for c in cells if c["status"] == "error")


def test_sigterm_leaves_nothing_in_tmpdir(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp)}
    # the default matrix's LSTM cases: enough cells (502) that the run is still going when
    # the signal comes, without waiting for the whole matrix's preparation
    proc = subprocess.Popen([sys.executable, "-m", "conformance", "run", "--matrix", "default",
                             "--select", "*-lstm-*",
                             "--runtimes", "ort-cpu,onnx-reference", "--report-dir",
                             str(tmp_path / "r"), "--no-heatmap"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.name.startswith("conformance-worker")
                                             for p in tmp.iterdir()):
        time.sleep(0.2)            # until the workers run cells
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().endswith("conformance: terminated"), err
    time.sleep(0.5)
    left = [p.name for p in tmp.iterdir() if p.name.startswith(("conformance", "ort-"))]
    assert left == [], left


# ---- versioned runtimes are the version they claim ---------------------------------------------

def test_incomplete_version_cache_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_RNN_ONNX_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "runtimes" / "onnxruntime-1.21.0").mkdir(parents=True)
    rc = conformance_main(["run", "--runtimes", "ort-cpu@1.21.0", "--select", "*b1s1",
                           "--report-dir", str(tmp_path / "r")])
    _one_line_exit_2(rc, capsys, "incomplete")


def test_a_version_cache_that_imports_another_release_is_an_error(tmp_path, monkeypatch):
    """A folder that claims 1.21.0 (its .dist-info) but holds no onnxruntime: the worker
    imports the installed release, and the hello check makes every cell an error."""
    monkeypatch.setenv("TORCH_RNN_ONNX_CACHE", str(tmp_path / "cache"))
    site = tmp_path / "cache" / "runtimes" / "onnxruntime-1.21.0"
    (site / "onnxruntime-1.21.0.dist-info").mkdir(parents=True)
    prepared = prepare_smoke_cases(tmp_path / "w", "i10h20-l1-tanh-uni-sf-h0in--b1s1")
    for isolate in (True, False):       # in process, the pinned name never borrows the install
        result = execute(prepared, ["ort-cpu@1.21.0"], isolate=isolate)
        (cell,) = result.cells
        assert cell["status"] == "error", cell
        assert "not 1.21.0" in cell["message"]
        assert result.failed()


# ---- tract's zero-state entry needs a symbolic batch ------------------------------------------

def test_onnx_node_tests_with_fixed_batch_are_not_tract_zero_state_cells(tmp_path):
    """onnx's own node tests have no initial_h but a fixed batch: tract runs them, so the
    zero-state entry (a symbolic batch) must not apply — they pass, never xpass."""
    from onnx.backend.test.case.node import collect_testcases

    from conformance.features import model_features
    from conformance.tensors import write_tensors

    wanted = {"test_simple_rnn_defaults", "test_gru_defaults", "test_lstm_defaults"}
    import warnings
    with warnings.catch_warnings():    # generating every node test warns about casts
        warnings.simplefilter("ignore")
        cases = [c for c in collect_testcases(None) if c.name in wanted]
    assert {c.name for c in cases} == wanted
    for case in cases:
        folder = tmp_path / case.name
        folder.mkdir()
        onnx.save(case.model, folder / "model.onnx")
        inputs, outputs = case.data_sets[0]
        names = [i.name for i in case.model.graph.input]
        outs = [o.name for o in case.model.graph.output]
        write_tensors(folder / "test_data_set_0", "input", dict(zip(names, inputs)))
        write_tensors(folder / "test_data_set_0", "output", dict(zip(outs, outputs)))
        feats = model_features(str(folder / "model.onnx"))
        assert "rnn-no-initial-h" in feats and "rnn-symbolic-batch" not in feats
    ours = tmp_path / "ours.onnx"
    onnx.save(export(RNNSpec(3, 4).build_module(seed=0), initial_state="zeros"), ours)
    assert "rnn-symbolic-batch" in model_features(str(ours))
    if load_runtime("tract").available() is not None:
        pytest.skip("tract not installed")
    cells = execute(read_vectors(tmp_path), ["tract"]).cells
    assert len(cells) == 3
    assert all(c["status"] == "pass" for c in cells), [(c["case"], c["status"], c["message"])
                                                        for c in cells]
