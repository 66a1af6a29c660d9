"""Case × runtime → cell: prepare models and torch truth, run isolated, judge, classify."""
from __future__ import annotations

import itertools
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from exporter.api import export
from exporter.graph import save_atomic

from .compare import compare
from .divergences import Divergence, load_divergences, match
from .features import case_features
from .matrix import Case, CompositeCase
from .truth import make_feeds, module_truth, torch_truth
from .worker import InProcess, Outcome, Worker, one_line

__all__ = ["Prepared", "RunResult", "prepare_matrix", "execute", "FAILING", "STATUSES"]

STATUSES = ("pass", "fail", "error", "unsupported", "unavailable", "xfail", "xpass")
FAILING = frozenset({"fail", "error", "unsupported", "xpass"})


@dataclass
class Prepared:
    """One case ready to run: a model file, its feeds and torch's answers."""

    case_id: str
    model_id: str
    model_path: str
    feeds: dict[str, np.ndarray]
    f32: dict[str, np.ndarray] = field(default_factory=dict)
    f64: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, Any] = field(default_factory=dict)   # model axes, for reports
    problem: str = ""                                        # preparation failed: why

    def features(self) -> frozenset[str]:
        """What the model and these feeds are (read from the files, never from the ids)."""
        if self.problem or not Path(self.model_path).is_file():
            return frozenset()
        return case_features(self.model_path, self.feeds)


@dataclass
class RunResult:
    runtimes: dict[str, dict[str, Any]]
    cells: list[dict[str, Any]]
    seconds: float

    def counts(self) -> dict[str, int]:
        return {s: sum(c["status"] == s for c in self.cells) for s in STATUSES}

    def judged(self) -> int:
        """Cells that were actually checked (anything but unavailable)."""
        return sum(c["status"] != "unavailable" for c in self.cells)

    def failed(self, required: Iterable[str] = ()) -> bool:
        """A run is red on a failing cell, a missing required runtime, or when nothing at all
        was checked: a run that judged nothing proves nothing."""
        missing = [r for r in required if not self.runtimes.get(r, {}).get("available")]
        return (bool(missing) or any(c["status"] in FAILING for c in self.cells)
                or not self.judged())


def _labels(case: Case) -> dict[str, Any]:
    return {**case.model.spec.config(), "initial_state": case.model.initial_state,
            "opset": case.model.opset, "batch_layout": case.model.batch_layout,
            "sequence_lens": case.model.sequence_lens, "lengths": case.inputs.lengths,
            "lowering": case.model.lowering,
            "batch": case.inputs.batch, "seq": case.inputs.seq}


def _prepare_composite(model_case: CompositeCase, group: Iterable[Case],
                       workdir: Path) -> list[Prepared]:
    """A whole model: exported at an example shape unlike any case's, truth from the module."""
    import torch

    from models.composite import COMPOSITES

    comp = COMPOSITES[model_case.name]
    torch.manual_seed(model_case.seed)
    module = comp.build().eval()
    path = workdir / model_case.id / "model.onnx"
    example = comp.inputs(2, 5, np.random.default_rng(model_case.seed))
    problem = ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        export(module, tuple(torch.from_numpy(v) for v in example.values()), path,
               input_names=list(example), output_names=list(comp.outputs))
    except Exception as exc:  # an exporter bug must show as error cells, not stop the run
        problem = f"export failed: {one_line(exc)}"
    prepared = []
    for case in group:
        feeds = comp.inputs(case.inputs.batch, case.inputs.seq, np.random.default_rng(case.seed))
        f32, f64 = module_truth(module, feeds, comp.outputs)
        labels = {"composite": comp.name, "batch": case.inputs.batch, "seq": case.inputs.seq}
        prepared.append(Prepared(case.id, model_case.id, str(path), feeds, f32, f64, labels,
                                 problem))
    return prepared


def prepare_matrix(cases: list[Case], workdir: Path,
                   on_case: Callable[[int], None] | None = None) -> list[Prepared]:
    """Export every model once (seeded from its id) and compute torch's answers per case;
    `on_case(n)` is told each time n more cases are ready."""
    prepared: list[Prepared] = []
    for model_case, group in itertools.groupby(sorted(cases, key=lambda c: c.id),
                                               key=lambda c: c.model):
        if isinstance(model_case, CompositeCase):
            more = _prepare_composite(model_case, group, workdir)
            prepared += more
            if on_case:
                on_case(len(more))
            continue
        module = model_case.spec.build_module(seed=model_case.seed)
        path = workdir / model_case.id / "model.onnx"
        problem = ""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_atomic(export(module, **model_case.export_options()), path)
        except Exception as exc:  # an exporter bug must show as error cells, not stop the run
            problem = f"export failed: {one_line(exc)}"
        for case in group:
            feeds = make_feeds(case.model.spec, case.inputs.batch, case.inputs.seq,
                               case.model.initial_state == "input", case.seed,
                               case.inputs.lengths)
            f32, f64 = torch_truth(module, feeds)
            prepared.append(Prepared(case.id, model_case.id, str(path), feeds, f32, f64,
                                     _labels(case), problem))
            if on_case:
                on_case(1)
    return prepared


