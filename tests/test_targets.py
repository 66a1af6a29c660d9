"""`target`: the exporter writes the construction each runtime computes exactly; the table is
data citing the divergences it avoids, and real runtimes confirm every choice."""
from __future__ import annotations

import ast
import json
import tomllib
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from conformance.divergences import DIVERGENCES_FILE
from conformance.features import model_features
from conformance.matrix import load_matrix, with_targets
from conformance.runner import execute, prepare_matrix
from conformance.runtimes import load_runtime
from exporter import ExportError, export
from exporter.targets import (FAMILIES, PREFERENCES, RULES, TARGETS, Construction,
                              Preference, construction, target_name)

ROOT = Path(__file__).resolve().parents[1]


def _props(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def test_every_rule_cites_a_reviewed_divergence_and_a_known_target():
    ids = {e["id"] for e in tomllib.loads(DIVERGENCES_FILE.read_text())["divergence"]}
    for rule in RULES:
        assert rule.avoids in ids, rule
        assert rule.targets <= set(TARGETS) - {"any", "none"}
    assert target_name("ort-cpu") == "ort" and target_name("openvino-static") == "openvino"
    with pytest.raises(ExportError, match="unknown target"):
        target_name("coreml")


@pytest.mark.parametrize("target, relu, lens, zeros, want", [
    ("none", True, True, True, ("rnn", "absent")),
    ("ort", True, True, True, ("rnn", "absent")),
    ("tract", True, False, False, ("scan", "absent")),
    ("tract", False, False, True, ("rnn", "explicit")),
    ("openvino", False, True, False, ("scan", "absent")),
    ("openvino", True, False, True, ("rnn", "absent")),
    ("onnx-reference", True, False, False, ("scan", "absent")),
    ("any", False, False, False, ("rnn", "absent")),
    ("any", False, False, True, ("rnn", "explicit")),
])
def test_the_table_decides(target, relu, lens, zeros, want):
    how = construction(target, relu=relu, sequence_lens=lens, zero_state=zeros,
                       batch_first=False)
    assert (how.lowering, how.zero_state) == want
    scan_flip = {"tract": "gather", "any": "gather", "ort": "scan", "openvino": "scan"}
    assert how.flip == (scan_flip.get(target, "slice") if how.lowering == "scan" else "slice")
    assert all(why in {r.avoids for r in RULES} | {p.because for p in PREFERENCES}
               for _, why in how.because)


def test_a_preference_is_one_familys_measured_choice_and_a_rule_still_wins():
    """PREFERENCES: choices a single runtime family computes exactly and runs faster (the
    scan lowering's reverse direction stepped by the Scan itself, for onnxruntime and
    OpenVINO); "any"
    and "none" never take one, and the file records why."""
    fields = set(Construction.__dataclass_fields__) - {"because"}
    for p in PREFERENCES:
        assert p.targets <= set(FAMILIES) and p.choice in fields and p.because
    with pytest.raises(ValueError, match="not 'lowering'"):    # one construction() never applies
        Preference(frozenset({"ort"}), "lowering", "scan", "a measurement")
    flips = {t: construction(t, relu=False, sequence_lens=False, zero_state=False,
                             batch_first=False, lowering="scan") for t in TARGETS}
    assert {t: h.flip for t, h in flips.items()} == {
        "any": "gather", "none": "slice", "ort": "scan", "openvino": "scan",
        "tract": "gather", "onnx-reference": "slice"}
    assert ("flip=scan", PREFERENCES[0].because) in flips["ort"].because
    # the native-node lowering has no flip to prefer
    assert construction("ort", relu=False, sequence_lens=False, zero_state=False,
                        batch_first=False).flip == "slice"
    model = export(torch.nn.GRU(3, 4, bidirectional=True), lowering="scan", target="ort")
    how = json.loads(_props(model)["construction"])
    assert how["flip"] == "scan" and ["flip=scan", PREFERENCES[0].because] in how["because"]


def test_an_explicit_option_wins_over_the_target_and_is_recorded():
    how = construction("any", relu=True, sequence_lens=False, zero_state=False,
                       batch_first=True, lowering="rnn", batch_layout="attribute")
    assert (how.lowering, how.batch_layout, how.because) == ("rnn", "attribute", ())
    model = export(torch.nn.RNN(3, 4, nonlinearity="relu"), lowering="rnn")
    assert json.loads(_props(model)["construction"])["lowering"] == "rnn"


def test_default_export_is_for_any_runtime_and_says_why():
    relu = torch.nn.RNN(3, 4, num_layers=2, bidirectional=True, nonlinearity="relu")
    model = export(relu, initial_state="zeros")
    props = _props(model)
    how = json.loads(props["construction"])
    assert props["target"] == "any" and props["lowering"] == "scan"
    assert how == {"lowering": "scan", "zero_state": "explicit", "flip": "gather",
                   "batch_layout": "transpose", "because": how["because"]}
    assert ["zero_state=explicit", "tract-zero-state-symbolic-batch"] in how["because"]
    ops = {n.op_type for n in model.graph.node}
    assert "Scan" in ops and "RNN" not in ops
    # the same module as written: native nodes, no initial_h
    plain = export(relu, initial_state="zeros", target="none")
    assert {n.op_type for n in plain.graph.node} >= {"RNN"}
    assert "Scan" not in {n.op_type for n in plain.graph.node}


def test_the_gather_flip_leaves_no_negative_step_slice(tmp_path):
    model = export(torch.nn.GRU(3, 4, bidirectional=True), lowering="scan", target="tract")
    onnx.save(model, str(tmp_path / "m.onnx"))
    feats = model_features(str(tmp_path / "m.onnx"))
    assert "scan" in feats and "negative-step-slice" not in feats
    slice_model = export(torch.nn.GRU(3, 4, bidirectional=True), lowering="scan", target="none")
    onnx.save(slice_model, str(tmp_path / "s.onnx"))
    assert "negative-step-slice" in model_features(str(tmp_path / "s.onnx"))


def test_explicit_zeros_compute_torchs_zero_state():
    import onnxruntime as ort

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True).eval()
    model = export(lstm, initial_state="zeros", target="tract")
    assert [i.name for i in model.graph.input] == ["input"]
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((5, 7, 3), dtype=np.float32)
    got = sess.run(None, {"input": x})
    with torch.no_grad():
        y, (h, c) = lstm(torch.from_numpy(x))
    for g, w in zip(got, (y, h, c)):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-5, rtol=1e-4)


