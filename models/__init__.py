"""Example models and named nn.RNN presets used by the tests and the conformance runner."""
from __future__ import annotations

from .composite import COMPOSITES, Composite
from .padded import PaddedSentenceClassifier
from .presets import PRESETS, preset
from .seed import SeedRNN

__all__ = ["PRESETS", "preset", "SeedRNN", "PaddedSentenceClassifier", "COMPOSITES", "Composite"]
