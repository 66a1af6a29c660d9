from __future__ import annotations

import numpy as np

from conformance.compare import compare, tolerance_for


def _truth():
    rng = np.random.default_rng(0)
    out = rng.standard_normal((4, 2, 3)).astype(np.float32)
    hn = rng.standard_normal((1, 2, 3)).astype(np.float32)
    f32 = {"output": out, "h_n": hn}
    return f32, {k: v.astype(np.float64) for k, v in f32.items()}


def test_exact_passes():
    f32, f64 = _truth()
    c = compare("ort-cpu", f32, f32, f64)
    assert c.passed and c.max_abs_err == 0.0
    assert c.tolerance["output"] == {"atol": 1e-5, "rtol": 1e-4}


def test_small_perturbation_fails_and_is_located():
    f32, f64 = _truth()
    got = {k: v.copy() for k, v in f32.items()}
    got["output"][2, 1, 0] += 1e-3
    c = compare("ort-cpu", got, f32, f64)
    assert not c.passed
    assert c.worst_output == "output" and c.worst_index == [2, 1, 0]
    assert abs(c.max_abs_err - 1e-3) < 1e-6
    assert "1/24 elements" in c.message


def test_nan_shape_and_missing_outputs_fail():
    f32, f64 = _truth()
    nan = {"output": np.full_like(f32["output"], np.nan), "h_n": f32["h_n"]}
    c = compare("ort-cpu", nan, f32, f64)
    assert not c.passed and c.max_abs_err == float("inf")
    c = compare("ort-cpu", {"output": f32["output"][:, :1], "h_n": f32["h_n"]}, f32, f64)
    assert not c.passed and "shape" in c.message
    c = compare("ort-cpu", {"output": f32["output"]}, f32, f64)
    assert not c.passed and "h_n missing" in c.message


def test_tolerances_are_data():
    assert tolerance_for("ort-cpu", "output").atol == 1e-5
    assert tolerance_for("ort-cuda-tf32", "h_n").atol > tolerance_for("ort-cuda", "h_n").atol
