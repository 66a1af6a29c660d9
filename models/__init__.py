"""Example models and named nn.RNN presets used by the tests and the conformance runner.

Attributes are imported on first use (PEP 562), so `models.presets` (and with it the CLIs'
`--help`) does not pay for importing torch."""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ["PRESETS", "preset", "SeedRNN", "PaddedSentenceClassifier", "COMPOSITES", "Composite"]

_WHERE = {"PRESETS": "presets", "preset": "presets", "SeedRNN": "seed",
          "PaddedSentenceClassifier": "padded", "COMPOSITES": "composite",
          "Composite": "composite"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
