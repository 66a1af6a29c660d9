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


class OpenVINO(Runtime):
    name = "openvino"
    device = "CPU"
    precision = "f32"

    def available(self) -> str | None:
        try:
            import openvino as ov
        except ImportError as exc:
            return f"openvino not importable ({exc}): {_INSTALL}"
        if self.device not in ov.Core().available_devices:
            return f"OpenVINO has no {self.device} device here"
        return None

    def version(self) -> str:
        import openvino as ov
        return ov.__version__.split("-")[0]

    def _compile(self, model: Any) -> Any:
        import openvino as ov
        compiled = ov.Core().compile_model(model, self.device,
                                           {"INFERENCE_PRECISION_HINT": self.precision})
        used = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        if "float32" not in used and "f32" not in used:
            raise RuntimeError(f"OpenVINO ignored the f32 precision hint (runs {used})")
        return compiled

    def load(self, model_path: str) -> Any:
        import openvino as ov
        return self._compile(ov.Core().read_model(model_path))

    def run(self, session: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = session.create_infer_request()
        results = request.infer(dict(feeds))
        return {out.get_any_name(): np.array(results[out]) for out in session.outputs}

    def provider(self, session: Any) -> str:
        return f"{self.device} ({session.get_property('INFERENCE_PRECISION_HINT')})"

    def options(self) -> dict[str, Any]:
        import openvino as ov
        core = ov.Core()
        default = core.get_property(self.device, "INFERENCE_PRECISION_HINT")
        return {"inference_precision": self.precision, "cpu_default_precision": str(default)}


class OpenVINOStatic(OpenVINO):
    """The same plugin with the model reshaped to each case's static input shapes before
    compiling (`model.reshape(...)`), as many OpenVINO deployments run. The CPU plugin's
    recurrent nodes take sequence_lens into account only for static shapes
    (`RNN::isSupportedOperation` in intel_cpu/src/nodes/rnn.cpp; openvinotoolkit/openvino
    PR #10710), so this deployment mode is its own runtime in the matrix."""

    name = "openvino-static"

    def load(self, model_path: str) -> Any:
        import openvino as ov
        ov.Core().read_model(model_path)            # refusals show at load, like the others
        return {"path": model_path, "compiled": {}}

    def run(self, session: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import openvino as ov
        key = tuple((k, tuple(v.shape)) for k, v in feeds.items())
        if key not in session["compiled"]:
            model = ov.Core().read_model(session["path"])
            model.reshape({name: ov.PartialShape(list(shape)) for name, shape in key})
            session["compiled"] = {key: self._compile(model)}   # one shape at a time
        return super().run(session["compiled"][key], feeds)

    def provider(self, session: Any) -> str:
        return f"{self.device} (f32, static shapes)"
