"""OpenVINO's CPU plugin, reading the ONNX file through its ONNX frontend.

OpenVINO's CPU plugin computes in bf16 (or f16) by default on CPUs that support it, which is
not float32 conformance: this adapter asks for f32 (INFERENCE_PRECISION_HINT) and records both
the precision used and the default it overrode.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .base import Runtime

__all__ = ["OpenVINO", "OpenVINOStatic"]

_INSTALL = "pip install -e '.[openvino]' (or: pip install openvino)"


def _graph_outputs(model_path: str) -> list[str]:
    import onnx
    return [o.name for o in onnx.load(model_path, load_external_data=False).graph.output]


class _Compiled:
    """A compiled model and the ONNX graph's output names: an OpenVINO output tensor can carry
    several names (after reshaping, e.g. "output" and "concat_2"), and get_any_name() may
    return either; the graph's own name is the one the runtime's answer is judged under."""

    def __init__(self, compiled: Any, outputs: list[str]) -> None:
        self.compiled, self.outputs = compiled, outputs

    def name(self, port: Any) -> str:
        names = port.get_names()
        return next((n for n in self.outputs if n in names), port.get_any_name())


class OpenVINO(Runtime):
    name = "openvino"
    device = "CPU"
    precision = "f32"

    def available(self) -> str | None:
        try:
            import openvino as ov
        except ImportError as exc:
            return f"openvino not importable ({exc}): {_INSTALL}"
        if self.device not in self.core().available_devices:
            return f"OpenVINO has no {self.device} device here"
        return None

    def version(self) -> str:
        import openvino as ov
        return ov.__version__.split("-")[0]

    _core: Any = None

    def core(self) -> Any:
        """One ov.Core per adapter (per worker process): creating and dropping a Core per
        model measured intermittent SIGSEGV/SIGABRT over thousands of compiles."""
        if self._core is None:
            import openvino as ov
            self._core = ov.Core()
        return self._core

    def _compile(self, model: Any) -> Any:
        compiled = self.core().compile_model(model, self.device,
                                             {"INFERENCE_PRECISION_HINT": self.precision})
        used = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        if "float32" not in used and "f32" not in used:
            raise RuntimeError(f"OpenVINO ignored the f32 precision hint (runs {used})")
        return compiled

    def load(self, model_path: str) -> Any:
        return _Compiled(self._compile(self.core().read_model(model_path)),
                         _graph_outputs(model_path))

    def run(self, session: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = session.compiled.create_infer_request()
        results = request.infer(dict(feeds))
        return {session.name(out): np.array(results[out]) for out in session.compiled.outputs}

    def provider(self, session: Any) -> str:
        return f"{self.device} ({session.compiled.get_property('INFERENCE_PRECISION_HINT')})"

    def options(self) -> dict[str, Any]:
        default = self.core().get_property(self.device, "INFERENCE_PRECISION_HINT")
        return {"inference_precision": self.precision, "cpu_default_precision": str(default)}


class OpenVINOStatic(OpenVINO):
    """The same plugin with the model reshaped to each case's static input shapes before
    compiling (`model.reshape(...)`), as many OpenVINO deployments run. The CPU plugin's
    recurrent nodes take sequence_lens into account only for static shapes
    (`RNN::isSupportedOperation` in intel_cpu/src/nodes/rnn.cpp), so this deployment mode is
    its own runtime in the matrix.

    Not in the default runtime sets: over a default-matrix run (2,190 reshape + compile +
    infer cycles in one process) 1 to 5 cells crash the worker (SIGSEGV, or SIGABRT with glibc's
    'munmap_chunk(): invalid pointer'), different ones each run, all so far batch-1
    bidirectional models; 300 cycles of one such model alone never crashed. Heap corruption in
    the plugin, not yet minimised: a crash is an `error` cell, and a rerun differs."""

    name = "openvino-static"

    def load(self, model_path: str) -> Any:
        self.core().read_model(model_path)          # refusals show at load, like the others
        return {"path": model_path, "compiled": {}, "outputs": _graph_outputs(model_path)}

    def run(self, session: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import openvino as ov
        key = tuple((k, tuple(v.shape)) for k, v in feeds.items())
        if key not in session["compiled"]:
            model = self.core().read_model(session["path"])
            model.reshape({name: ov.PartialShape(list(shape)) for name, shape in key})
            session["compiled"] = {key: _Compiled(self._compile(model), session["outputs"])}
        return super().run(session["compiled"][key], feeds)

    def provider(self, session: Any) -> str:
        return f"{self.device} (f32, static shapes)"
