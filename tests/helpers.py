"""Shared test helpers: real torch as ground truth, real onnxruntime, one tolerance rule."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch

from exporter.spec import RNNSpec

from conformance.compare import tolerance_for

# the default rule of conformance/tolerances.toml, the one source of the number
ATOL, RTOL = (lambda t: (t.atol, t.rtol))(tolerance_for("*", "*"))


def ort_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray],
            names: tuple[str, ...] = ("output", "h_n")) -> list[np.ndarray]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return sess.run(list(names), feeds)


def make_inputs(spec: RNNSpec, batch: int, seq: int, seed: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (batch, seq, spec.input_size) if spec.batch_first else (seq, batch, spec.input_size)
    x = torch.randn(shape, generator=g)
    h0 = torch.randn(spec.num_layers * spec.num_directions, batch, spec.hidden_size, generator=g)
    return x, h0


def torch_outputs(module: torch.nn.Module, x: torch.Tensor, h0: torch.Tensor | None
                  ) -> list[np.ndarray]:
    with torch.no_grad():
        out, hn = module(x) if h0 is None else module(x, h0)
    return [out.numpy(), hn.numpy()]


def feeds_for(x: torch.Tensor, h0: torch.Tensor | None) -> dict[str, np.ndarray]:
    feeds = {"input": x.numpy()}
    if h0 is not None:
        feeds["h_0"] = h0.numpy()
    return feeds


def assert_close(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    for name, a, b in zip(("output", "h_n"), got, want):
        assert a.shape == b.shape, f"{name}: shape {a.shape} != {b.shape}"
        bad = np.abs(a - b) > ATOL + RTOL * np.abs(b)
        assert not bad.any(), f"{name}: {bad.sum()} elements off, max err {np.abs(a - b).max()}"


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def run_module(module: str, *args: str, cwd, timeout: int = 600):
    """`python -m <module> args…` in a real subprocess, this checkout on PYTHONPATH."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def prepare_smoke_cases(workdir, *case_ids: str) -> list:
    """The smoke matrix's cases with exactly these ids, exported and with torch's answers."""
    from conformance.matrix import load_matrix
    from conformance.runner import prepare_matrix

    cases = [c for c in load_matrix("smoke") if c.id in case_ids]
    assert sorted(c.id for c in cases) == sorted(case_ids)
    return prepare_matrix(cases, workdir)


# the runtimes every verdict path is proven on, none needing a GPU (CI installs all of them):
# the six CPU runtimes, the C host's two, and onnxruntime-web in a real headless Chromium
# (WebAssembly, and WebGPU on SwiftShader's software adapter)
CPU_RUNTIMES = ["ort-cpu", "onnx-reference", "openvino", "tract", "ort-node", "ort-web",
                "openvino-c", "tract-c", "ort-web-chromium", "ort-webgpu-chromium"]


def installed_runtimes() -> list[str]:
    """The CPU runtimes installed here; in CI, missing one is a failure, not a skip."""
    import os

    from conformance.runtimes import load_runtime

    found = [rt for rt in CPU_RUNTIMES if load_runtime(rt).available() is None]
    if os.environ.get("CI"):
        missing = set(CPU_RUNTIMES) - set(found)
        assert not missing, f"CI installs every runtime; missing {missing}"
    return found
