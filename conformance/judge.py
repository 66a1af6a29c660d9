"""The judge: one cell's verdict from a runtime's outcome, torch's answers and the known
divergences. Pure apart from the proof (mistakes.py), which reruns the file on onnxruntime."""
from __future__ import annotations

from typing import Any

import numpy as np

from .compare import compare, tolerance_for
from .diagnose import step_errors
from .divergences import Divergence, match
from .mistakes import Proof, prove
from .prepare import Prepared
from .runtimes import base_name
from .worker import Outcome

__all__ = ["classify", "judge_cell"]


def classify(status: str, entry: Divergence | None, proof: Proof | None = None
              ) -> tuple[str, str]:
    """Apply a known divergence strictly: (status, note). A wrong result (`fail`) is xfail
    only with a proof that the entry's mistake explains it (conformance/mistakes.py)."""
    if entry is None:
        return status, ""
    if status == "pass":
        return "xpass", f"known divergence {entry.id} no longer diverges: narrow or remove it"
    if status == "fail" and status in entry.statuses:
        if proof is None or not proof.holds:
            why = proof.note if proof is not None else "no proof was made"
            return "fail", f"known divergence {entry.id} does not explain this result: {why}"
        return "xfail", f"known divergence {entry.id}: {entry.summary} ({proof.note})"
    if status in entry.statuses:
        return "xfail", f"known divergence {entry.id}: {entry.summary}"
    return status, (f"known divergence {entry.id} expects {' or '.join(entry.kinds)}, "
                    f"observed {status}")


def _steps(p: Prepared, runtime: str, got: dict) -> dict[str, Any]:
    """For a wrong result: of the per-step outputs (those with a time axis) that are wrong,
    the one wrong earliest — its error per time step and the first step outside tolerance."""
    found: dict[str, Any] = {}
    for name, axis in p.time_axes.items():
        if name not in got or name not in p.f32 or np.shape(got[name]) != np.shape(p.f32[name]):
            continue
        tol = tolerance_for(base_name(runtime), name)
        per_step, first = step_errors(got[name], p.f32[name], axis, tol.atol, tol.rtol)
        if first is not None and (not found or first < found["first_bad_step"]):
            found = {"first_bad_step": first, "step_errors": per_step}
    return found


def judge_cell(p: Prepared, runtime: str, info: dict, outcome: Outcome | None,
          divergences: list[Divergence]) -> dict[str, Any]:
    cell: dict[str, Any] = {
        "case": p.case_id, "model": p.model_id, "runtime": runtime, "labels": p.labels,
        "exporter": p.exporter,
        "runtime_version": info.get("version"), "options": info.get("options", {}),
        "provider": None, "wall_s": None, "max_abs_err": None, "max_rel_err": None,
        "worst_output": None, "worst_index": None, "max_abs_err_f64": None,
        "torch_f32_err": None, "tolerance": None, "divergence": None, "message": "",
        "silently_wrong": False, "placement": None, "log": None,
        "first_bad_step": None, "step_errors": None, "diverged_at": None,
    }
    if outcome is None:
        cell.update(status="unavailable", observed="unavailable", message=info["reason"])
        return cell
    status = outcome.kind
    cell.update(provider=outcome.provider or None, wall_s=round(outcome.seconds, 6),
                message=outcome.message, placement=outcome.placement,
                log=outcome.log or None)
    if outcome.kind == "ok" or outcome.outputs:   # also a run that placed nodes where it must not: errors recorded
        cmp = compare(base_name(runtime), outcome.outputs, p.f32, p.f64)
        cell.update({k: v for k, v in cmp.as_dict().items() if k not in ("verdict", "message")})
        if outcome.kind == "ok":
            status = cmp.verdict
            cell["message"] = cmp.message
        if status == "fail":
            cell.update(_steps(p, runtime, outcome.outputs))
    cell["observed"] = status
    # a case its exporter could not export is judged only against export-failure entries:
    # no runtime ran it, so no runtime's divergence can explain it
    candidates = [e for e in divergences if ("export-failure" in e.kinds) == p.unexported]
    entry = match(candidates, base_name(runtime), info.get("version"), p.features(), p.exporter,
                  p.labels.get("onnxscript"), p.labels.get("exporter_torch"))
    proof = None
    # a streamed case's runtime answer depends on its own earlier chunks: no single rerun
    # replays it, so no proof is made and a wrong result stays `fail`
    if (entry is not None and status == "fail" and "wrong-result" in entry.kinds
            and p.stream is None):
        proof = prove(entry.computes, p.model_path, p.feeds, outcome.outputs, p.f32, p.f64,
                      base_name(runtime))
    cell["status"], note = classify(status, entry, proof)
    if entry is not None:
        cell["divergence"] = {"id": entry.id, "kind": entry.kind, "summary": entry.summary,
                              "citation": entry.citation}
    cell["message"] = "; ".join(m for m in (cell["message"], note) if m)
    # A wrong answer delivered without complaint is the dangerous kind: flag it apart.
    cell["silently_wrong"] = cell["observed"] == "fail"
    return cell


