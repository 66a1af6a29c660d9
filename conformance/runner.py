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
from .mistakes import Proof, prove
from .runtimes import base_name
from .matrix import Case, CompositeCase, ModelCase
from .truth import check_case_size, make_feeds, module_truth, torch_truth
from .worker import InProcess, Outcome, Worker, one_line

__all__ = ["Prepared", "RunResult", "prepare_matrix", "execute", "FAILING", "STATUSES"]

STATUSES = ("pass", "fail", "error", "unsupported", "unexported", "unavailable", "xfail", "xpass")
# unexported: the case's exporter produced no file (torch.onnx on the exporters axis)
FAILING = frozenset({"fail", "error", "unsupported", "unexported", "xpass"})


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
    exporter: str = "ours"                                   # who wrote the file
    unexported: bool = False           # the exporter refused: `problem` says why
    config_features: frozenset[str] = frozenset()   # for unexported cases: no graph to read

    def features(self) -> frozenset[str]:
        """What the model and these feeds are (read from the files, never from the ids; a
        generated torch.onnx case adds its matrix config, for what the file cannot show)."""
        if self.problem or not Path(self.model_path).is_file():
            return self.config_features
        # a file exists: its graph says what it is; the config adds only what no graph shows
        return case_features(self.model_path, self.feeds) | (self.config_features
                                                             & CONFIG_ONLY_FEATURES)


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
        # verify=False: the cells below judge this file at every case's shape, the export's
        # own self-check only at two
        export(module, tuple(torch.from_numpy(v) for v in example.values()), path,
               input_names=list(example), output_names=list(comp.outputs), verify=False)
    except Exception as exc:  # an exporter bug must show as error cells, not stop the run
        problem = f"export failed: {one_line(exc)}"
    prepared = []
    for case in group:
        labels = {"composite": comp.name, "batch": case.inputs.batch, "seq": case.inputs.seq,
                  "exporter": "ours"}
        try:
            feeds = comp.inputs(case.inputs.batch, case.inputs.seq,
                                np.random.default_rng(case.seed))
            f32, f64 = module_truth(module, feeds, comp.outputs)
        except (Exception, MemoryError) as exc:   # this case only: the others still run
            prepared.append(Prepared(case.id, model_case.id, str(path), {}, {}, {}, labels,
                                     f"preparation failed: {one_line(exc)}"))
            continue
        prepared.append(Prepared(case.id, model_case.id, str(path), feeds, f32, f64, labels,
                                 problem))
    return prepared


CONFIG_ONLY_FEATURES = frozenset({"lstm-proj-size"})


def _config_features(model_case: ModelCase) -> frozenset[str]:
    spec = model_case.spec
    feats = {f"{spec.cell_info.onnx_op.lower()}-op"}
    if model_case.sequence_lens:
        feats.add("rnn-sequence-lens")
    if model_case.initial_state == "zeros":
        feats.add("rnn-no-initial-h")
    if spec.proj_size:
        feats.add("lstm-proj-size")
    return frozenset(feats)


# (case, feeds, torch float32, torch float64, problem): one model group's inputs and answers,
# computed once and shared by every exporter of that model; a case that cannot be prepared
# (too large for this machine) has a problem and no tensors
Truths = list[tuple[Case, dict, dict, dict, str]]


def _truths(group: list[Case], module: Any) -> Truths:
    out = []
    for case in group:
        try:
            check_case_size(case.model.spec, case.inputs.batch, case.inputs.seq)
            feeds = make_feeds(case.model.spec, case.inputs.batch, case.inputs.seq,
                               case.model.initial_state == "input", case.seed,
                               case.inputs.lengths)
            out.append((case, feeds, *torch_truth(module, feeds), ""))
        except (Exception, MemoryError) as exc:
            out.append((case, {}, {}, {}, f"preparation failed: {one_line(exc)}"))
    return out


