"""Errors of a runtime's outputs against torch, and the tolerances they are judged by."""
from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = ["Tolerance", "Comparison", "compare", "tolerance_for", "abs_errors",
           "TOLERANCES_FILE"]

TOLERANCES_FILE = Path(__file__).with_name("tolerances.toml")


@dataclass(frozen=True)
class Tolerance:
    """Element passes when |got − want| ≤ atol + rtol·|want| (numpy.isclose's rule)."""

    atol: float
    rtol: float


def _load_rules(path: Path = TOLERANCES_FILE) -> list[dict]:  # pragma: no mutate block
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
    verdict: str              # pass | fail | error (torch's own answer cannot be judged against)
    max_abs_err: float        # vs torch float32, worst over outputs
    max_rel_err: float        # |got − want| / |want| at non-zero want, worst over outputs
    worst_output: str | None
    worst_index: list[int] | None
    max_abs_err_f64: float    # vs torch float64
    torch_f32_err: float      # torch float32 vs float64: the float32 noise floor
    tolerance: dict[str, dict[str, float]]
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def as_dict(self) -> dict:
        return asdict(self)


def abs_errors(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Element-wise |got − want|, infinite wherever either side is not finite.

    Only called once `want` is known to be finite (float32 at most 3.4e38 in magnitude), so in
    float64 the difference neither overflows nor is ∞ − ∞; a NaN or ±Inf in `got` is never
    close."""
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    return np.where(np.isfinite(err), err, np.inf)


def _nonfinite(name: str, a: np.ndarray, who: str) -> str | None:
    bad = ~np.isfinite(a)
    if not bad.any():
        return None
    return (f"{who} {name} has {int(np.isnan(a).sum())} NaN and "
            f"{int(np.isinf(a).sum())} ±Inf of {a.size} elements")


def _structure(got: Mapping[str, np.ndarray], f32: Mapping[str, np.ndarray]) -> list[str]:
    """Every declared output needs a truth and every truth an output, same dtype and shape."""
    problems = []
    if not f32:
        problems.append("no truth to compare against: nothing was checked")
    problems += [f"{n} missing from the runtime's outputs" for n in f32 if n not in got]
    problems += [f"extra output {n} that torch does not produce" for n in got if n not in f32]
    for name in (n for n in f32 if n in got):
        a, want = np.asarray(got[name]), f32[name]
        if a.dtype != want.dtype:
            problems.append(f"{name} is {a.dtype}, torch {want.dtype}")
        elif a.shape != want.shape:
            problems.append(f"{name} has shape {list(a.shape)}, torch {list(want.shape)}")
    return problems


def compare(runtime: str, got: Mapping[str, np.ndarray], f32: Mapping[str, np.ndarray],
            f64: Mapping[str, np.ndarray]) -> Comparison:
    """Judge every output of `got` against torch float32; report float64 errors beside it.

    Not a pass: a missing, extra, re-typed or re-shaped output, any NaN/±Inf in the result,
    any element outside tolerance. Not judgeable (verdict `error`): a torch answer that is
    not finite itself, since no tolerance can say what matches NaN."""
    worst = dict(abs=0.0, rel=0.0, name=None, index=None, f64=0.0, floor=0.0)
    tolerances: dict[str, dict[str, float]] = {}
    untrusted = [m for n, w in f32.items() if (m := _nonfinite(n, w, "torch's answer"))]
    problems = _structure(got, f32)
    for name, want in f32.items():
        tol = tolerance_for(runtime, name)
        tolerances[name] = asdict(tol)
        a = np.asarray(got.get(name, np.empty(0)))
        if name not in got or a.shape != want.shape or not np.isfinite(want).all():
            continue
        if (m := _nonfinite(name, a, "the runtime's")):
            problems.append(m)
        err = abs_errors(a, want)
        bad = err > tol.atol + tol.rtol * np.abs(want)
        if bad.any() and not m:
            problems.append(f"{name}: {int(bad.sum())}/{bad.size} elements outside tolerance")
        if err.size and err.max() >= worst["abs"]:
            worst.update(abs=float(err.max()), name=name,
                         index=[int(i) for i in np.unravel_index(int(err.argmax()), err.shape)])
        nz = want != 0
        if nz.any():
            worst["rel"] = max(worst["rel"], float((err[nz] / np.abs(want[nz])).max()))
        if err.size and name in f64:
            worst["f64"] = max(worst["f64"], float(abs_errors(a, f64[name]).max()))
            worst["floor"] = max(worst["floor"], float(abs_errors(want, f64[name]).max()))
    if untrusted:
        verdict = "error"
        problems = [f"{m}: nothing to judge against" for m in untrusted] + problems
    else:
        verdict = "fail" if problems else "pass"
    return Comparison(verdict=verdict, max_abs_err=worst["abs"], max_rel_err=worst["rel"],
                      worst_output=worst["name"], worst_index=worst["index"],
                      max_abs_err_f64=worst["f64"], torch_f32_err=worst["floor"],
                      tolerance=tolerances, message="; ".join(problems))
