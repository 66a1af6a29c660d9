"""Errors of a runtime's outputs against torch, and the tolerances they are judged by."""
from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = ["Tolerance", "Comparison", "compare", "tolerance_for", "TOLERANCES_FILE"]

TOLERANCES_FILE = Path(__file__).with_name("tolerances.toml")


@dataclass(frozen=True)
class Tolerance:
    """Element passes when |got − want| ≤ atol + rtol·|want| (numpy.isclose's rule)."""

    atol: float
    rtol: float


def _load_rules(path: Path = TOLERANCES_FILE) -> list[dict]:
    return tomllib.loads(path.read_text())["tolerance"]


_RULES = _load_rules()


def tolerance_for(runtime: str, output: str, dtype: str = "float32") -> Tolerance:
    """The last rule in tolerances.toml whose dtype, runtime and output globs all match."""
    found = None
    for rule in _RULES:
        if all(fnmatch.fnmatchcase(v, rule.get(k, "*"))
               for k, v in (("dtype", dtype), ("runtime", runtime), ("output", output))):
            found = Tolerance(float(rule["atol"]), float(rule["rtol"]))
    if found is None:
        raise LookupError(f"no tolerance for {dtype}/{runtime}/{output} in {TOLERANCES_FILE}")
    return found


@dataclass(frozen=True)
class Comparison:
    passed: bool
    max_abs_err: float        # vs torch float32, worst over outputs
    max_rel_err: float        # |got − want| / |want| at non-zero want, worst over outputs
    worst_output: str | None
    worst_index: list[int] | None
    max_abs_err_f64: float    # vs torch float64
    torch_f32_err: float      # torch float32 vs float64: the float32 noise floor
    tolerance: dict[str, dict[str, float]]
    message: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _errors(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Element-wise |got − want|; a non-finite mismatch counts as infinite error."""
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    same_nonfinite = ~np.isfinite(want) & (got == want)
    return np.where(same_nonfinite, 0.0, np.where(np.isnan(err), np.inf, err))


def compare(runtime: str, got: Mapping[str, np.ndarray], f32: Mapping[str, np.ndarray],
            f64: Mapping[str, np.ndarray]) -> Comparison:
    """Judge every output of `got` against torch float32; report float64 errors beside it."""
    worst = dict(abs=0.0, rel=0.0, name=None, index=None, f64=0.0, floor=0.0)
    tolerances, problems = {}, []
    for name, want in f32.items():
        tol = tolerance_for(runtime, name)
        tolerances[name] = asdict(tol)
        if name not in got:
            problems.append(f"{name} missing")
            continue
        a = np.asarray(got[name])
        if a.shape != want.shape:
            problems.append(f"{name} has shape {list(a.shape)}, torch {list(want.shape)}")
            continue
        err = _errors(a, want)
        bad = err > tol.atol + tol.rtol * np.abs(want)
        if bad.any():
            problems.append(f"{name}: {int(bad.sum())}/{bad.size} elements outside tolerance")
        if err.size and err.max() >= worst["abs"]:
            worst.update(abs=float(err.max()), name=name,
                         index=[int(i) for i in np.unravel_index(int(err.argmax()), err.shape)])
        nz = want != 0
        if nz.any():
            worst["rel"] = max(worst["rel"], float((err[nz] / np.abs(want[nz])).max()))
        if err.size:
            worst["f64"] = max(worst["f64"], float(_errors(a, f64[name]).max()))
            worst["floor"] = max(worst["floor"], float(_errors(want, f64[name]).max()))
    return Comparison(passed=not problems, max_abs_err=worst["abs"], max_rel_err=worst["rel"],
                      worst_output=worst["name"], worst_index=worst["index"],
                      max_abs_err_f64=worst["f64"], torch_f32_err=worst["floor"],
                      tolerance=tolerances, message="; ".join(problems))
