"""The Python front door of `check`: judge your own exported model against your torch module.

    import conformance
    result = conformance.check_model(model, "model.onnx", runtimes=["ort-cpu", "openvino"])
    assert result.ok, result.table()

Same pipeline as `python -m conformance check` (conformance/check.py): the same cases (each
symbolic batch / sequence size at 1, at the example and larger; stateful models streamed in
chunks), the same verdicts, divergences, diagnosis and reports.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from exporter.errors import ExportError

from .check import DEFAULT_CHUNKS, load_file, model_cases, whole_model
from .prepare import Prepared
from .runner import RunResult, execute
from .statuses import FAILING

__all__ = ["check_model", "CheckResult"]


@dataclass
class CheckResult:
    """Per runtime × case verdicts of one check."""

    run: RunResult
    prepared: list[Prepared]
    runtimes: list[str]
    required: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()

    @property
    def cells(self) -> list[dict[str, Any]]:
        return self.run.cells

    @property
    def ok(self) -> bool:
        """No failing cell, no missing required runtime, and something was checked."""
        return not self.run.failed(self.required)

    def failing(self) -> list[dict[str, Any]]:
        return [c for c in self.cells if c["status"] in FAILING]

    def worst(self) -> dict[str, dict[str, Any]]:
        """Per runtime, the judged cell with the largest error."""
        worst: dict[str, dict[str, Any]] = {}
        for c in self.cells:
            if c["max_abs_err"] is not None and (
                    c["runtime"] not in worst
                    or c["max_abs_err"] > worst[c["runtime"]]["max_abs_err"]):
                worst[c["runtime"]] = c
        return worst

    def table(self) -> str:
        """A runtime × case table: status and max abs error per cell, then what failed."""
        cases = list(dict.fromkeys(c["case"] for c in self.cells))
        by = {(c["case"], c["runtime"]): c for c in self.cells}
        width = max([len(c) for c in cases] + [4])
        cols = [max(len(rt), 16) for rt in self.runtimes]
        lines = [f"{'case':<{width}}  " + "  ".join(f"{rt:<{w}}" for rt, w in
                                                   zip(self.runtimes, cols))]
        for case in cases:
            row = []
            for rt, w in zip(self.runtimes, cols):
                c = by.get((case, rt))
                text = "–" if c is None else c["status"] + (
                    f" {c['max_abs_err']:.1e}" if c["max_abs_err"] is not None else "")
                row.append(f"{text:<{w}}")
            lines.append(f"{case:<{width}}  " + "  ".join(row))
        for c in self.failing():
            lines.append(f"{c['status']}: {c['runtime']} {c['case']}: {c['message']}"[:600])
        missing = [r for r in self.required if not self.run.runtimes.get(r, {}).get("available")]
        lines += [f"required runtime {r} is unavailable: "
                  f"{self.run.runtimes.get(r, {}).get('reason')}" for r in missing]
        return "\n".join(lines)

    def write_reports(self, directory: str | Path, heatmap: bool = False) -> list[Path]:
        """report.json, junit.xml, report.md (and heatmap.png) into `directory`."""
        from exporter.files import real_folder

        from .environment import environment
        from .report import build_report, write_reports

        real_folder(Path(directory))
        report = build_report(self.run, environment(), {"command": "check_model",
                                                        "matrix": "check_model"})
        return write_reports(report, Path(directory), heatmap=heatmap)


def _runtime_list(runtimes: str | Iterable[str]) -> list[str]:
    from .runtimes import installed, runtime_names

    if isinstance(runtimes, str):
        if runtimes == "installed":
            return installed() or ["ort-cpu"]
        return runtime_names(runtimes)
    names = list(runtimes)
    return runtime_names(",".join(names)) if names else []


def check_model(module: Any, model_path: str | Path, example_args: Sequence[Any] | None = None,
                *, runtimes: str | Iterable[str] = "installed",
                shapes: Sequence[Mapping[str, int]] | None = None,
                chunks: Sequence[int] = DEFAULT_CHUNKS, require: Iterable[str] = (),
                jobs: int = 1, timeout: float = 120.0, isolate: bool = True,
                diagnose: bool = True, report_dir: str | Path | None = None) -> CheckResult:
    """Judge the whole-model file `model_path` against `module` (in eval mode, the weights it
    was exported from) on `runtimes` ("installed", a comma-separated string or a list).

    A file this project's exporter wrote names its inputs, symbolic dims and state pairs;
    for another exporter's file pass `example_args` (the forward's arguments, matched to the
    graph's inputs by position). `shapes`: sizes of the symbolic dims per case (default: each
    batch / sequence dim at 1, at the example, and larger); `chunks`: streamed chunk sizes for
    models with state inputs and outputs (() for none). `diagnose` locates each failure (the
    first diverging recurrent module and step; with `report_dir` also a repro folder there,
    beside report.json, junit.xml and report.md).
    Raises ExportError for input that cannot be checked (a file that does not fit the module)."""
    import torch

    if not isinstance(module, torch.nn.Module):
        raise ExportError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    path = Path(model_path)
    model = load_file(path)
    examples = None
    if example_args is not None:
        from exporter.signature import flat_tensors
        leaves, _, tensors = flat_tensors(example_args if isinstance(example_args, (tuple, list))
                                          else (example_args,))
        examples = [leaves[i] for i in tensors]
    target = whole_model(path, model, module=module.eval(), examples=examples)
    skipped: list[str] = []
    prepared = model_cases(target, model, shapes=shapes, chunks=tuple(chunks), skipped=skipped)
    names = _runtime_list(runtimes)
    required = tuple(_runtime_list(list(require))) if require else ()
    names += [r for r in required if r not in names]
    result = execute(prepared, names, jobs=jobs, timeout=timeout, isolate=isolate)
    if diagnose:
        from .diagnose import diagnose as locate
        locate(result, prepared, target, Path(report_dir) if report_dir else None,
               timeout=timeout)
    out = CheckResult(result, prepared, names, required, tuple(skipped))
    if report_dir is not None:
        out.write_reports(report_dir)
    return out
