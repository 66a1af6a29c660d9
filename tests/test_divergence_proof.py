"""An xfail proves its divergence: a wrong model never hides behind a known divergence.

A known wrong-result divergence says what the runtime computes instead (divergences.toml
`computes`, conformance/mistakes.py). A cell is xfail only when the file is right when run
faithfully AND the runtime's result is that file with the documented mistake applied. Here
each divergent feature is paired with a subtly wrong model (R × 1.001, the mutation suite's
r_scaled) and must come out `fail` through run, check and replay, on every runtime whose
entry predicts a wrong result; the correct file must stay xfail there (the control). Refusal
and crash entries stay refusals: a wrong file a runtime refuses is xfail, as before.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from conformance.cli import main as conformance_main
from conformance.divergences import load_divergences
from conformance.features import model_features
from conformance.mistakes import MISTAKES, UNKNOWN, prove
from conformance.runner import Prepared, execute
from conformance.truth import make_feeds, torch_truth
from conformance.vectors import write_vectors
from exporter import RNNSpec, export

from .helpers import ATOL, RTOL, installed_runtimes
from .mutations import ADVERSARIAL_NAME, mutate

INPUTS = [(3, 9), (2, 5)]

# base model → (spec, export options, the wrong-result entries it exercises)
BASES = {
    "relu": (RNNSpec(10, 20, nonlinearity="relu", bidirectional=True), {},
             {"tract-activations-ignored"}),
    "seqlens": (RNNSpec(10, 20, bidirectional=True), {"sequence_lens": True},
                {"onnx-reference-sequence-lens-ignored", "openvino-sequence-lens-ignored"}),
    "layout1": (RNNSpec(10, 20, batch_first=True), {"batch_layout": "attribute"},
                {"openvino-layout1-ignored"}),
}


@pytest.fixture(scope="module")
def installed() -> list[str]:
    return installed_runtimes()


def _prepared(path: Path, spec: RNNSpec, module, options: dict) -> list[Prepared]:
    out = []
    for batch, seq in INPUTS:
        feeds = make_feeds(spec, batch, seq, True, 99 + batch * 10 + seq,
                           "unsorted" if options.get("sequence_lens") else None)
        f32, f64 = torch_truth(module, feeds)
        out.append(Prepared(f"{path.stem}--b{batch}s{seq}", path.stem, str(path), feeds, f32,
                            f64))
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Per base: (right file, wrong file, checkpoint, cases of each), adversarially named."""
    root = tmp_path_factory.mktemp("proof")
    out = {}
    for name, (spec, options, _) in BASES.items():
        module = spec.build_module(seed=7)
        ckpt = root / f"{name}.pt"
        torch.save(module.state_dict(), ckpt)
        right_model = export(module, **options, target="none")  # as written: the divergences' files
        files = {}
        for kind, model in (("right", right_model), ("wrong", mutate(right_model, "r_scaled"))):
            folder = root / name / kind
            folder.mkdir(parents=True)
            path = folder / f"{ADVERSARIAL_NAME}.onnx"
            onnx.save(model, path)
            files[kind] = (path, _prepared(path, spec, module, options))
        out[name] = (files, ckpt, spec, options)
    return out


def _entry_kind(cell: dict) -> set[str]:
    kinds = {e.id: e.kinds for e in load_divergences()}
    return set(kinds[cell["divergence"]["id"]]) if cell["divergence"] else set()


def _assert_wrong_is_caught(cells: list[dict], what: str) -> None:
    """A wrong model is `fail` wherever the runtime returned numbers; only a refusal or a
    crash under a refusal/crash entry may stay xfail (the runtime never computed it)."""
    assert cells, what
    for c in cells:
        if c["status"] == "xfail":
            assert c["observed"] in ("unsupported", "error"), (what, c["runtime"], c["message"])
            assert _entry_kind(c) & {"refusal", "crash"}, (what, c["runtime"], c["divergence"])
        else:
            assert c["status"] == "fail", (what, c["runtime"], c["status"], c["message"])


def _cells(report_dir: Path) -> list[dict]:
    return json.loads((report_dir / "report.json").read_text())["cells"]


