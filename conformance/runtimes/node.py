"""onnxruntime for JavaScript: onnxruntime-node (native) and onnxruntime-web (wasm) in Node.js,
and onnxruntime-web in a real headless Chromium: WebAssembly (`ort-web-chromium`), the native
WebGPU provider with no CPU fallback (`ort-webgpu-chromium`) and the default bundle's JSEP WebGPU
as a page gets it by default (`ort-webgpu-jsep-chromium`).

The adapter starts conformance/node/harness.mjs once (`serve` mode) and talks JSON lines to it;
inputs travel as ONNX test-vector files (input_<k>.pb) that the harness reads from disk, the
same files `python -m conformance vectors` writes and `node harness.mjs replay` replays.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..tensors import write_tensors
from .base import HELPER_DTYPES, HelperCrashed, Runtime, stop_helper

__all__ = ["OrtNode", "OrtWeb", "OrtWebChromium", "OrtWebGpuChromium", "OrtWebGpuJsepChromium",
           "HARNESS_DIR"]

HARNESS_DIR = Path(__file__).resolve().parents[1] / "node"
_INSTALL = (f"cd {HARNESS_DIR} && ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci "
            "(needs Node.js >= 18)")


class _Unavailable(RuntimeError):
    """The harness's hello: this backend cannot run here (no browser, no WebGPU adapter)."""


