"""Cases on disk in the ONNX backend test-data layout, written and replayed.

    <dir>/<model id>/model.onnx
    <dir>/<model id>/test_data_set_<k>/input_<i>.pb    TensorProto, graph input order
    <dir>/<model id>/test_data_set_<k>/output_<j>.pb   torch float32 answer, graph output order
    <dir>/<model id>/test_data_set_<k>/case.json       case id, names, tolerances
    <dir>/<model id>/truth_f64/test_data_set_<k>/output_<j>.pb   torch float64 answer
Any runtime's replayer (onnxruntime's onnx_test_runner, the Node harness) reads the first three.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from exporter.errors import ExportError

from .compare import tolerance_for
from .prepare import Prepared
from .tensors import read_tensors, write_tensors

__all__ = ["write_vectors", "read_vectors"]


def write_vectors(prepared: list[Prepared], out: Path) -> list[Path]:
    """Write every prepared case; returns the model folders. Every file is written atomically
    into real folders (exporter.files): a link planted in `out` is never written through."""
    from exporter.files import atomic_write, real_folder

    real_folder(out)
    folders: dict[str, Path] = {}
    counters: dict[str, int] = {}
    for p in prepared:
        if p.problem:
            continue
        folder = out / p.model_id
        if p.model_id not in folders:
            real_folder(folder)
            atomic_write(folder / "model.onnx", Path(p.model_path).read_bytes())
            folders[p.model_id] = folder
        k = counters[p.model_id] = counters.get(p.model_id, -1) + 1
        data = folder / f"test_data_set_{k}"
        write_tensors(data, "input", p.feeds)
        write_tensors(data, "output", p.f32)
        real_folder(folder / "truth_f64")
        write_tensors(folder / "truth_f64" / data.name, "output", p.f64)
        meta = {"case": p.case_id, "model": p.model_id, "inputs": list(p.feeds),
                "outputs": list(p.f32), "labels": p.labels,
                "tolerance": {name: vars(tolerance_for("*", name)) for name in p.f32}}
        atomic_write(data / "case.json", json.dumps(meta, indent=1).encode())
    return list(folders.values())


def _graph_names(model_path: Path) -> tuple[list[str], list[str]]:
    """The graph's input names (initializers excluded) and output names, in order."""
    import onnx
    try:
        graph = onnx.load(str(model_path), load_external_data=False).graph
    except Exception as exc:
        raise ValueError(f"{model_path}: not a readable ONNX model ({exc})") from None
    inits = {t.name for t in graph.initializer}
    return [i.name for i in graph.input if i.name not in inits], [o.name for o in graph.output]


def _read_set(folder: Path, data: Path, names: tuple[list[str], list[str]] | None,
              problem: str) -> Prepared:
    meta_file = data / "case.json"
    try:   # case.json names the case for the reports; no verdict depends on it
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    except (OSError, ValueError, RecursionError):     # unreadable, not JSON, nested too deep
        meta = {}
    if not isinstance(meta, dict):                     # a list, null, a number: no names
        meta = {}
    model = folder / "model.onnx"
    case = str(meta.get("case", f"{folder.name}--{data.name}"))
    feeds: dict = {}
    f32: dict = {}
    f64: dict = {}
    if not problem and names is not None:
        try:
            feeds = read_tensors(data, "input", names[0])
            f32 = read_tensors(data, "output", names[1])
            f64_dir = folder / "truth_f64" / data.name
            f64 = read_tensors(f64_dir, "output", names[1]) if f64_dir.is_dir() else f32
            if set(f64) != set(f32):
                raise ValueError(f"{f64_dir}: float64 truth for {sorted(f64)}, "
                                 f"float32 truth for {sorted(f32)}")
            for name in f32:
                if np.shape(f64[name]) != np.shape(f32[name]):
                    raise ValueError(f"{f64_dir}: float64 truth of {name} has shape "
                                     f"{list(np.shape(f64[name]))}, the float32 truth "
                                     f"{list(np.shape(f32[name]))}")
        except (OSError, ValueError) as exc:
            problem = f"unreadable test vectors: {exc}"
    return Prepared(case, str(meta.get("model", folder.name)), str(model), feeds, f32, f64,
                    meta.get("labels", {}) if isinstance(meta.get("labels"), dict) else {},
                    problem)


def read_vectors(root: Path) -> list[Prepared]:
    """Every case under `root` (a model folder, or a folder of model folders).

    Tensors are matched to the graph by name, or by position where unnamed. A folder whose
    files cannot be matched becomes an error cell; a set with no truth is judged (and fails:
    nothing to compare is never a pass)."""
    # absolute: every runtime's worker (and the Node harness) resolves the model's path from
    # its own working directory
    root = Path(root).absolute()
    if not root.is_dir():
        raise ExportError(f"no test vectors at {root}: not a folder")
    try:
        models = [root] if (root / "model.onnx").is_file() else sorted(
            p.parent for p in root.glob("*/model.onnx"))
    except OSError as exc:
        raise ExportError(f"cannot read {root}: {exc.strerror or exc}") from None
    if not models:
        raise ExportError(f"no test vectors under {root} (expected */model.onnx)")
    prepared = []
    for folder in models:
        try:
            prepared += _read_folder(folder)
        except OSError as exc:     # one unreadable folder is its own error cell, not the run's
            prepared.append(Prepared(f"{folder.name}--unreadable", folder.name,
                                     str(folder / "model.onnx"), {}, {}, {}, {},
                                     f"unreadable test vectors: {exc.strerror or exc}"))
    return prepared


def _read_folder(folder: Path) -> list[Prepared]:
    from exporter.files import external_data_files

    problem, names = "", None
    try:
        names = _graph_names(folder / "model.onnx")
        external_data_files(folder / "model.onnx")
    except (ValueError, ExportError) as exc:     # ExportError is a ValueError too
        problem = str(exc)
    sets = [d for d in folder.glob("test_data_set_*") if d.is_dir()]
    sets.sort(key=lambda p: (len(p.name), p.name))
    if not sets:
        return [Prepared(f"{folder.name}--no-data", folder.name, str(folder / "model.onnx"),
                         {}, {}, {}, {}, problem or "no test_data_set_* folder: nothing to check")]
    return [_read_set(folder, data, names, problem) for data in sets]
