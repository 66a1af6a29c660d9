"""OpenVINO's CPU plugin, reading the ONNX file through its ONNX frontend.

OpenVINO's CPU plugin computes in bf16 (or f16) by default on CPUs that support it, which is
not float32 conformance: this adapter asks for f32 (INFERENCE_PRECISION_HINT) and records both
the precision used and the default it overrode.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .base import Runtime

__all__ = ["OpenVINO"]

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

    def load(self, model_path: str) -> Any:
        import openvino as ov
        core = ov.Core()
        compiled = core.compile_model(core.read_model(model_path), self.device,
                                      {"INFERENCE_PRECISION_HINT": self.precision})
        used = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        if "float32" not in used and "f32" not in used:
            raise RuntimeError(f"OpenVINO ignored the f32 precision hint (runs {used})")
        return compiled

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
