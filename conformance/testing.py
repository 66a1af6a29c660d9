"""Assertions for a user's own test suite.

    from conformance.testing import assert_conforms

    def test_vad_runs_everywhere(tmp_path):
        model = VAD().eval()
        exporter.export(model, (frames, h, c), tmp_path / "vad.onnx")
        assert_conforms(model, tmp_path / "vad.onnx", runtimes="ort-cpu,openvino")
"""
from __future__ import annotations

from typing import Any

from .api import CheckResult, check_model

__all__ = ["assert_conforms"]


def assert_conforms(module: Any, model_path: Any, example_args: Any = None, **options: Any
                    ) -> CheckResult:
    """check_model(...), raising AssertionError with the runtime × case table when a cell
    fails (a wrong answer, an error, an unexplained divergence) or a required runtime is
    missing; returns the result otherwise."""
    __tracebackhide__ = True      # pytest: show the table, not this frame
    result = check_model(module, model_path, example_args, **options)
    if not result.ok:
        bad = len(result.failing())
        raise AssertionError(f"{model_path} does not conform ({bad} failing cell"
                             f"{'s' if bad != 1 else ''}):\n{result.table()}")
    return result
