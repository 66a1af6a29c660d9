"""What a new user meets: check reads the file, quiet runs, readable pictures, honest tables,
an installed package that works from anywhere. Real subprocesses where the user would use one."""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.cli import main as conformance_main
from conformance.runtimes import load_runtime
from conformance.runtimes.node import HARNESS_DIR
from exporter.cli import main as exporter_main

from .helpers import ROOT, run_module


def _export(capsys, *args: str) -> None:
    assert exporter_main(["export", *args]) == 0
    capsys.readouterr()


def _check(capsys, *args: str) -> tuple[int, str]:
    rc = conformance_main(["check", *args, "--runtimes", "ort-cpu", "--no-heatmap"])
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_check_of_the_readmes_own_output_needs_no_flags(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _export(capsys)                                   # rnn.onnx, the seed model, seed 0
    rc, out = _check(capsys, "rnn.onnx")
    assert rc == 0, out
    _export(capsys, "--nonlinearity", "relu", "--bidirectional", "--seed", "7", "-o", "relu.onnx",
            "--save-checkpoint", "relu.pt")
    assert _check(capsys, "relu.onnx")[0] == 0        # relu and seed 7 read from the file
    assert _check(capsys, "relu.onnx", "--checkpoint", "relu.pt")[0] == 0
    rc, out = _check(capsys, "relu.onnx", "--nonlinearity", "tanh")
    assert rc == 2 and "--nonlinearity 'tanh' (the file says 'relu')" in out
    rc, out = _check(capsys, "relu.onnx", "--seed", "8")
    assert rc == 2 and "--seed 8 (the file says 7)" in out


def test_check_of_a_whole_model_file_needs_its_checkpoint(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _export(capsys, "--module", "models.seed:SeedRNN", "--example-shape", "5,2,10",
            "--example-shape", "1,2,20", "-o", "seed.onnx", "--save-checkpoint", "seed.pt")
    rc, out = _check(capsys, "seed.onnx")
    assert rc == 2 and "needs the weights" in out and "--checkpoint" in out
    rc, out = _check(capsys, "seed.onnx", "--checkpoint", "seed.pt")
    assert rc == 0, out


def test_runtime_output_goes_to_the_cell_not_the_console(tmp_path):
    """tract's Rust panic and onnxruntime's refusal logs: recorded per cell, not printed."""
    runtimes = [rt for rt in ("ort-cpu", "tract") if load_runtime(rt).available() is None]
    r = run_module("conformance", "run", "--select", "i10h20-l1-tanh-uni-sf-h0zero--b4s9",
                   "--runtimes", ",".join(runtimes), "--report-dir", "rep", "--no-heatmap",
                   cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    for noise in ("panicked", "RUST_BACKTRACE", "[E:onnxruntime", "Traceback"):
        assert noise not in r.stdout + r.stderr
    assert "preparing" in r.stderr and "s wall" in r.stdout
    if "tract" in runtimes:
        cells = json.loads((tmp_path / "rep" / "report.json").read_text())["cells"]
        (crash,) = [c for c in cells if c["runtime"] == "tract"]
        assert crash["status"] == "xfail" and "panicked" in crash["log"]


def test_default_runtimes_are_the_installed_ones(tmp_path):
    r = run_module("conformance", "run", "--select", "i10h20-l1-tanh-uni-sf-h0in--b1s1",
                   "--report-dir", "rep", "--no-heatmap", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert "ort-cpu" in report["runtimes"] and "ort-cuda-tf32" not in report["runtimes"]
    assert all(info["available"] for info in report["runtimes"].values())


def test_support_refuses_a_table_with_unavailable_columns(capsys, tmp_path):
    rep = tmp_path / "rep"
    assert conformance_main(["run", "--select", "i10h20-l1-tanh-uni-sf-h0in--b1s1",
                             "--runtimes", "ort-cpu,ort-cuda", "--report-dir", str(rep),
                             "--no-heatmap"]) == 0
    out = tmp_path / "support.md"
    assert conformance_main(["support", "--reports", str(rep / "report.json"),
                             "-o", str(out)]) == 1
    assert "ort-cuda unavailable" in capsys.readouterr().out and not out.exists()
    assert conformance_main(["support", "--reports", str(rep / "report.json"), "-o", str(out),
                             "--allow-unavailable"]) == 0
    assert "ort-cuda" in out.read_text()


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_heat_map_is_feature_by_runtime_at_a_readable_size(capsys, tmp_path):
    rep = tmp_path / "rep"
    assert conformance_main(["run", "--matrix", "smoke", "--runtimes", "ort-cpu,onnx-reference",
                             "--report-dir", str(rep)]) == 0
    width, height = _png_size(rep / "heatmap.png")
    assert width < 1600 and height < 1600        # was 7,880 px wide for the default matrix


def test_usage_paths_import_no_torch():
    """`--help` and usage errors are instant: nothing imports torch on the way."""
    code = ("import sys, conformance.cli, exporter.cli, models.presets; "
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=60)
    assert r.stdout.strip() == "False", r.stderr


def test_installed_package_works_from_any_directory(tmp_path):
    """A non-editable install, run from a folder holding a `models/` of the user's own."""
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--no-build-isolation", "--target", str(target), str(ROOT)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    work = tmp_path / "work"
    (work / "models").mkdir(parents=True)
    (work / "models" / "__init__.py").write_text("raise ImportError('the user\\'s own models')\n")
    env = {**os.environ, "PYTHONPATH": str(target)}
    for script, args in (("torch-rnn-onnx", ["export", "-o", "m.onnx"]),
                         ("torch-rnn-conformance", ["check", "m.onnx", "--runtimes", "ort-cpu",
                                                    "--no-heatmap"])):
        r = subprocess.run([sys.executable, str(target / "bin" / script), *args], cwd=work,
                           env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, (script, r.stdout, r.stderr)
    assert (target / "conformance" / "divergences.toml").is_file()
    assert (target / "conformance" / "node" / "harness.mjs").is_file()


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js not installed")
def test_node_harness_tests_and_missing_packages(tmp_path):
    r = subprocess.run(["npm", "test"], cwd=HARNESS_DIR, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    bare = tmp_path / "node"
    bare.mkdir()
    for f in ("harness.mjs", "tensor.mjs", "package.json"):
        shutil.copy(HARNESS_DIR / f, bare / f)
    r = subprocess.run(["node", str(bare / "harness.mjs"), "replay", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "npm ci" in r.stderr
    assert "ERR_MODULE_NOT_FOUND" not in r.stderr.split("(")[0]
    assert len(r.stderr.strip().splitlines()) == 1


def test_readme_deployment_code_is_the_code_ci_runs():
    """Each README block marked `<!-- code: FILE -->` is lines of FILE, in FILE's order."""
    import re

    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"<!-- code: (\S+) -->\n```\w*\n(.*?)```", readme, re.S)
    assert len(blocks) >= 3
    for path, code in blocks:
        source = (ROOT / path).read_text().splitlines()
        at = 0
        for line in code.splitlines():
            if not line.strip():
                continue
            found = next((k for k in range(at, len(source)) if source[k].strip() == line.strip()),
                         None)
            assert found is not None, f"README's block from {path}: {line.strip()!r} not there (in order)"
            at = found + 1


def test_torch_range_and_versions_doc_follow_the_tested_releases(tmp_path):
    """pyproject's torch range spans exactly the releases conformance/torch_releases.toml
    records as passing, and docs/versions.md's block is that file rendered."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.version import Version

    from conformance.support import TORCH_RELEASES_BLOCK, torch_releases, torch_releases_markdown

    root = ROOT
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(Requirement(d).specifier for d in deps if Requirement(d).name == "torch")
    releases = torch_releases()
    passed = [Version(r["torch"]) for r in releases if r["result"] == "pass"]
    failed = [Version(r["torch"]) for r in releases if r["result"] == "fail"]
    assert passed and all(v in spec for v in passed)
    assert not any(v in spec for v in failed)
    pinned = next(line.split("==")[1].strip() for line in
                  (root / "constraints.txt").read_text().splitlines()
                  if line.startswith("torch=="))
    assert Version(pinned) in passed
    begin, end = TORCH_RELEASES_BLOCK
    doc = (root / "docs" / "versions.md").read_text()
    assert f"{begin}\n{torch_releases_markdown()}{end}" in doc
    # the command writes the block into a page that has none, and rewrites it in place
    page = tmp_path / "v.md"
    page.write_text("# Versions\n")
    assert conformance_main(["torch-releases", "-o", str(page)]) == 0
    once = page.read_text()
    assert once.startswith("# Versions\n") and torch_releases_markdown() in once
    assert conformance_main(["torch-releases", "-o", str(page)]) == 0
    assert page.read_text() == once
