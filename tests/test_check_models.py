"""The user's own model: whole-model `check` (CLI, Python API, pytest plugin), its shapes and
streaming, where a wrong file diverges, and bad input. Real torch, real runtimes, real files."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import conformance
from conformance.check import shape_maps
from conformance.diagnose import step_errors
from conformance.streaming import Stream, split_chunks
from conformance.testing import assert_conforms
from exporter import ExportError, export
from exporter.signature import read_signature
from models.composite import COMPOSITES

ROOT = Path(__file__).resolve().parents[1]
CPU = "ort-cpu,openvino"                 # two installed CPU runtimes (core + extra)
EXAMPLES = ["vad", "projected-encoder", "gru-enhancer", "dict-forecaster", "stateful-lstm",
            "weight-drop-lm", "tutorial-tagger"]


def _exported(name: str, folder: Path, seed: int = 0):
    comp = COMPOSITES[name]
    torch.manual_seed(seed)
    module = comp.build().eval()
    example = comp.inputs(2, 5, np.random.default_rng(seed))
    path = folder / f"{name}.onnx"
    export(module, comp.call({k: torch.from_numpy(v) for k, v in example.items()}), path,
           input_names=list(example), output_names=list(comp.outputs), **comp.options())
    torch.save(module.state_dict(), folder / f"{name}.pt")
    return module, path


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "conformance", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def _edit(path: Path, out: Path, change) -> Path:
    model = onnx.load(str(path))
    change(model)
    onnx.save(model, str(out))
    return out


def _nudge(name_part: str, delta: float = 0.05):
    def change(model: onnx.ModelProto) -> None:
        t = next(t for t in model.graph.initializer if name_part in t.name)
        a = numpy_helper.to_array(t).copy()
        a.flat[3] += delta
        t.CopyFrom(numpy_helper.from_array(a, t.name))
    return change


def _swap_inputs(a: str, b: str):
    """Every node reading `a` reads `b` instead, and the other way round."""
    def change(model: onnx.ModelProto) -> None:
        for node in model.graph.node:
            for k, name in enumerate(node.input):
                if name in (a, b):
                    node.input[k] = b if name == a else a
    return change


# ---- the example modules: export, signature, check (shapes and streaming) ---------------

@pytest.mark.parametrize("name", EXAMPLES)
def test_example_module_conforms_on_installed_runtimes(name, tmp_path):
    module, path = _exported(name, tmp_path)
    result = conformance.check_model(module, path, runtimes="installed")
    assert result.ok, result.table()
    judged = [c for c in result.cells if c["status"] in ("pass", "xfail")]
    assert {c["runtime"] for c in judged} >= {"ort-cpu"}
    sig = read_signature(onnx.load(str(path)))
    streamed = [c for c in result.cells if "--stream" in c["case"]]
    assert bool(streamed) == bool(sig.state_pairs)


def test_signature_names_states_and_structure(tmp_path):
    sigs = {n: read_signature(onnx.load(str(_exported(n, tmp_path)[1]))) for n in EXAMPLES}
    assert sigs["vad"].state_pairs == (("h", "h_n"), ("c", "c_n"))
    assert sigs["projected-encoder"].state_pairs == (
        ("h1", "h1_n"), ("c1", "c1_n"), ("h2", "h2_n"), ("c2", "c2_n"))
    assert sigs["stateful-lstm"].state_pairs == ()        # its state is made inside
    assert sigs["dict-forecaster"].state_pairs == ()
    fc = sigs["dict-forecaster"]
    assert [(i.name, i.dtype, i.low, i.high) for i in fc.inputs] == [
        ("history", "float32", None, None), ("weekday", "int64", 0, 6)]
    assert fc.module == "models.composite:DictForecaster" and "builtins.dict" in fc.args_spec
    assert [m.path for m in sigs["projected-encoder"].rnn_modules] == ["layer1", "layer2"]
    # the example is batch 2, seq 5: cases at 1, the example, larger
    assert shape_maps(sigs["vad"]) == [{"batch": 1, "seq": 1}, {"batch": 2, "seq": 5},
                                       {"batch": 5, "seq": 11}]


def test_cli_check_of_a_whole_model_passes_and_streams(tmp_path):
    _, path = _exported("vad", tmp_path)
    r = _cli("check", str(path), "--checkpoint", str(tmp_path / "vad.pt"), "--runtimes", CPU,
             "--report-dir", str(tmp_path / "rep"), "--chunks", "1,3")
    assert r.returncode == 0, r.stdout + r.stderr
    cells = json.loads((tmp_path / "rep" / "report.json").read_text())["cells"]
    cases = sorted({c["case"] for c in cells})
    assert cases == ["vad--batch1-seq1", "vad--batch2-seq5", "vad--batch5-seq11",
                     "vad--batch5-seq11--stream1", "vad--batch5-seq11--stream3"]
    assert all(c["status"] == "pass" for c in cells)
    assert {c["labels"]["chunk"] for c in cells} == {None, 1, 3}


# ---- wrong files fail, on every front door, and say where -------------------------------

def test_nudged_lstm_weight_fails_through_check_and_names_module_and_step(tmp_path):
    _, path = _exported("vad", tmp_path)
    bad = _edit(path, tmp_path / "bad.onnx", _nudge("lstm/W"))
    rep = tmp_path / "rep"
    r = _cli("check", str(bad), "--checkpoint", str(tmp_path / "vad.pt"), "--runtimes", CPU,
             "--report-dir", str(rep))
    assert r.returncode == 1, r.stdout + r.stderr
    cells = json.loads((rep / "report.json").read_text())["cells"]
    assert cells and all(c["status"] == "fail" for c in cells)
    located = [c for c in cells if c["diverged_at"]]
    assert located and all(c["diverged_at"]["module"] == "lstm"
                           and c["diverged_at"]["where"] == "module" for c in located)
    # a misread weight is wrong from the first step on (where the output itself is off)
    steps = [c["diverged_at"]["first_bad_step"] for c in located
             if c["diverged_at"]["tensor"] == "output"]
    assert steps and min(steps) == 0
    assert "diverges first at lstm" in located[0]["message"]
    # the repro folder: that module alone, torch's tensors; replay fails it on its own
    repro = Path(located[-1]["diverged_at"]["repro"])
    assert (repro / "model.onnx").is_file() and (repro / "README.md").is_file()
    ops = [n.op_type for n in onnx.load(str(repro / "model.onnx")).graph.node]
    assert "LSTM" in ops and "Conv" not in ops
    r = _cli("replay", str(repro), "--runtimes", CPU, "--report-dir", str(tmp_path / "rep2"))
    assert r.returncode == 1, r.stdout + r.stderr


def test_states_swapped_between_layers_fail_at_the_first_layer(tmp_path):
    module, path = _exported("projected-encoder", tmp_path)
    bad = _edit(path, tmp_path / "swapped.onnx", _swap_inputs("h1", "h2"))
    result = conformance.check_model(module, bad, runtimes=CPU)
    assert not result.ok
    assert all(c["status"] == "fail" for c in result.cells)
    located = [c["diverged_at"] for c in result.cells if c["diverged_at"]]
    assert located and {d["module"] for d in located} == {"layer1"}
    assert not any("repro" in d for d in located)       # no report_dir: no folder promised
    reported = conformance.check_model(module, bad, runtimes="ort-cpu", chunks=(),
                                       report_dir=tmp_path / "rep")
    repros = [Path(c["diverged_at"]["repro"]) for c in reported.cells
              if (c["diverged_at"] or {}).get("repro")]
    assert repros and all((r / "model.onnx").is_file() for r in repros)
    assert (tmp_path / "rep" / "report.json").is_file()


def test_a_stale_state_output_shows_in_the_streamed_per_step_output(tmp_path):
    """A file whose h_n output is the initial h passed through (a stale state): run once,
    only h_n is wrong; streamed, the stale state is fed on, so the per-step output of every
    later chunk is wrong too — what a deployment would hear."""
    module, path = _exported("gru-enhancer", tmp_path)

    def stale(model: onnx.ModelProto) -> None:
        for node in model.graph.node:
            node.output[:] = [o + "_unused" if o == "h_n" else o for o in node.output]
        model.graph.node.append(onnx.helper.make_node("Identity", ["h"], ["h_n"]))
    bad = _edit(path, tmp_path / "stale.onnx", stale)
    result = conformance.check_model(module, bad, runtimes="ort-cpu", diagnose=False)
    by_case = {c["case"]: c for c in result.cells}
    assert all(c["status"] == "fail" for c in by_case.values())
    whole = [c for k, c in by_case.items() if "--stream" not in k and "seq1" not in k]
    streamed = [c for k, c in by_case.items() if "--stream" in k]
    assert whole and all("enhanced" not in c["message"] for c in whole)
    assert streamed and all("enhanced:" in c["message"] for c in streamed)
    assert all(c["first_bad_step"] is not None and c["first_bad_step"] > 0 for c in streamed)


def test_assert_conforms_raises_with_a_table(tmp_path):
    module, path = _exported("gru-enhancer", tmp_path)
    assert assert_conforms(module, path, runtimes=CPU).ok
    bad = _edit(path, tmp_path / "bad.onnx", _nudge("gru/R"))
    with pytest.raises(AssertionError) as info:
        assert_conforms(module, bad, runtimes=CPU, chunks=())
    text = str(info.value)
    assert "does not conform" in text and "ort-cpu" in text and "openvino" in text
    assert text.count("fail ") >= 6 and "diverges first at gru" in text


def test_pytest_plugin_gives_one_item_per_runtime(tmp_path):
    _exported("gru-enhancer", tmp_path)
    _edit(tmp_path / "gru-enhancer.onnx", tmp_path / "bad.onnx", _nudge("gru/R"))
    (tmp_path / "test_user.py").write_text(textwrap.dedent(f"""
        import pytest, torch
        from conformance.testing import assert_conforms
        from models.composite import GRUEnhancer

        def _module():
            m = GRUEnhancer().eval()
            m.load_state_dict(torch.load({str(tmp_path / 'gru-enhancer.pt')!r},
                                         weights_only=True))
            return m

        @pytest.mark.conformance_runtimes("ort-cpu", "openvino")
        def test_good(conformance_runtime):
            assert_conforms(_module(), {str(tmp_path / 'gru-enhancer.onnx')!r},
                            runtimes=[conformance_runtime], chunks=())

        @pytest.mark.conformance_runtimes("ort-cpu", "openvino")
        def test_bad(conformance_runtime):
            assert_conforms(_module(), {str(tmp_path / 'bad.onnx')!r},
                            runtimes=[conformance_runtime], chunks=())
    """))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-p", "no:xdist", "-p", "no:randomly", str(tmp_path / "test_user.py")],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert "2 failed, 2 passed" in out, out[-3000:]
    assert "test_bad[ort-cpu]" in out and "test_bad[openvino]" in out


# ---- ordinary code exports ---------------------------------------------------------------

def test_len_of_the_input_with_a_named_dim_exports_through_strict_tracing(tmp_path):
    """`len(sentence)` fixes the size under non-strict tracing; strict tracing keeps it
    symbolic, and the stand-in's node is traceable there."""
    from torch.export import Dim

    from models.composite import TutorialTagger

    torch.manual_seed(0)
    module = TutorialTagger().eval()
    model = export(module, (torch.randint(0, 30, (5,)),), tmp_path / "t.onnx",
                   dynamic_shapes={"sentence": {0: Dim("seq")}})
    (x,) = model.graph.input
    assert [d.dim_param for d in x.type.tensor_type.shape.dim] == ["seq"]
    assert conformance.check_model(module, tmp_path / "t.onnx", runtimes="ort-cpu").ok


