"""Conformance runner: prove an exported RNN computes what torch computes, per runtime."""
from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
