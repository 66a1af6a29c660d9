"""onnxruntime on its CPU and CUDA execution providers.

A CUDA cell must never be a CPU run in disguise: onnxruntime, asked for the CUDA provider
where CUDA is absent, quietly builds a CPU session. So the CUDA adapter lists only
CUDAExecutionProvider, sets session.disable_cpu_ep_fallback=1 (session creation fails if a node
would land on the CPU provider), and checks get_providers() afterwards.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .base import Runtime

__all__ = ["OrtCpu", "OrtCuda", "OrtCudaTF32"]

_INSTALL_GPU = "pip install onnxruntime-gpu (in place of onnxruntime) on a machine with CUDA"


class OrtCpu(Runtime):
    name = "ort-cpu"
    provider_name = "CPUExecutionProvider"

    def available(self) -> str | None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            return f"onnxruntime not importable ({exc}): pip install onnxruntime"
        if self.provider_name not in ort.get_available_providers():
            return f"onnxruntime {ort.__version__} has no {self.provider_name}"
        return None

    def version(self) -> str:
        import onnxruntime as ort
        return ort.__version__

    def _providers(self) -> list:
        return [self.provider_name]

    def _session_options(self) -> Any:
        import onnxruntime as ort
        # Refusals are reported in the cell; keep onnxruntime's own copy off the console.
        ort.set_default_logger_severity(4)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        return so

    def load(self, model_path: str) -> Any:
        import onnxruntime as ort
        sess = ort.InferenceSession(model_path, self._session_options(),
                                    providers=self._providers())
        got = sess.get_providers()
        if got[0] != self.provider_name:
            raise RuntimeError(f"session runs on {got}, not {self.provider_name}")
        return sess

    def run(self, session: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, dict(feeds))))

    def provider(self, session: Any) -> str:
        return ",".join(session.get_providers())


class OrtCuda(OrtCpu):
    name = "ort-cuda"
    provider_name = "CUDAExecutionProvider"
    tf32 = False

    def available(self) -> str | None:
        try:
            import torch  # noqa: F401  loads the CUDA/cuDNN libraries onnxruntime-gpu links to
        except ImportError:
            pass
        reason = super().available()
        if reason:
            return f"{reason}: {_INSTALL_GPU}"
        try:
            self._probe()
        except Exception as exc:  # no device, driver or library: not usable here
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return f"CUDAExecutionProvider cannot start a session: {first[:300]}"
        return None

    def _probe(self) -> None:
        from onnx import TensorProto, helper
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
        opsets = [helper.make_opsetid("", 17)]
        model = helper.make_model(graph, opset_imports=opsets,
                                  ir_version=helper.find_min_ir_version_for(opsets))
        import tempfile
        with tempfile.NamedTemporaryFile(suffix=".onnx") as fh:
            fh.write(model.SerializeToString())
            fh.flush()
            sess = self.load(fh.name)
        sess.run(None, {"x": np.ones(2, np.float32)})

    def _providers(self) -> list:
        return [(self.provider_name, {"use_tf32": "1" if self.tf32 else "0"})]

    def _session_options(self) -> Any:
        so = super()._session_options()
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        return so

    def load(self, model_path: str) -> Any:
        sess = super().load(model_path)
        if "CPUExecutionProvider" in sess.get_providers():
            raise RuntimeError(f"CPU provider present in CUDA session: {sess.get_providers()}")
        return sess

    def options(self) -> dict[str, Any]:
        return {"use_tf32": self.tf32, "disable_cpu_ep_fallback": True}


class OrtCudaTF32(OrtCuda):
    """The CUDA provider with TF32 matrix math allowed (onnxruntime's use_tf32=1)."""

    name = "ort-cuda-tf32"
    tf32 = True
