"""onnxruntime for JavaScript: onnxruntime-node (native) and onnxruntime-web (wasm), in Node.js.

The adapter starts conformance/node/harness.mjs once (`serve` mode) and talks JSON lines to it;
inputs travel as ONNX test-vector files (input_<k>.pb) that the harness reads from disk, the
same files `python -m conformance vectors` writes and `node harness.mjs replay` replays.
"""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..tensors import write_tensors
from .base import Runtime

__all__ = ["OrtNode", "OrtWeb", "HARNESS_DIR"]

HARNESS_DIR = Path(__file__).resolve().parents[1] / "node"
_INSTALL = (f"cd {HARNESS_DIR} && ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci "
            "(needs Node.js >= 18)")
_DTYPES = {"float32": np.float32, "float64": np.float64, "int32": np.int32, "int64": np.int64}


class OrtNode(Runtime):
    name = "ort-node"
    backend = "node"
    package = "onnxruntime-node"

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._version: str | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix=f"{self.name}-")

    def available(self) -> str | None:
        node = shutil.which("node")
        if node is None:
            return f"Node.js not found on PATH: install Node.js >= 18, then {_INSTALL}"
        if not (HARNESS_DIR / "node_modules" / self.package).is_dir():
            return f"{self.package} is not installed: {_INSTALL}"
        try:
            self._version = self._ask({"cmd": "hello"})["version"]
        except RuntimeError as exc:
            return f"the Node.js harness did not start: {exc}"
        return None

    def _start(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                ["node", str(HARNESS_DIR / "harness.mjs"), "serve", "--backend", self.backend],
                cwd=HARNESS_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, text=True, bufsize=1)
        return self._proc

    def _ask(self, msg: dict) -> dict:
        proc = self._start()
        proc.stdin.write(json.dumps(msg) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            code = proc.wait(5)
            raise RuntimeError(f"Node.js harness exited (code {code})")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(reply.get("error", "unknown harness error"))
        return reply

    def version(self) -> str:
        return self._version or self._ask({"cmd": "hello"})["version"]

    def load(self, model_path: str) -> Any:
        from exporter.files import external_data_files

        # onnxruntime-web cannot open files: the harness hands it each external-data file
        # (checked to lie inside the model's folder) as bytes
        self._ask({"cmd": "load", "model": model_path,
                   "external": external_data_files(model_path)})
        return model_path

    def run(self, session: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        dataset = Path(self._tmp.name) / "test_data_set_0"
        shutil.rmtree(dataset, ignore_errors=True)
        write_tensors(dataset, "input", dict(feeds))
        reply = self._ask({"cmd": "run", "model": session, "dataset": str(dataset)})
        return {o["name"]: np.frombuffer(base64.b64decode(o["data"]),
                                         _DTYPES[o["dtype"]]).reshape(o["dims"])
                for o in reply["outputs"]}

    def provider(self, session: Any) -> str:
        return f"{self.package} (cpu)" if self.backend == "node" else f"{self.package} (wasm)"

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._tmp.cleanup()


class OrtWeb(OrtNode):
    """onnxruntime-web's WebAssembly backend, run under Node.js (one thread)."""

    name = "ort-web"
    backend = "web"
    package = "onnxruntime-web"
