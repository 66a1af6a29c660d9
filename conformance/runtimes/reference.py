"""onnx's pure-Python reference evaluator (onnx.reference.ReferenceEvaluator)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .base import Runtime

__all__ = ["Reference"]


class Reference(Runtime):
    name = "onnx-reference"

    def available(self) -> str | None:
        try:
            from onnx.reference import ReferenceEvaluator  # noqa: F401
        except ImportError as exc:
            return f"onnx.reference not importable ({exc}): pip install 'onnx>=1.13'"
        return None

    def version(self) -> str:
        import onnx
        return onnx.__version__

    def load(self, model_path: str) -> Any:
        from onnx.reference import ReferenceEvaluator
        return ReferenceEvaluator(model_path)

    def run(self, session: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = session.run(None, dict(feeds))
        return dict(zip(session.output_names, outs))

    def provider(self, session: Any) -> str:
        return "python"