@pytest.mark.parametrize("base", sorted(BASES))
def test_run_path_right_is_xfail_wrong_is_fail(base, world, installed):
    files, _, _, _ = world[base]
    entries = BASES[base][2]
    right = execute(files["right"][1], installed).cells
    wrong = execute(files["wrong"][1], installed).cells
    _assert_wrong_is_caught(wrong, f"run {base}")
    # the control: where an entry's prediction applies, the right file is xfail, proven
    proven = [c for c in right if c["divergence"] and c["divergence"]["id"] in entries
              and c["observed"] == "fail"]
    assert all(c["status"] == "xfail" for c in right if c["status"] not in ("pass",)), [
        (c["runtime"], c["status"], c["message"]) for c in right]
    assert all("exactly the predicted mistake" in c["message"] for c in proven)
    seen = {c["divergence"]["id"] for c in proven}
    expected = {e for e in entries if any(rt in installed for rt in (
        "tract" if "tract" in e else "openvino" if "openvino" in e else "onnx-reference",))}
    assert seen >= {e for e in expected if e != "openvino-layout1-ignored"}, seen
    # the wrong file's wrong results name the entry and say why it does not explain them
    for c in wrong:
        if c["observed"] == "fail" and c["divergence"]:
            assert (f"known divergence {c['divergence']['id']} does not explain this result: "
                    "the file itself disagrees with torch") in c["message"], c["message"]


@pytest.mark.parametrize("base", sorted(BASES))
def test_check_path(base, world, installed, tmp_path):
    files, ckpt, spec, options = world[base]
    path = files["wrong"][0]
    flags = ["--nonlinearity", spec.nonlinearity] if spec.nonlinearity != "tanh" else []
    flags += ["--batch-first"] if spec.batch_first else []
    rc = conformance_main(["check", str(path), "--checkpoint", str(ckpt), *flags,
                           "--inputs", "3x9,2x5", "--runtimes", ",".join(installed),
                           "--report-dir", str(tmp_path), "--no-heatmap"])
    assert rc == 1
    _assert_wrong_is_caught(_cells(tmp_path), f"check {base}")


@pytest.mark.parametrize("base", sorted(BASES))
def test_replay_path(base, world, installed, tmp_path):
    files, _, _, _ = world[base]
    write_vectors(files["wrong"][1], tmp_path / "vectors")
    rc = conformance_main(["replay", str(tmp_path / "vectors"), "--runtimes",
                           ",".join(installed), "--report-dir", str(tmp_path / "rep"),
                           "--no-heatmap"])
    assert rc == 1
    _assert_wrong_is_caught(_cells(tmp_path / "rep"), f"replay {base}")


def test_every_wrong_result_entry_names_a_mistake():
    for entry in load_divergences():
        if "wrong-result" in entry.kinds:
            assert entry.computes in (*MISTAKES, UNKNOWN), entry.id
        else:
            assert entry.computes == "", entry.id


def test_a_wrong_result_entry_without_computes_is_refused(tmp_path):
    from exporter.errors import ExportError
    toml = tmp_path / "d.toml"
    toml.write_text('''[[divergence]]
id = "x"
runtime = "tract"
versions = ">=0"
features = ["rnn-op"]
kind = "wrong-result"
summary = "s"
repro = "r"
citation = "c"
reviewed = "2026-11-29"
''')
    with pytest.raises(ExportError, match="computes"):
        load_divergences(toml)
    toml.write_text(toml.read_text() + 'computes = "activations-as-tanh"\n')
    assert load_divergences(toml)[0].computes == "activations-as-tanh"


def test_unknown_mistake_explains_nothing(world):
    """An entry that states no mistake (or names one that does not exist) can never turn a
    wrong result into xfail."""
    files, _, _, _ = world["relu"]
    p = files["right"][1][0]
    for name in (UNKNOWN, "no-such-mistake"):
        proof = prove(name, p.model_path, p.feeds, p.f32, p.f32, p.f64, "tract")
        assert proof.holds is False
        assert proof.note == ("the entry states no mistake that predicts the result, so a wrong "
                              "result cannot be told from a wrong model")


def test_prediction_is_checked_against_the_runtime(world):
    """The right file on a runtime that does NOT make the mistake (onnxruntime computes Relu):
    its correct answer is not the predicted Tanh answer, so the proof fails — the check can
    fail, it does not just pass whatever the runtime returns."""
    files, _, _, _ = world["relu"]
    p = files["right"][1][0]
    proof = prove("activations-as-tanh", p.model_path, p.feeds, p.f32, p.f32, p.f64, "tract")
    assert proof.holds is False
    assert proof.note.startswith("the result is not what it predicts (Every RNN node's")
    assert "max abs err" in proof.note and "elements outside tolerance)" in proof.note
    wrong = files["wrong"][1][0]
    proof = prove("activations-as-tanh", wrong.model_path, wrong.feeds, wrong.f32, wrong.f32,
                  wrong.f64, "tract")
    assert proof.holds is False
    assert proof.note.startswith("the file itself disagrees with torch when run faithfully "
                                 "(onnxruntime CPU: max abs err")
    assert proof.note.endswith("the model is wrong, whatever the runtime does")
    # and a prediction that holds says so
    tanh_answer = prove("the-file-as-written", p.model_path, p.feeds, p.f32, p.f32, p.f64,
                        "tract")
    assert tanh_answer.holds is True
    assert tanh_answer.note.startswith("the result is exactly the predicted mistake (No runtime")


