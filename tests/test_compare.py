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


def _one(got, want):
    g, w = np.array([got], np.float32), np.array([want], np.float32)
    return compare("ort-cpu", {"y": g}, {"y": w}, {"y": w.astype(np.float64)})


def test_nonfinite_truth_is_never_a_pass():
    """numpy.isclose's rule is never true-or-false for NaN/Inf truth: judged explicitly."""
    for got, want in [(123456.0, np.nan), (-np.inf, np.inf), (0.0, np.inf), (np.inf, np.inf),
                      (np.nan, np.nan), (1.0, -np.inf)]:
        c = _one(got, want)
        assert c.verdict == "error" and not c.passed, (got, want)
        assert "torch's answer y has" in c.message and "nothing to judge against" in c.message


def test_nonfinite_result_never_passes_a_finite_truth():
    for got in (np.nan, np.inf, -np.inf):
        c = _one(got, 1.0)
        assert c.verdict == "fail", got
        assert "the runtime's y has" in c.message
    assert _one(1.0, 1.0).verdict == "pass"


def test_every_output_needs_a_truth_and_every_truth_an_output():
    f32, f64 = _truth()
    extra = {**f32, "debug": np.zeros(3, np.float32)}
    c = compare("ort-cpu", extra, f32, f64)
    assert c.verdict == "fail" and "extra output debug" in c.message
    c = compare("ort-cpu", f32, {}, {})
    assert c.verdict == "fail" and "nothing was checked" in c.message


def test_output_dtype_must_be_torchs():
    f32, f64 = _truth()
    doubled = {k: v.astype(np.float64) for k, v in f32.items()}
    c = compare("ort-cpu", doubled, f32, f64)
    assert c.verdict == "fail" and "output is float64, torch float32" in c.message
