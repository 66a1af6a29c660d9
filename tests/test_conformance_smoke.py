"""The smoke matrix as parametrised pytest cases (one per case × runtime; xdist-friendly)."""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import pytest

from conformance.matrix import load_matrix
from conformance.runner import execute, prepare_matrix

CASES = load_matrix("smoke")
RUNTIMES = ["ort-cpu", "onnx-reference"]


@functools.lru_cache(maxsize=None)
def _prepared(case_id: str):
    case = next(c for c in CASES if c.id == case_id)
    return prepare_matrix([case], Path(tempfile.mkdtemp(prefix="smoke-")))


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_smoke(case_id, runtime):
    # a whole model carrying its state in and out is also streamed: one cell per chunk size
    cells = execute(_prepared(case_id), [runtime], isolate=False).cells
    assert cells
    for cell in cells:
        assert cell["status"] in ("pass", "xfail"), cell
        if cell["status"] == "xfail":
            assert cell["divergence"] and cell["observed"] != "pass"
