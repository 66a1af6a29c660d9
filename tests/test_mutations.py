"""The mutation suite: deliberately wrong models through every verdict path, on every runtime.

Each model in tests/mutations.py is a correct export with one thing broken. Through `run`
(the runner's judge), `check`, `replay` and the Node harness, on every installed runtime, each
must come out `fail` and exit 1, although its files carry a name under which every known
divergence would have applied, were verdicts still matched by name.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from conformance.cli import main as conformance_main
from conformance.divergences import load_divergences
from conformance.features import model_features
from conformance.runner import Prepared, execute
from conformance.runtimes import load_runtime
from conformance.runtimes.node import HARNESS_DIR
from conformance.truth import make_feeds, torch_truth
from conformance.vectors import write_vectors
from exporter import RNNSpec, export

from .helpers import installed_runtimes
from .mutations import ADVERSARIAL_NAME, MUTATIONS, mutate

INPUTS = [(1, 1), (3, 9)]
# refusal entries a runtime may answer a wrong model with: it computed nothing
REFUSALS = {e.id for e in load_divergences() if e.kinds == ("refusal",)}
NAMES = sorted(MUTATIONS)
# the Node harness's backends and the runtime each is judged as
HARNESS_BACKENDS = {"node": "ort-node", "web": "ort-web", "chromium-wasm": "ort-web-chromium",
                    "chromium-webgpu": "ort-webgpu-chromium",
                    "chromium-jsep": "ort-webgpu-jsep-chromium"}


@pytest.fixture(scope="module")
def installed() -> list[str]:
    return installed_runtimes()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Per mutation: the wrong model under an adversarial name, its checkpoint, its cases."""
    root = tmp_path_factory.mktemp("mutations")
    bases = {}
    for act in ("tanh", "relu", "gru"):
        spec = (RNNSpec(10, 20, cell="gru", bidirectional=True) if act == "gru"
                else RNNSpec(10, 20, nonlinearity=act, bidirectional=True))
        module = spec.build_module(seed=7)
        ckpt = root / f"{act}.pt"
        torch.save(module.state_dict(), ckpt)
        bases[act] = (spec, module, export(module, target="none"), ckpt)
    out = {}
    for name, (_, base) in MUTATIONS.items():
        spec, module, model, ckpt = bases[base]
        folder = root / name
        folder.mkdir()
        path = folder / f"{ADVERSARIAL_NAME}.onnx"
        wrong = mutate(model, name)
        onnx.save(wrong, path)
        prepared = []
        for batch, seq in INPUTS:
            feeds = make_feeds(spec, batch, seq, True, 1234 + batch * 100 + seq)
            f32, f64 = torch_truth(module, feeds)
            prepared.append(Prepared(f"{ADVERSARIAL_NAME}--{name}--b{batch}s{seq}",
                                     ADVERSARIAL_NAME, str(path), feeds, f32, f64,
                                     {"batch": batch, "seq": seq}))
        out[name] = (path, ckpt, base, prepared)
    return out


def _cells(report_dir: Path) -> list[dict]:
    return json.loads((report_dir / "report.json").read_text())["cells"]


def _refused(c: dict) -> bool:
    """A runtime that never computed the file: refused at load under a reviewed refusal
    entry whose features are the base model's (onnxruntime-web's WebGPU refuses RNN nodes)."""
    return (c["status"] == "xfail" and c["observed"] == "unsupported"
            and c["divergence"]["id"] in REFUSALS)


def _assert_all_fail(cells: list[dict], runtimes: list[str], what: str) -> None:
    assert {c["runtime"] for c in cells} == set(runtimes), what
    for c in cells:
        if _refused(c):
            continue
        assert c["status"] == "fail", (what, c["runtime"], c["case"], c["status"], c["message"])
        assert c["divergence"] is None, (what, c["runtime"], c["divergence"])


def test_features_of_the_wrong_models_are_their_bases(world):
    """The suite is honest: apart from the activation, no mutation adds a feature that a
    known divergence could match (so a `fail` is owed by every runtime)."""
    tanh = {model_features(str(p)) for n, (p, _, base, _) in world.items()
            if base == "tanh"}
    assert len(tanh) == 1 and "rnn-no-initial-h" not in next(iter(tanh))


def test_run_path(world, installed):
    prepared = [p for name in NAMES for p in world[name][3]]
    result = execute(prepared, installed, timeout=120)
    _assert_all_fail(result.cells, installed, "run")
    assert result.failed()
    # every runtime computes, and fails, some of them: none answers only with refusals
    assert {c["runtime"] for c in result.cells if c["status"] == "fail"} == set(installed)


@pytest.mark.parametrize("name", NAMES)
def test_check_path(name, world, installed, tmp_path):
    path, ckpt, base, _ = world[name]
    act = ["--nonlinearity", base] if base in ("tanh", "relu") else []
    rc = conformance_main(["check", str(path), "--checkpoint", str(ckpt), *act,
                           "--inputs", ",".join(f"{b}x{s}" for b, s in INPUTS),
                           "--runtimes", ",".join(installed), "--report-dir", str(tmp_path),
                           "--no-heatmap"])
    assert rc == 1
    _assert_all_fail(_cells(tmp_path), installed, f"check {name}")


