"""Cases ready to run: each model exported once per exporter (seeded from its id), torch's
answers per case, and whatever could not be prepared as a problem of its own cells."""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from exporter.api import export
from exporter.graph import save_atomic

from .features import case_features
from .matrix import Case, CompositeCase, ModelCase
from .streaming import Stream
from .truth import check_case_size, make_feeds, torch_truth
from .worker import one_line

__all__ = ["Prepared", "prepare_matrix", "CONFIG_ONLY_FEATURES"]

CONFIG_ONLY_FEATURES = frozenset({"lstm-proj-size"})


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
    stream: Stream | None = None       # a streamed case: run chunk by chunk (feeds: chunk 0's)
    time_axes: dict[str, int] = field(default_factory=dict)  # per-step outputs' time axis

    def request(self) -> "dict[str, np.ndarray] | Stream":
        """What a runtime's worker is sent to run."""
        return self.stream if self.stream is not None else self.feeds

    def features(self) -> frozenset[str]:
        """What the model and these feeds are (read from the files, never from the ids; a
        generated torch.onnx case adds its matrix config, for what the file cannot show)."""
        if self.problem or not Path(self.model_path).is_file():
            return self.config_features
        # a file exists: its graph says what it is; the config adds only what no graph shows
        return case_features(self.model_path, self.feeds) | (self.config_features
                                                             & CONFIG_ONLY_FEATURES)


def _labels(case: Case) -> dict[str, Any]:
    return {**case.model.spec.config(), "initial_state": case.model.initial_state,
            "opset": case.model.opset, "batch_layout": case.model.batch_layout,
            "sequence_lens": case.model.sequence_lens, "lengths": case.inputs.lengths,
            "lowering": case.model.lowering, "target": case.model.target,
            # the lowering the case asked for ("rnn" where the target chose): the second
            # support table groups target files by what the user exported, not by what the
            # target built
            "case_lowering": case.model.lowering or "rnn",
            "batch": case.inputs.batch, "seq": case.inputs.seq}


def _prepare_composite(model_case: CompositeCase, group: Iterable[Case],
                       workdir: Path) -> list[Prepared]:
    """A whole model: exported at an example shape unlike any case's; truth from the module
    through the file's own signature (the `check` pipeline's), each case run whole and — for
    a model carrying its state in and out — streamed in chunks."""
    import torch

    from exporter.signature import read_signature
    from models.composite import COMPOSITES

    from .check import DEFAULT_CHUNKS, WholeModel, case_for, streamable

    comp = COMPOSITES[model_case.name]
    torch.manual_seed(model_case.seed)
    module = comp.build().eval()
    path = workdir / model_case.id / "model.onnx"
    example = comp.inputs(2, 5, np.random.default_rng(model_case.seed))
    problem, target, model = "", None, None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # verify=False: the cells below judge this file at every case's shape, the export's
        # own self-check only at two
        model = export(module, comp.call({k: torch.from_numpy(v) for k, v in example.items()}),
                       path, input_names=list(example), output_names=list(comp.outputs),
                       verify=False, **{"target": model_case.target, **comp.options()})
        target = WholeModel(path, module, read_signature(model))
    except Exception as exc:  # an exporter bug must show as error cells, not stop the run
        problem = f"export failed: {one_line(exc)}"
    prepared = []
    for case in group:
        labels = {"composite": comp.name, "batch": case.inputs.batch, "seq": case.inputs.seq,
                  "exporter": "ours", "target": model_case.target}
        feeds = comp.inputs(case.inputs.batch, case.inputs.seq, np.random.default_rng(case.seed))
        if target is None:
            prepared.append(Prepared(case.id, model_case.id, str(path), feeds, {}, {}, labels,
                                     problem))
            continue
        chunks = [None] + streamable(target.signature, case.inputs.seq, DEFAULT_CHUNKS)
        for chunk in chunks:
            case_id = case.id + (f"--stream{chunk}" if chunk else "")
            try:
                prepared.append(case_for(target, model, case_id, feeds, labels, chunk,
                                         model_case.id))
            except (Exception, MemoryError) as exc:   # this case only: the others still run
                prepared.append(Prepared(case_id, model_case.id, str(path), {}, {}, {},
                                         labels, f"preparation failed: {one_line(exc)}"))
    return prepared


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
        # what the file is: a target may have chosen another lowering than the case's
        labels["lowering"] = {p.key: p.value for p in model.metadata_props}.get("lowering")
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
    from .exporters import exporter_torch, exporter_version, structure, torch_export

    path = workdir / model_id / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    # the releases that wrote the file (a pinned export reports what it really imported)
    labels: dict[str, Any] = {"exporter": exporter, "lowering": None,
                              "onnxscript": exporter_version(exporter),
                              "exporter_torch": exporter_torch(exporter)}
    try:
        labels["export_s"] = round(torch_export(exporter, module, model_case.spec,
                                                model_case.initial_state == "input",
                                                model_case.sequence_lens, path,
                                                seed=model_case.seed, info=labels), 3)
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