def _classify(status: str, entry: Divergence | None) -> tuple[str, str]:
    """Apply a known divergence strictly: (status, note)."""
    if entry is None:
        return status, ""
    if status == "pass":
        return "xpass", f"known divergence {entry.id} no longer diverges: narrow or remove it"
    if status in entry.statuses:
        return "xfail", f"known divergence {entry.id}: {entry.summary}"
    return status, (f"known divergence {entry.id} expects {' or '.join(entry.kinds)}, "
                    f"observed {status}")


def _cell(p: Prepared, runtime: str, info: dict, outcome: Outcome | None,
          divergences: list[Divergence]) -> dict[str, Any]:
    cell: dict[str, Any] = {
        "case": p.case_id, "model": p.model_id, "runtime": runtime, "labels": p.labels,
        "runtime_version": info.get("version"), "options": info.get("options", {}),
        "provider": None, "wall_s": None, "max_abs_err": None, "max_rel_err": None,
        "worst_output": None, "worst_index": None, "max_abs_err_f64": None,
        "torch_f32_err": None, "tolerance": None, "divergence": None, "message": "",
        "silently_wrong": False, "placement": None, "log": None,
    }
    if outcome is None:
        cell.update(status="unavailable", observed="unavailable", message=info["reason"])
        return cell
    status = outcome.kind
    cell.update(provider=outcome.provider or None, wall_s=round(outcome.seconds, 6),
                message=outcome.message, placement=outcome.placement,
                log=outcome.log or None)
    if outcome.kind == "ok" or outcome.outputs:   # also a run that placed nodes where it must not: errors recorded
        cmp = compare(runtime, outcome.outputs, p.f32, p.f64)
        cell.update({k: v for k, v in cmp.as_dict().items() if k not in ("verdict", "message")})
        if outcome.kind == "ok":
            status = cmp.verdict
            cell["message"] = cmp.message
    cell["observed"] = status
    entry = match(divergences, runtime, info.get("version"), p.features())
    cell["status"], note = _classify(status, entry)
    if entry is not None:
        cell["divergence"] = {"id": entry.id, "kind": entry.kind, "summary": entry.summary,
                              "citation": entry.citation}
    cell["message"] = "; ".join(m for m in (cell["message"], note) if m)
    # A wrong answer delivered without complaint is the dangerous kind: flag it apart.
    cell["silently_wrong"] = cell["observed"] == "fail"
    return cell


class _Pool:
    """Per-thread runner processes, one per runtime, all closed at the end."""

    def __init__(self, factory: Callable[[str], Any]) -> None:
        self._factory, self._local, self._all = factory, threading.local(), []
        self._lock = threading.Lock()

    def get(self, runtime: str) -> Any:
        hosts = self._local.__dict__.setdefault("hosts", {})
        if runtime not in hosts:
            hosts[runtime] = self._factory(runtime)
            with self._lock:
                self._all.append(hosts[runtime])
        return hosts[runtime]

    def close(self) -> None:
        for host in self._all:
            host.close()


def _describe(runtime: str, factory: Callable[[str], Any]) -> dict[str, Any]:
    host = factory(runtime)
    try:
        reason, version, options, error = host.describe()
    finally:
        host.close()
    return {"available": reason is None and error is None, "reason": reason, "error": error,
            "version": version, "options": options}


def execute(prepared: list[Prepared], runtimes: list[str], *, jobs: int = 1,
            timeout: float = 120.0, start_timeout: float = 120.0, isolate: bool = True,
            on_cell: Callable[[dict], None] | None = None,
            divergences: list[Divergence] | None = None) -> RunResult:
    """Run every prepared case on every runtime; cells come back in (case, runtime) order."""
    start = time.perf_counter()
    divergences = load_divergences() if divergences is None else divergences

    def factory(name: str) -> Any:
        return (Worker(name, timeout, start_timeout) if isolate
                else InProcess(name, timeout, start_timeout))

    infos = {rt: _describe(rt, factory) for rt in runtimes}
    # Cells are keyed by position, never by case id: ids come from files in replay, and two
    # sets claiming one id must still give two verdicts.
    groups = [(rt, [(k, p) for k, p in enumerate(prepared) if p.model_path == path])
              for rt in runtimes for path in dict.fromkeys(p.model_path for p in prepared)]
    pool = _Pool(factory)
    results: dict[tuple[int, str], dict] = {}

    def run_group(rt: str, items: list[tuple[int, Prepared]]) -> None:
        for k, p in items:
            outcome = None
            if infos[rt]["error"]:      # the adapter broke: every cell says so, never absent
                outcome = Outcome("error", message=infos[rt]["error"])
            elif infos[rt]["available"]:
                outcome = (Outcome("error", message=p.problem) if p.problem
                           else pool.get(rt).run(p.model_path, p.feeds))
            cell = _cell(p, rt, infos[rt], outcome, divergences)
            results[(k, rt)] = cell
            if on_cell:
                on_cell(cell)

    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
            for fut in [ex.submit(run_group, rt, items) for rt, items in groups]:
                fut.result()
    finally:
        pool.close()
    cells = [results[(k, rt)] for k in range(len(prepared)) for rt in runtimes]
    return RunResult(infos, cells, time.perf_counter() - start)


def temp_workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="conformance-")