def test_a_prediction_that_cannot_be_computed_proves_nothing(world):
    """layout=1 read as 0 with an initial state whose batch is not the direction count: the
    rewritten file does not run, so nothing is proven (and the error is named)."""
    files, _, _, _ = world["layout1"]
    p = files["right"][1][0]
    from conformance.mistakes import _faithful

    proof = prove("layout-read-as-0", p.model_path, p.feeds, p.f32, p.f32, p.f64, "openvino")
    assert proof.holds is False
    with pytest.raises(Exception) as info:
        _faithful(p.model_path, "layout-read-as-0", p.feeds)
    first = str(info.value).strip().splitlines()[0][:300]
    assert re.match(r"its prediction \(layout=1 read as layout=0.*\) could not be computed: ",
                    proof.note), proof.note
    assert proof.note.endswith(f"could not be computed: {type(info.value).__name__}: {first}")


def test_the_faithful_run_follows_the_file_not_a_stale_cache(world, tmp_path):
    """The same path rewritten (same size, other weights) is read again."""
    files, _, _, _ = world["relu"]
    p = files["right"][1][0]
    path = tmp_path / "m.onnx"
    path.write_bytes(Path(files["wrong"][0]).read_bytes())
    first = prove("the-file-as-written", str(path), p.feeds, p.f32, p.f32, p.f64, "tract")
    assert first.holds is False                    # the wrong file is not torch's answer
    time.sleep(0.01)
    path.write_bytes(Path(p.model_path).read_bytes())
    assert path.stat().st_size == Path(files["wrong"][0]).stat().st_size
    again = prove("the-file-as-written", str(path), p.feeds, p.f32, p.f32, p.f64, "tract")
    assert again.holds is True


def test_layout1_is_verified_through_transposes(world):
    """onnxruntime refuses layout=1; the faithful run rewrites it to layout=0 between
    Transposes, which must compute torch's answer exactly (else every proof on layout=1 files
    would fail for the wrong reason)."""
    from exporter.verify import layout0

    files, _, _, _ = world["layout1"]
    p = files["right"][1][0]
    model = onnx.load(p.model_path)
    layout0(model)
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, p.feeds)))
    for name, want in p.f32.items():
        np.testing.assert_allclose(got[name], want, atol=ATOL, rtol=RTOL)


def test_dead_node_adds_no_feature(world, installed, tmp_path):
    """Wrong weights plus a dead layout=1 RNN node (its output feeds nothing): features are
    read from the live graph, so no layout=1 divergence applies and every runtime that
    computes the file says `fail`."""
    files, _, _, _ = world["relu"]
    wrong = onnx.load(files["wrong"][0])
    dead = onnx.helper.make_node("RNN", ["input", "W_l0", "R_l0", "B_l0"], ["dead_y"],
                                 hidden_size=20, layout=1, direction="bidirectional",
                                 activations=["Relu", "Relu"], name="dead")
    wrong.graph.node.append(dead)
    path = tmp_path / "dead.onnx"
    onnx.save(wrong, path)
    assert "rnn-layout1" not in model_features(str(path))
    assert "rnn-activation-relu" in model_features(str(path))
    cases = [Prepared(p.case_id, p.model_id, str(path), p.feeds, p.f32, p.f64)
             for p in files["wrong"][1]]
    cells = execute(cases, installed).cells
    for c in cells:
        assert c["status"] in ("fail", "unsupported", "error") or (
            c["status"] == "xfail" and c["observed"] != "fail"), (c["runtime"], c["status"])
        assert not (c["divergence"] and "layout1" in c["divergence"]["id"]), c["divergence"]


@pytest.mark.parametrize("base", ["relu", "seqlens"])
def test_in_process_judge_proves_right_and_fails_wrong(base, world):
    """The same decision through the judge in this process (fast: the mutation tester's
    guard of judge.py and mistakes.py)."""
    runtimes = {"relu": ["tract"], "seqlens": ["onnx-reference"]}[base]
    files, _, _, _ = world[base]
    right = execute(files["right"][1], runtimes, isolate=False).cells
    wrong = execute(files["wrong"][1], runtimes, isolate=False).cells
    assert [c["status"] for c in right] == ["xfail"] * len(right), right
    assert all("exactly the predicted mistake" in c["message"] for c in right)
    assert [c["status"] for c in wrong] == ["fail"] * len(wrong), wrong
    assert all(c["observed"] == "fail" and c["divergence"] for c in wrong)
    assert all("the file itself disagrees with torch" in c["message"] for c in wrong)
    assert all(c["silently_wrong"] for c in wrong)