@pytest.mark.parametrize("name", NAMES)
def test_replay_paths(name, world, installed, tmp_path):
    """`replay` in Python and the Node harness's own replay, on vectors named adversarially."""
    vectors = tmp_path / "vectors"
    write_vectors(world[name][3], vectors)
    assert (vectors / ADVERSARIAL_NAME / "model.onnx").is_file()
    rc = conformance_main(["replay", str(vectors), "--runtimes", ",".join(installed),
                           "--report-dir", str(tmp_path / "rep"), "--no-heatmap"])
    assert rc == 1
    _assert_all_fail(_cells(tmp_path / "rep"), installed, f"replay {name}")
    for backend, rt in HARNESS_BACKENDS.items():
        if rt not in installed or backend.startswith("chromium"):   # below, all in one replay
            continue
        r = subprocess.run(["node", str(HARNESS_DIR / "harness.mjs"), "replay", str(vectors),
                            "--backend", backend], capture_output=True, text=True, timeout=300)
        assert r.returncode == 1, (backend, r.stdout, r.stderr)
        lines = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
        assert len(lines) == len(INPUTS)
        # the harness is strict and knows no divergences: a session the backend refuses is
        # `unsupported` (never a pass); the GRU base runs everywhere, so there it must fail
        owed = ("fail",) if world[name][2] == "gru" else ("fail", "unsupported")
        assert all(line["status"] in owed and not line["ok"] for line in lines), (backend, lines)
        assert r.stdout.strip().endswith(f"0 passed, {len(INPUTS)} failed")


def test_browser_replays_fail_every_mutation(world, installed, tmp_path):
    """The Node harness's replay in a real Chromium, one browser per backend for all the
    wrong models (the opt-in JSEP variant too): every file fails, or is refused
    (unsupported) where the backend cannot run its base; the GRU base runs everywhere, so
    there it must fail."""
    flat = tmp_path / "flat"
    for name in NAMES:
        write_vectors(world[name][3], tmp_path / name)
        (tmp_path / name / ADVERSARIAL_NAME).rename(flat / name if flat.is_dir()
                                                    else (flat.mkdir() or flat / name))
    backends = [b for b, rt in HARNESS_BACKENDS.items() if b.startswith("chromium")
                and (rt in installed or load_runtime(rt).available() is None)]
    if not backends:
        pytest.skip("no browser runtime installed")
    for backend in backends:
        r = subprocess.run(["node", str(HARNESS_DIR / "harness.mjs"), "replay", str(flat),
                            "--backend", backend], capture_output=True, text=True, timeout=600)
        assert r.returncode == 1, (backend, r.stdout[-2000:], r.stderr)
        lines = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
        assert len(lines) == len(NAMES) * len(INPUTS), (backend, r.stdout[-2000:])
        for line in lines:
            name = next(n for n in NAMES if f"--{n}--" in line["case"])
            owed = ("fail",) if world[name][2] == "gru" else ("fail", "unsupported")
            assert line["status"] in owed and not line["ok"], (backend, line)
        assert r.stdout.strip().endswith(f"0 passed, {len(lines)} failed")


def test_a_name_cannot_change_a_verdict(world, installed, tmp_path):
    """The same wrong file under a plain name and under the adversarial one: same cells."""
    path, ckpt, base, _ = world["directions_swapped"]
    plain = tmp_path / "plain.onnx"
    plain.write_bytes(path.read_bytes())
    statuses = []
    for f in (plain, path):
        rep = tmp_path / f.stem
        rc = conformance_main(["check", str(f), "--checkpoint", str(ckpt), "--inputs", "3x9",
                               "--runtimes", ",".join(installed), "--report-dir", str(rep),
                               "--no-heatmap"])
        statuses.append((rc, [(c["runtime"], c["status"], c["observed"], c["divergence"])
                              for c in _cells(rep)]))
    assert statuses[0] == statuses[1] and statuses[0][0] == 1


@pytest.mark.parametrize("name,spec", [
    ("r_scaled", RNNSpec(10, 20, bidirectional=True)),
    ("gru_r_scaled", RNNSpec(10, 20, cell="gru", bidirectional=True))])
def test_the_unmutated_base_passes_everywhere(name, spec, world, installed, tmp_path):
    """The control: the same harness on the correct export passes (where the runtime runs
    it at all), so the fails above are the mutations' doing."""
    _, ckpt, _, prepared = world[name]
    module = spec.build_module(seed=7)
    good = tmp_path / f"{ADVERSARIAL_NAME}.onnx"
    onnx.save(export(module, target="none"), good)
    cases = [Prepared(p.case_id, p.model_id, str(good), p.feeds, p.f32, p.f64, p.labels)
             for p in prepared]
    result = execute(cases, installed, timeout=120)
    ran = [c for c in result.cells if not _refused(c)]
    assert {c["status"] for c in ran} == {"pass"}, [
        (c["runtime"], c["status"], c["message"]) for c in result.cells if c["status"] != "pass"]
    assert np.isfinite([c["max_abs_err"] for c in ran]).all()
    if spec.cell == "gru":       # the GRU base runs on every runtime: none may refuse it
        assert len(ran) == len(result.cells)