def test_weight_dropped_lstm_exports_its_eval_weights(tmp_path):
    from models.composite import WeightDropLM

    torch.manual_seed(0)
    module = WeightDropLM().eval()
    assert "weight_hh_l0" not in dict(module.rnn.module.named_parameters())
    export(module, (torch.randint(0, 40, (5, 2)),), tmp_path / "lm.onnx")
    assert conformance.check_model(module, tmp_path / "lm.onnx", runtimes=CPU).ok
    # a wrong raw weight shows: the export is what the wrapper computes, not a stale copy
    with torch.no_grad():
        module.rnn.weight_hh_l0_raw[0, 0] += 0.5
    assert not conformance.check_model(module, tmp_path / "lm.onnx", runtimes="ort-cpu").ok


# ---- another exporter's file ------------------------------------------------------------

def test_torch_onnx_file_checked_with_module_and_example_shapes(tmp_path):
    comp = COMPOSITES["gru-enhancer"]
    torch.manual_seed(0)
    module = comp.build().eval()
    torch.save(module.state_dict(), tmp_path / "w.pt")
    args = (torch.randn(2, 5, 16), torch.randn(1, 2, 24))
    torch.onnx.export(module, args, str(tmp_path / "theirs.onnx"), dynamo=True,
                      input_names=["spec", "state"])
    r = _cli("check", str(tmp_path / "theirs.onnx"), "--module",
             "models.composite:GRUEnhancer", "--checkpoint", str(tmp_path / "w.pt"),
             "--example-shape", "2,5,16", "--example-shape", "1,2,24", "--runtimes", "ort-cpu",
             "--report-dir", str(tmp_path / "rep"))
    assert r.returncode == 0, r.stdout + r.stderr
    cells = json.loads((tmp_path / "rep" / "report.json").read_text())["cells"]
    assert cells and all(c["status"] == "pass" for c in cells)