class OrtNode(Runtime):
    name = "ort-node"
    backend = "node"
    package = "onnxruntime-node"
    needs: tuple[str, ...] = ()       # further npm packages the backend loads

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._version: str | None = None
        self._provider: str | None = None
        self._broken: str | None = None
        self._placement: dict | None = None     # a device runtime's CPU nodes, if any
        self._tmp = tempfile.TemporaryDirectory(prefix=f"{self.name}-")

    def available(self) -> str | None:
        node = shutil.which("node")
        if node is None:
            return f"Node.js not found on PATH: install Node.js >= 18, then {_INSTALL}"
        from ..versions import site_for

        pinned_site = site_for(self.name)
        for package in (self.package, *self.needs):
            modules = (pinned_site if pinned_site and package == self.package
                       else HARNESS_DIR) / "node_modules"
            if not (modules / package).is_dir():
                return f"{package} is not installed in {modules.parent}: {_INSTALL}"
        try:
            hello = self._ask({"cmd": "hello"})
        except _Unavailable as exc:
            return str(exc)
        except RuntimeError as exc:
            # it is here but does not start (a browser that crashes): every cell an error
            self._broken = f"the harness did not start: {exc}"
            return None
        self._version, self._provider = hello["version"], hello.get("provider")
        return None

    def _env(self) -> dict[str, str]:
        from ..versions import site_for

        # ort-node@VERSION: the harness imports onnxruntime-node from that release's cache
        # folder (conformance/versions.py), never the one in conformance/node
        site = site_for(self.name)
        return {**os.environ, **({"CONFORMANCE_ORT_NODE_DIR": str(site)} if site else {})}

    def _start(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                ["node", str(HARNESS_DIR / "harness.mjs"), "serve", "--backend", self.backend],
                cwd=HARNESS_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, text=True, bufsize=1, env=self._env())
        return self._proc

    def _ask(self, msg: dict) -> dict:
        proc = self._start()
        proc.stdin.write(json.dumps(msg) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            code = proc.wait(5)
            raise HelperCrashed(f"Node.js harness exited (code {code})")
        reply = json.loads(line)
        if not reply.get("ok"):
            error = _Unavailable if reply.get("unavailable") else RuntimeError
            raise error(reply.get("error", "unknown harness error"))
        return reply

    def version(self) -> str:
        if self._broken:
            return "?"
        return self._version or self._ask({"cmd": "hello"})["version"]

    def load(self, model_path: str) -> Any:
        from exporter.files import external_data_files

        if self._broken:
            return model_path          # run() reports it: an error cell, not "unsupported"
        # onnxruntime-web cannot open files: the harness hands it each external-data file
        # (checked to lie inside the model's folder) as bytes
        reply = self._ask({"cmd": "load", "model": model_path,
                           "external": external_data_files(model_path)})
        self._placement = reply.get("placement")
        return model_path

    def run(self, session: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._broken:
            raise RuntimeError(self._broken)
        dataset = Path(self._tmp.name) / "test_data_set_0"
        shutil.rmtree(dataset, ignore_errors=True)
        write_tensors(dataset, "input", dict(feeds))
        reply = self._ask({"cmd": "run", "model": session, "dataset": str(dataset)})
        return {o["name"]: np.frombuffer(base64.b64decode(o["data"]),
                                         HELPER_DTYPES[o["dtype"]]).reshape(o["dims"])
                for o in reply["outputs"]}

    def provider(self, session: Any) -> str:
        return f"{self.package} ({self._provider or ('cpu' if self.backend == 'node' else 'wasm')})"

    def close(self) -> None:
        proc, self._proc = self._proc, None
        stop_helper(proc)
        self._tmp.cleanup()


class OrtWeb(OrtNode):
    """onnxruntime-web's WebAssembly backend, run under Node.js (one thread)."""

    name = "ort-web"
    backend = "web"
    package = "onnxruntime-web"


class OrtWebChromium(OrtNode):
    """onnxruntime-web's WebAssembly backend in a page of a real headless Chromium
    (conformance/node/browser.mjs), one thread."""

    name = "ort-web-chromium"
    backend = "chromium-wasm"
    package = "onnxruntime-web"
    needs = ("playwright-core",)

    def _env(self) -> dict[str, str]:
        from ..versions import cache_root

        # where the Chromium of @sparticuz/chromium is unpacked, once per release
        pkg = HARNESS_DIR / "node_modules" / "@sparticuz" / "chromium" / "package.json"
        release = json.loads(pkg.read_text())["version"] if pkg.is_file() else "none"
        return {**os.environ,
                "CONFORMANCE_BROWSER_DIR": str(cache_root() / "browser" / f"chromium-{release}")}


class OrtWebGpuChromium(OrtWebChromium):
    """onnxruntime-web's native WebGPU execution provider (the `onnxruntime-web/webgpu`
    bundle) in headless Chromium, on SwiftShader's software adapter where there is no GPU.
    CPU fallback is refused (`disable_cpu_ep_fallback`), as ort-cuda refuses it: a graph with
    a node WebGPU cannot run is `unsupported`, never a WebAssembly run under this name."""

    name = "ort-webgpu-chromium"
    backend = "chromium-webgpu"

    def placement(self, session: Any) -> dict[str, dict[str, int]] | None:
        """The nodes onnxruntime left to the CPU (from its log, when the strict session was
        refused and the page loaded the model again with the fallback allowed)."""
        if not self._placement:
            return None
        found: dict[str, dict[str, int]] = {}
        for node in self._placement["cpuNodes"]:
            slot = found.setdefault(node["op"], {})
            slot["CPUExecutionProvider"] = slot.get("CPUExecutionProvider", 0) + 1
        return found

    def load(self, model_path: str) -> Any:
        """A file whose recurrent nodes went to the CPU is refused here, naming them, before
        anything runs: a run would prove nothing about WebGPU (as ort-cuda's rule)."""
        from .ort import RECURRENT_OPS

        session = super().load(model_path)
        if self._placement:
            recurrent = [f"{n['op']} {n['name']}" for n in self._placement["cpuNodes"]
                         if n["op"] in RECURRENT_OPS]
            if recurrent:
                raise RuntimeError(f"{self._placement['refusal']} (no WebGPU kernel for: "
                                   f"{', '.join(recurrent)})")
        return session

    def placement_problem(self, session: Any) -> str | None:
        """As for ort-cuda: small shape computations may stay on the CPU (onnxruntime-web's
        WebGPU provider has no int64 Concat, say); a recurrent node may not (refused at load),
        and neither may a CPU node the log does not name."""
        if not self._placement:
            return None
        nodes = self._placement["cpuNodes"]
        count = self._placement.get("cpuCount")
        if count is None or count > len(nodes):
            return (f"ran partly on the CPU: {count if count is not None else 'some'} nodes on "
                    f"CPUExecutionProvider, {len(nodes)} of them named by onnxruntime's log")
        return None


class OrtWebGpuJsepChromium(OrtWebChromium):
    """The default `onnxruntime-web` bundle with executionProviders ['webgpu'] (JSEP), as a
    web page gets it without choosing a bundle; nodes JSEP cannot run fall back to
    WebAssembly, as they do for that page."""

    name = "ort-webgpu-jsep-chromium"
    backend = "chromium-jsep"