def _export_ours(model_case: ModelCase, module: Any, workdir: Path,
                 with_structure: bool) -> tuple[Path, str, dict]:
    """(path, problem, labels) of this project's export of one model."""
    path = workdir / model_case.id / "model.onnx"
    labels: dict[str, Any] = {"exporter": "ours"}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        # verify=False: this case's cells are the verification (the self-check runs two shapes)
        model = export(module, **model_case.export_options(), verify=False)
        labels["export_s"] = round(time.perf_counter() - start, 4)
        save_atomic(model, path)
        if with_structure:   # the exporters axis compares structure too
            from .exporters import structure
            labels.update(structure(path))
    except Exception as exc:  # an exporter bug must show as error cells, not stop the run
        return path, f"export failed: {one_line(exc)}", labels
    return path, "", labels


def _torch_model_id(model_case: ModelCase, exporter: str) -> str:
    """torch.onnx exports the torch module: our lowering, layout and opset do not apply, so
    the id is the rnn-lowering one, and models differing only in those share one export."""
    key = ModelCase(model_case.spec, model_case.initial_state, 17, "transpose",
                    model_case.sequence_lens, "rnn").id
    return f"{key}@{exporter}"


def _export_torch(model_case: ModelCase, module: Any, exporter: str, model_id: str,
                  workdir: Path) -> tuple[Path, str, dict]:
    """(path, problem, labels) of torch.onnx's export of one model (exporters.py)."""
    from .exporters import structure, torch_export

    path = workdir / model_id / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    labels: dict[str, Any] = {"exporter": exporter, "lowering": None}
    try:
        labels["export_s"] = round(torch_export(exporter, module, model_case.spec,
                                                model_case.initial_state == "input",
                                                model_case.sequence_lens, path), 3)
        labels.update(structure(path))
    except Exception as exc:      # the exporter's failure is this case's verdict
        return path, f"export failed: {one_line(exc)}", labels
    return path, "", labels


def _torch_eligible(model_case: ModelCase) -> bool:
    """torch.onnx exports the torch module: no lowering, layout or opset of ours to vary."""
    return model_case.batch_layout == "transpose" and model_case.opset == 17


def prepare_matrix(cases: list[Case], workdir: Path,
                   on_case: Callable[[int], None] | None = None,
                   exporters: Iterable[str] = ("ours",)) -> list[Prepared]:
    """Export every model once per exporter (seeded from its id) and compute torch's answers
    per case, once for all exporters; `on_case(n)` is told each time n more of the
    len(cases) × len(exporters) steps are done (a torch.onnx export that is skipped or shared
    counts as done).
    A model that cannot even be built or fed (too large for this machine, say) becomes error
    cells of its own: one bad case never costs the run its report."""
    exporters = list(exporters)
    prepared: list[Prepared] = []
    torch_done: set[str] = set()   # torch exports shared by models differing only in ours' options
    for model_case, group in itertools.groupby(sorted(cases, key=lambda c: c.id),
                                               key=lambda c: c.model):
        group = list(group)
        try:
            more = _prepare_model(model_case, group, workdir, exporters, torch_done)
        except (Exception, MemoryError) as exc:
            more = [Prepared(case.id, model_case.id, str(workdir / model_case.id / "model.onnx"),
                             {}, labels={"exporter": "ours"},
                             problem=f"preparation failed: {one_line(exc)}") for case in group]
        prepared += more
        if on_case:      # one step per case and exporter, skipped and shared exports too,
            on_case(len(group) * len(exporters))   # so the bar ends at its total
    return prepared