# ---- bad input: one line, exit 2 ---------------------------------------------------------

@pytest.mark.parametrize("extra, says", [
    (["--module", "no_such_package:Model"], "cannot import no_such_package"),
    (["--module", "models.composite:StreamingVAD"], "does not fit"),
    (["--shapes", "time=3"], "--shapes names time"),
    (["--shapes", "batch=0"], "sizes must be ≥ 1"),
    (["--chunks", "x"], "--chunks must be"),
    (["--hidden-size", "5"], "describe a bare nn.RNN file"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, extra, says):
    _, path = _exported("gru-enhancer", tmp_path)
    r = _cli("check", str(path), "--checkpoint", str(tmp_path / "gru-enhancer.pt"),
             "--runtimes", "ort-cpu", "--report-dir", str(tmp_path / "rep"), *extra)
    assert r.returncode == 2, r.stdout + r.stderr
    assert says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    _, path = _exported("gru-enhancer", tmp_path)
    _exported("vad", tmp_path)
    r = _cli("check", str(path), "--checkpoint", str(tmp_path / "vad.pt"), "--runtimes",
             "ort-cpu", "--report-dir", str(tmp_path / "rep"))
    assert r.returncode == 2 and "does not fit models.composite:GRUEnhancer" in r.stderr


def test_a_module_returning_other_outputs_is_refused(tmp_path):
    module, path = _exported("gru-enhancer", tmp_path)

    class Fewer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = module

        def forward(self, x, h):
            return self.inner(x, h)[0]
    with pytest.raises(ExportError, match="returns 1 tensors, the file 2"):
        conformance.check_model(Fewer(), path, runtimes="ort-cpu")
    with pytest.raises(ExportError, match="must be a torch.nn.Module"):
        conformance.check_model("model", path)


# ---- the pieces ---------------------------------------------------------------------------

def test_stream_feeds_each_chunks_states_to_the_next():
    """A running sum as the 'model': its state output is fed back, per-step outputs join."""
    x = np.arange(10, dtype=np.float32).reshape(1, 10)
    chunks = split_chunks({"x": x, "s": np.zeros((1, 1), np.float32)}, {"x": 1}, 4)
    assert [c["x"].shape[1] for c in chunks] == [4, 4, 2]

    def run(feeds):
        y = np.cumsum(feeds["x"], axis=1) + feeds["s"]
        return {"y": y, "s_n": y[:, -1:]}
    out = Stream(chunks, (("s", "s_n"),), {"y": 1}).run(run)
    np.testing.assert_array_equal(out["y"], np.cumsum(x, axis=1))
    assert out["s_n"].item() == 45
    # without the pairs the state would restart each chunk: a different answer
    restart = Stream(chunks, (), {"y": 1}).run(run)
    assert restart["s_n"].item() != 45


def test_step_errors_find_the_first_step_outside_tolerance():
    want = np.zeros((6, 2, 3))
    got = want.copy()
    got[3, 1, 2] = 1e-3
    got[5] = 1e-2
    per_step, first = step_errors(got, want, 0, 1e-5, 1e-5)
    assert first == 3 and per_step[:3] == [0.0, 0.0, 0.0] and per_step[5] == pytest.approx(1e-2)
    assert step_errors(want, want, 0, 1e-5, 1e-5)[1] is None
    # batch_first layout: the time axis is 1
    assert step_errors(np.moveaxis(got, 0, 1), np.moveaxis(want, 0, 1), 1, 1e-5, 1e-5)[1] == 3
