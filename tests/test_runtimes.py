"""Every optional runtime adapter exercised for real on small cases.

In CI (CI=true) a missing runtime is a failure, since .ci/run installs them all; elsewhere the
tests of a runtime that is not installed are skipped with the install command.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.matrix import load_matrix, select
from conformance.runner import execute, prepare_matrix
from conformance.runtimes import load_runtime
from conformance.runtimes.node import HARNESS_DIR
from conformance.vectors import write_vectors

from .helpers import prepare_smoke_cases

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = ["openvino", "tract", "ort-node", "ort-web"]


def need(runtime: str) -> None:
    reason = load_runtime(runtime).available()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{runtime} must be installed in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare_smoke_cases(tmp_path_factory.mktemp("rt"), "i10h20-l2-tanh-bi-bf-h0in--b3s7",
                               "i10h20-l1-relu-uni-sf-h0in--b3s7")


@pytest.mark.parametrize("runtime", OPTIONAL)
def test_adapter_runs_real_cases(runtime, prepared):
    need(runtime)
    result = execute(prepared, [runtime])
    cells = {c["case"]: c for c in result.cells}
    tanh = cells["i10h20-l2-tanh-bi-bf-h0in--b3s7"]
    assert tanh["status"] == "pass", tanh
    assert tanh["provider"] and tanh["runtime_version"]
    relu = cells["i10h20-l1-relu-uni-sf-h0in--b3s7"]
    if runtime == "tract":   # tract runs Relu as Tanh: shown as silently wrong, never a pass
        assert relu["status"] == "xfail" and relu["observed"] == "fail"
        assert relu["silently_wrong"] and relu["divergence"]["id"] == "tract-activations-ignored"
    else:
        assert relu["status"] == "pass", relu


def test_openvino_records_f32_precision(prepared):
    need("openvino")
    result = execute(prepared[:1], ["openvino"], isolate=False)
    opts = result.runtimes["openvino"]["options"]
    assert opts["inference_precision"] == "f32" and "cpu_default_precision" in opts
    assert "float32" in result.cells[0]["provider"] or "f32" in result.cells[0]["provider"]


def test_tract_crash_is_contained(prepared, tmp_path):
    need("tract")
    cases = select(load_matrix("smoke"), "i10h20-l1-tanh-uni-sf-h0zero--b4s9")
    result = execute(prepare_matrix(cases, tmp_path), ["tract"])
    (cell,) = result.cells
    assert cell["observed"] == "error" and "SIGABRT" in cell["message"]
    assert cell["status"] == "xfail"


def _node(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["node", str(HARNESS_DIR / "harness.mjs"), *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("backend", ["node", "web"])
def test_node_harness_replays_python_vectors(backend, prepared, tmp_path):
    need("ort-node" if backend == "node" else "ort-web")
    write_vectors(prepared, tmp_path)
    r = _node("replay", str(tmp_path), "--backend", backend)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1] == "2 passed, 0 failed"
    # Nudge one expected value: the harness must notice.
    from onnx import numpy_helper
    import onnx
    path = next(tmp_path.glob("*/test_data_set_0/output_0.pb"))
    proto = onnx.TensorProto()
    proto.ParseFromString(path.read_bytes())
    arr = numpy_helper.to_array(proto).copy()
    arr.flat[0] += 1e-2
    path.write_bytes(numpy_helper.from_array(arr, proto.name).SerializeToString())
    r = _node("replay", str(tmp_path), "--backend", backend)
    assert r.returncode == 1 and "1 passed, 1 failed" in r.stdout


def test_missing_node_modules_is_unavailable_with_install_command(monkeypatch, tmp_path):
    import conformance.runtimes.node as node_mod
    monkeypatch.setattr(node_mod, "HARNESS_DIR", tmp_path)
    reason = node_mod.OrtNode().available()
    assert reason and "npm ci" in reason


def test_missing_python_runtime_is_unavailable(tmp_path):
    """A runtime whose package cannot be imported is reported, with the install command."""
    shim = tmp_path / "shim" / "openvino"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('simulated: not installed')\n")
    env = {**os.environ, "PYTHONPATH": f"{shim.parent}{os.pathsep}{ROOT}"}
    r = subprocess.run([sys.executable, "-m", "conformance", "run", "--select",
                        "i10h20-l1-tanh-uni-sf-h0in--b1s1", "--runtimes", "ort-cpu,openvino",
                        "--report-dir", str(tmp_path / "rep"), "--no-heatmap"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    info = report["runtimes"]["openvino"]
    assert not info["available"] and "pip install" in info["reason"] and not info["error"]
    assert {c["runtime"]: c["status"] for c in report["cells"]} == {
        "ort-cpu": "pass", "openvino": "unavailable"}


def test_smoke_matrix_on_every_runtime(tmp_path):
    """The issue's bar: the smoke matrix exits 0 on all runtimes, every wrong cell visible."""
    for runtime in OPTIONAL:
        need(runtime)
    runtimes = "ort-cpu,ort-cuda," + ",".join(OPTIONAL) + ",onnx-reference"
    r = subprocess.run([sys.executable, "-m", "conformance", "run", "--matrix", "smoke",
                        "--runtimes", runtimes, "--report-dir", str(tmp_path), "-j", "2"],
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    for rt in OPTIONAL:
        assert report["runtimes"][rt]["available"], rt
    wrong = [c for c in report["cells"] if c["silently_wrong"]]
    assert wrong and all(c["status"] == "xfail" and c["divergence"]["kind"] == "wrong-result"
                         for c in wrong)
    assert {c["runtime"] for c in wrong} == {"tract", "openvino", "onnx-reference"}
    assert "Silently wrong results" in (tmp_path / "report.md").read_text()