_FAMILY = {"ort-cpu": "ort", "openvino": "openvino", "tract": "tract",
           "onnx-reference": "onnx-reference"}


@pytest.mark.parametrize("runtime", sorted(_FAMILY))
def test_each_runtimes_own_target_passes_the_smoke_matrix_without_a_divergence(runtime):
    """What --target gives a runtime: every smoke case plain `pass` there, none excused."""
    if load_runtime(runtime).available() is not None:
        pytest.skip(f"{runtime} not installed")
    import tempfile

    cases = with_targets(load_matrix("smoke"), [_FAMILY[runtime]])
    with tempfile.TemporaryDirectory() as tmp:
        cells = execute(prepare_matrix(cases, Path(tmp)), [runtime], isolate=False).cells
    assert cells and all(c["status"] == "pass" for c in cells), [
        (c["case"], c["status"], c["message"][:200]) for c in cells if c["status"] != "pass"]


def test_exporter_cli_takes_a_target(tmp_path):
    from exporter.cli import main

    out = tmp_path / "relu.onnx"
    assert main(["export", "--nonlinearity", "relu", "--target", "tract", "-o", str(out)]) == 0
    assert _props(onnx.load(str(out)))["lowering"] == "scan"
    assert main(["export", "--target", "coreml", "-o", str(tmp_path / "x.onnx")]) == 2


def _imports(path: Path, package: str) -> set[str]:
    """The exporter modules `path` imports (module level and inside functions)."""
    tree = ast.parse(path.read_text())
    here = path.relative_to(ROOT).with_suffix("").parts
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[:-node.level]) if node.level <= len(here) else []
                if here[-1] == "__init__":
                    base = list(here[:len(here) - node.level])
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith(package):
                found.add(mod)
                found |= {f"{mod}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith(package)}
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the import graph, or None."""
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return path + [m, d]
            if d not in state and (found := visit(d, path + [m])):
                return found
        state[m] = 2
        return None
    for m in sorted(graph):
        if m not in state and (found := visit(m, [])):
            return found
    return None


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_exporter_has_no_import_cycles():
    """One way through: front door → reading → lowering → graph → file, no circles."""
    files = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (ROOT / "exporter").rglob("*.py")}
    graph = {m: {i for i in _imports(p, "exporter") if i in files and i not in (m, "exporter")}
             for m, p in files.items() if m != "exporter"}   # __init__ only re-exports
    assert graph["exporter.api"] >= {"exporter.reading", "exporter.torch_onnx"}
    assert _cycle(graph) is None, " → ".join(_cycle(graph))


def test_heatmap_counts_target_files_in_their_own_row():
    """Feature rows are the files written as asked (as docs/support.md's first table); a
    run with --targets adds one row per target instead of mixing them in."""
    from conformance.report import _heatmap_rows

    labels = {"cell": "rnn", "nonlinearity": "relu", "num_layers": 1, "bias": True,
              "lowering": "rnn", "initial_state": "input", "batch_layout": "transpose"}
    cells = [{"runtime": "tract", "status": "xfail", "labels": {**labels, "target": "none"}},
             {"runtime": "tract", "status": "pass",
              "labels": {**labels, "lowering": "scan", "target": "any"}}]
    rows, runtimes, grid = _heatmap_rows({"cells": cells, "runtimes": {"tract": {}}})
    assert [c["status"] for c in grid[("relu", "tract")]] == ["xfail"]
    assert [c["status"] for c in grid[("every cell", "tract")]] == ["xfail"]
    assert [c["status"] for c in grid[("every cell, --target any", "tract")]] == ["pass"]
    assert "scan lowering (--lowering scan)" not in rows
