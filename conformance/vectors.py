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
import shutil
from pathlib import Path

from exporter.errors import ExportError

from .compare import tolerance_for
from .runner import Prepared
from .tensors import read_tensors, write_tensors

__all__ = ["write_vectors", "read_vectors"]


def write_vectors(prepared: list[Prepared], out: Path) -> list[Path]:
    """Write every prepared case; returns the model folders."""
    folders: dict[str, Path] = {}
    counters: dict[str, int] = {}
    for p in prepared:
        if p.problem:
            continue
        folder = out / p.model_id
        if p.model_id not in folders:
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p.model_path, folder / "model.onnx")
            folders[p.model_id] = folder
        k = counters[p.model_id] = counters.get(p.model_id, -1) + 1
        data = folder / f"test_data_set_{k}"
        write_tensors(data, "input", p.feeds)
        write_tensors(data, "output", p.f32)
        write_tensors(folder / "truth_f64" / data.name, "output", p.f64)
        meta = {"case": p.case_id, "model": p.model_id, "inputs": list(p.feeds),
                "outputs": list(p.f32), "labels": p.labels,
                "tolerance": {name: vars(tolerance_for("*", name)) for name in p.f32}}
        (data / "case.json").write_text(json.dumps(meta, indent=1))
    return list(folders.values())


def read_vectors(root: Path) -> list[Prepared]:
    """Every case under `root` (a model folder, or a folder of model folders)."""
    root = Path(root)
    models = [root] if (root / "model.onnx").is_file() else sorted(
        p.parent for p in root.glob("*/model.onnx"))
    if not models:
        raise ExportError(f"no test vectors under {root} (expected */model.onnx)")
    prepared = []
    for folder in models:
        sets = sorted(folder.glob("test_data_set_*"), key=lambda p: int(p.name.rsplit("_", 1)[1]))
        for data in sets:
            meta_file = data / "case.json"
            meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
            f32 = read_tensors(data, "output")
            f64_dir = folder / "truth_f64" / data.name
            f64 = read_tensors(f64_dir, "output") if f64_dir.is_dir() else f32
            prepared.append(Prepared(meta.get("case", f"{folder.name}--{data.name}"),
                                     meta.get("model", folder.name), str(folder / "model.onnx"),
                                     read_tensors(data, "input"), f32, f64,
                                     meta.get("labels", {})))
    return prepared
