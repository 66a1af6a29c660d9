"""Conformance runner: prove an exported RNN computes what torch computes, per runtime.

`conformance.check_model(module, "model.onnx")` judges a whole-model file against its torch
module on every installed runtime (conformance/api.py); `conformance.testing.assert_conforms`
raises with a runtime × case table; the pytest plugin gives one test item per runtime.
"""
from __future__ import annotations

from typing import Any

__all__ = ["__version__", "check_model", "CheckResult"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:      # lazily: `import conformance` stays light
    if name in ("check_model", "CheckResult"):
        from . import api
        return getattr(api, name)
    raise AttributeError(name)