def _prepare_model(model_case: ModelCase | CompositeCase, group: list[Case], workdir: Path,
                   exporters: list[str], torch_done: set[str]) -> list[Prepared]:
    """One model's cases for every exporter."""
    if isinstance(model_case, CompositeCase):
        return _prepare_composite(model_case, group, workdir) if "ours" in exporters else []
    module = model_case.spec.build_module(seed=model_case.seed)
    truths: Truths | None = None
    prepared: list[Prepared] = []
    for exporter in exporters:
        if exporter == "ours":
            path, problem, labels = _export_ours(model_case, module, workdir, len(exporters) > 1)
            model_id, unexported, config = model_case.id, False, frozenset()
        elif not _torch_eligible(model_case):
            continue
        else:
            model_id = _torch_model_id(model_case, exporter)
            if model_id in torch_done:
                continue
            torch_done.add(model_id)
            path, problem, labels = _export_torch(model_case, module, exporter, model_id,
                                                  workdir)
            unexported, config = bool(problem), _config_features(model_case)
        truths = truths if truths is not None else _truths(group, module)
        for case, feeds, f32, f64, unprepared in truths:
            case_id = case.id if exporter == "ours" else f"{model_id}--{case.inputs.id}"
            prepared.append(Prepared(case_id, model_id, str(path), feeds, f32, f64,
                                     {**_labels(case), **labels}, unprepared or problem,
                                     exporter, unexported and not unprepared, config))
    return prepared


def _classify(status: str, entry: Divergence | None, proof: Proof | None = None
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


def _cell(p: Prepared, runtime: str, info: dict, outcome: Outcome | None,
          divergences: list[Divergence]) -> dict[str, Any]:
    cell: dict[str, Any] = {
        "case": p.case_id, "model": p.model_id, "runtime": runtime, "labels": p.labels,
        "exporter": p.exporter,
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
        cmp = compare(base_name(runtime), outcome.outputs, p.f32, p.f64)
        cell.update({k: v for k, v in cmp.as_dict().items() if k not in ("verdict", "message")})
        if outcome.kind == "ok":
            status = cmp.verdict
            cell["message"] = cmp.message
    cell["observed"] = status
    # a case its exporter could not export is judged only against export-failure entries:
    # no runtime ran it, so no runtime's divergence can explain it
    candidates = [e for e in divergences if ("export-failure" in e.kinds) == p.unexported]
    entry = match(candidates, base_name(runtime), info.get("version"), p.features(), p.exporter)
    proof = None
    if entry is not None and status == "fail" and "wrong-result" in entry.kinds:
        proof = prove(entry.computes, p.model_path, p.feeds, outcome.outputs, p.f32, p.f64,
                      base_name(runtime))
    cell["status"], note = _classify(status, entry, proof)
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

    from .versions import ensure_installed
    for rt in runtimes:
        if "@" in rt:
            ensure_installed(rt)
    infos = {rt: _describe(rt, factory) for rt in runtimes}
    # Cells are keyed by position, never by case id: ids come from files in replay, and two
    # sets claiming one id must still give two verdicts.
    by_path: dict[str, list[tuple[int, Prepared]]] = {}      # one file's cases, in order
    for k, p in enumerate(prepared):
        by_path.setdefault(p.model_path, []).append((k, p))
    groups = [(rt, items) for rt in runtimes for items in by_path.values()]
    pool = _Pool(factory)
    results: dict[tuple[int, str], dict] = {}

    def run_group(rt: str, items: list[tuple[int, Prepared]]) -> None:
        for k, p in items:
            outcome = None
            if infos[rt]["error"]:      # the adapter broke: every cell says so, never absent
                outcome = Outcome("error", message=infos[rt]["error"])
            elif infos[rt]["available"]:
                outcome = (Outcome("unexported" if p.unexported else "error", message=p.problem)
                           if p.problem else pool.get(rt).run(p.model_path, p.feeds))
            cell = _cell(p, rt, infos[rt], outcome, divergences)
            results[(k, rt)] = cell
            if on_cell:
                on_cell(cell)

    ex = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        for fut in [ex.submit(run_group, rt, items) for rt, items in groups]:
            fut.result()
    except BaseException:   # Ctrl-C, SIGTERM, a bug: start no more cells, end the workers
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        pool.close()        # closes every worker, so cells still running end at once
        ex.shutdown(wait=True)
    cells = [results[(k, rt)] for k in range(len(prepared)) for rt in runtimes]
    return RunResult(infos, cells, time.perf_counter() - start)


def temp_workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="conformance-")
