"""Where a failing cell diverges.

* Per step (every failing cell whose worst output has a time axis): the error of each time
  step, and the first step outside tolerance — a runtime that starts right and drifts reads
  differently from one wrong from step 0 (a misread weight, a wrong initial state).
* Per recurrent module (whole models): the way Polygraphy's "mark all" bisects, every recurrent
  module's input, output and states (the tensors named in the file's signature) become extra
  graph outputs; the failing runtime runs that file on the case's inputs, torch runs the module
  with forward hooks on the same modules, and the first module (in call order) whose input
  agrees but whose output does not is the one that diverges. Its node(s) are cut out as an
  ONNX file of their own with torch's tensors as test vectors — a repro folder ready for a
  runtime's issue tracker, replayed with `python -m conformance replay FOLDER`.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnx

from exporter.signature import RNNEdges

from .compare import abs_errors, tolerance_for

__all__ = ["step_errors", "diagnose", "mark_outputs", "module_captures", "SPARK"]

SPARK = "▁▂▃▄▅▆▇█"
_MAX_STEPS = 512      # per-step errors kept in a report cell


def step_errors(got: np.ndarray, want: np.ndarray, axis: int, atol: float, rtol: float
                ) -> tuple[list[float], int | None]:
    """(max |got − want| per time step, the first step with an element outside tolerance)."""
    got, want = np.moveaxis(np.asarray(got), axis, 0), np.moveaxis(np.asarray(want), axis, 0)
    with np.errstate(invalid="ignore"):             # ∞ − ∞ in a runtime's answer
        err = abs_errors(got, want).reshape(len(want), -1)
    bad = (err > atol + rtol * np.abs(want.astype(np.float64)).reshape(len(want), -1)).any(axis=1)
    per_step = [float(e.max()) if e.size else 0.0 for e in err]
    first = int(np.argmax(bad)) if bad.any() else None
    return per_step[:_MAX_STEPS], first


def sparkline(values: Sequence[float], width: int = 40) -> str:
    """A small plot of per-step errors on a log scale (one character per step, or per group
    of steps beyond `width`)."""
    if not values:
        return ""
    groups = [values[i:i + max(1, -(-len(values) // width))]
              for i in range(0, len(values), max(1, -(-len(values) // width)))]
    peaks = [max(g) for g in groups]
    logs = [np.log10(p) if p > 0 and np.isfinite(p) else (-12.0 if p == 0 else 6.0)
            for p in peaks]
    lo, hi = min(logs), max(logs)
    span = (hi - lo) or 1.0
    return "".join(SPARK[int((v - lo) / span * (len(SPARK) - 1))] for v in logs)


# ---- which recurrent module -------------------------------------------------------------

_INPUT_ROLES = ("input", "h_0", "c_0")     # a module's tensors on the way in


def _tensor_names(edge: RNNEdges) -> list[tuple[str, str]]:
    """(role, graph tensor) of one module call: input, states in, output, states out."""
    states = ("h_0", "c_0")
    finals = ("h_n", "c_n")
    return ([("input", edge.input)] + list(zip(states, edge.states_in))
            + [("output", edge.output)] + list(zip(finals, edge.states_out)))


def mark_outputs(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """A copy of `model` with `names` added as graph outputs (type from the graph where known,
    float otherwise)."""
    from onnx import TensorProto, helper

    marked = copy.deepcopy(model)
    g = marked.graph
    have = {o.name for o in g.output}
    known = {vi.name: vi for vi in (*g.input, *g.value_info, *g.output)}
    for name in names:
        if name in have:
            continue
        elem = known[name].type.tensor_type.elem_type if name in known else TensorProto.FLOAT
        g.output.append(helper.make_tensor_value_info(name, elem, None))
        have.add(name)
    return marked


def module_captures(module: Any, edges: Sequence[RNNEdges], run: Any
                    ) -> dict[str, np.ndarray]:
    """torch's tensors at each recurrent module call (forward hooks), keyed by the graph
    tensor names of `edges` (matched by module path and call order)."""
    calls: dict[str, list[tuple[Any, Any]]] = {}

    def hook(path: str) -> Any:
        def record(_: Any, args: tuple, out: Any) -> None:
            calls.setdefault(path, []).append((args, out))
        return record

    handles = [module.get_submodule(path).register_forward_hook(hook(path))
               for path in dict.fromkeys(e.path for e in edges)]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    captured: dict[str, np.ndarray] = {}
    seen: dict[str, int] = {}
    for edge in edges:
        k = seen[edge.path] = seen.get(edge.path, -1) + 1
        if k >= len(calls.get(edge.path, [])):
            continue
        args, (y, state) = calls[edge.path][k]
        state_in = args[1] if len(args) > 1 else None
        ins = list(state_in) if isinstance(state_in, tuple) else (
            [state_in] if state_in is not None else [])
        outs = list(state) if isinstance(state, tuple) else [state]
        values = [args[0], *ins, y, *outs]
        for (_, name), value in zip(_tensor_names(edge), values):
            captured.setdefault(name, value.detach().numpy().astype(np.float32))
    return captured


def _first_divergence(edges: Sequence[RNNEdges], got: Mapping[str, np.ndarray],
                      want: Mapping[str, np.ndarray], runtime: str) -> dict | None:
    """The first module call, in order, whose tensors the runtime gets wrong: where its
    input is already wrong the divergence came from before it."""
    from .runtimes import base_name

    for edge in edges:
        for role, name in _tensor_names(edge):
            if name not in got or name not in want:
                continue
            a, w = np.asarray(got[name]), want[name]
            at = {"module": edge.path, "tensor": role, "graph_tensor": name,
                  "where": "input" if role in _INPUT_ROLES else "module"}
            if a.shape != w.shape:
                return {**at, "message": f"shape {list(a.shape)}, torch {list(w.shape)}"}
            tol = tolerance_for(base_name(runtime), role)
            with np.errstate(invalid="ignore"):
                err = abs_errors(a, w)
            if (err > tol.atol + tol.rtol * np.abs(w.astype(np.float64))).any():
                found = {**at, "max_abs_err": float(err.max())}
                if edge.output in got and edge.output in want:   # the module's own steps
                    found["first_bad_step"] = step_errors(
                        got[edge.output], want[edge.output], edge.time_axis, tol.atol,
                        tol.rtol)[1]
                return found
    return None


def _name_leading_dims(vi: onnx.ValueInfoProto, time_axis: int) -> None:
    """The cut's input as the recurrent module sees it: [seq, batch, F] (or [batch, seq, F]);
    shape inference leaves those two as unrelated unknowns, which some runtimes (tract)
    cannot load."""
    dims = vi.type.tensor_type.shape.dim
    for axis, word in ((time_axis, "seq"), (1 - time_axis, "batch")):
        if axis < len(dims) and not dims[axis].HasField("dim_value"):
            dims[axis].dim_param = word


def _repro(model: onnx.ModelProto, edge: RNNEdges, want: Mapping[str, np.ndarray],
           folder: Path, runtime: str, version: str | None) -> Path:
    """The diverging module's nodes as an ONNX file of their own, torch's tensors at its edge
    as an ONNX test-data set, a README with versions and the replay command."""
    import onnx.utils
    from onnx import numpy_helper

    from exporter.files import atomic_write, real_folder

    from .environment import environment

    names = _tensor_names(edge)
    ins = [n for role, n in names if role in _INPUT_ROLES]
    outs = [n for role, n in names if role not in _INPUT_ROLES]
    full = copy.deepcopy(model)
    full.graph.ClearField("value_info")     # the extractor needs every cut tensor's type
    full = onnx.shape_inference.infer_shapes(full)
    sub = onnx.utils.Extractor(full).extract_model(ins, outs)
    _name_leading_dims(sub.graph.input[0], edge.time_axis)
    # the inferred value_info repeats the cut's edges with unrelated unknown dims, which tract
    # takes over the inputs' own declarations
    sub.graph.ClearField("value_info")
    real_folder(folder)
    data = real_folder(folder / "test_data_set_0")
    atomic_write(folder / "model.onnx", sub.SerializeToString())
    for k, name in enumerate(ins):
        atomic_write(data / f"input_{k}.pb",
                     numpy_helper.from_array(want[name], name).SerializeToString())
    for k, name in enumerate(outs):
        atomic_write(data / f"output_{k}.pb",
                     numpy_helper.from_array(want[name], name).SerializeToString())
    env = environment()
    text = (f"# Repro: `{edge.path}` diverges on {runtime} {version or ''}\n\n"
            f"`model.onnx` is the module's recurrent node(s) alone; `test_data_set_0` holds "
            f"torch's input and output tensors at that module ({', '.join(ins)} → "
            f"{', '.join(outs)}).\n\n"
            f"    python -m conformance replay {folder.name} --runtimes {runtime}\n\n"
            f"torch {env['torch']}, onnx {env['onnx']}, onnxruntime {env.get('onnxruntime')}, "
            f"python {env['python']}, {env['cpu']}\n")
    atomic_write(folder / "README.md", text.encode())
    return folder


def diagnose(result: Any, prepared: Sequence[Any], target: Any, report_dir: Path | None,
             timeout: float = 120.0) -> None:
    """For each failing whole-model cell (not streamed): the first diverging recurrent module,
    into the cell (`diverged_at`), and — with a report_dir — a repro folder under
    report_dir/repro/."""
    import tempfile

    from .worker import Worker

    edges = target.signature.rnn_modules
    failing = [(k, c) for k, c in enumerate(result.cells)
               if c["status"] in ("fail", "error") and c["observed"] == "fail"]
    if not edges or not failing:
        return
    by_case = {p.case_id: p for p in prepared}
    model = onnx.load(str(target.path))
    names = [n for e in edges for _, n in _tensor_names(e)]
    with tempfile.TemporaryDirectory(prefix="conformance-diagnose-") as tmp:
        marked_path = Path(tmp) / "marked.onnx"
        onnx.save(mark_outputs(model, names), str(marked_path))
        workers: dict[str, Any] = {}
        try:
            for _, cell in failing:
                p = by_case.get(cell["case"])
                if p is None or p.stream is not None:
                    continue
                want = _torch_at_modules(target, p.feeds, edges)
                rt = cell["runtime"]
                worker = workers.setdefault(rt, Worker(rt, timeout))
                outcome = worker.run(str(marked_path), p.feeds)
                if outcome.kind != "ok":
                    cell["diverged_at"] = {"message": f"could not locate: {outcome.message}"}
                    continue
                found = _first_divergence(edges, outcome.outputs, want, rt)
                if found is None:
                    continue
                cell["diverged_at"] = found
                if found["where"] == "module" and report_dir is not None:
                    edge = next(e for e in edges if e.path == found["module"])
                    folder = report_dir / "repro" / f"{cell['case']}--{rt}"
                    try:
                        _repro(model, edge, want, folder, rt, cell.get("runtime_version"))
                        found["repro"] = str(folder)
                    except Exception as exc:   # a cut the extractor cannot make: say so
                        found["repro_error"] = f"{type(exc).__name__}: {exc}"[:300]
                step = found.get("first_bad_step")
                note = (f"diverges first at {found['module']} ({found['tensor']}"
                        + (f"; its output from step {step}" if step is not None else "")
                        + (", its input already wrong: the cause is upstream"
                           if found["where"] == "input" else "") + ")")
                cell["message"] = "; ".join(m for m in (cell["message"], note) if m)
        finally:
            for w in workers.values():
                w.close()


def _torch_at_modules(target: Any, feeds: Mapping[str, np.ndarray],
                      edges: Sequence[RNNEdges]) -> dict[str, np.ndarray]:
    return module_captures(target.module, edges,
                           lambda: target.signature.call(target.module, feeds))
