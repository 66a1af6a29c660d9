"""tract (sonos/tract, a Rust inference engine) through its Python bindings.

The model is loaded once with its symbolic `seq` and `batch` dimensions left symbolic, as a
deployment would, and run at each case's shapes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .base import Runtime

__all__ = ["Tract"]


@dataclass
class _Session:
    inputs: list[str]
    outputs: list[str]
    runnable: Any


def _causes(exc: BaseException) -> str:
    """tract's error and its "Caused by" chain on one line (its first line alone, e.g.
    "running pass declutter", says nothing), without the Rust backtrace."""
    text = str(exc)
    head, _, rest = text.partition("Caused by:")
    rest = rest.split("Stack backtrace:")[0]
    causes = [ln.strip().split(": ", 1)[-1] if ln.strip()[:1].isdigit() else ln.strip()
              for ln in rest.splitlines() if ln.strip()]
    return "TractError: " + ": ".join([head.strip().splitlines()[0] if head.strip() else ""]
                                      + causes)


class Tract(Runtime):
    name = "tract"

    def available(self) -> str | None:
        try:
            import tract  # noqa: F401
        except ImportError as exc:
            return f"tract not importable ({exc}): pip install -e '.[tract]' (or: pip install tract)"
        return None

    def version(self) -> str:
        import tract
        return tract.version()

    def load(self, model_path: str) -> Any:
        try:
            return self._load(model_path)
        except Exception as exc:
            raise RuntimeError(_causes(exc)) from None

    def _load(self, model_path: str) -> Any:
        import onnx
        import tract
        model = tract.onnx().load(model_path)
        inputs = [model.input_name(i) for i in range(model.input_count())]
        # tract's output_name() gives the producing node's name, not the graph output's:
        # take the names, in order, from the ONNX graph itself.
        outputs = [o.name for o in onnx.load(model_path, load_external_data=False).graph.output]
        if len(outputs) != model.output_count():
            raise RuntimeError(f"tract sees {model.output_count()} outputs, the graph has "
                               f"{len(outputs)}")
        return _Session(inputs, outputs, model.into_model().into_runnable())

    def run(self, session: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            values = session.runnable.run([np.ascontiguousarray(feeds[n])
                                           for n in session.inputs])
        except Exception as exc:
            raise RuntimeError(_causes(exc)) from None
        return {name: v.to_numpy() for name, v in zip(session.outputs, values)}

    def provider(self, session: Any) -> str:
        return "cpu"
