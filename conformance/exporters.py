"""Exporters as a matrix axis: the same cases exported by this project and by torch.onnx.

    ours           exporter.export (the default)
    torch-dynamo   torch.onnx.export(dynamo=True), torch's default, with dynamic_shapes asking
                   for a dynamic batch and sequence (Dim.AUTO on both)
    torch-legacy   torch.onnx.export(dynamo=False), the TorchScript exporter, with dynamic_axes
    torch-dynamo@onnxscript=VERSION
                   torch-dynamo with that onnxscript release (installed once into the versions
                   cache, conformance/versions.py), exported in a process of its own
    torch-dynamo@torch=VERSION, torch-legacy@torch=VERSION
                   the same with that torch release: the child process imports it from the
                   cache and exports a module holding the weights the truth was computed with
                   (the installed torch computes the truth; only the export changes release)
    torch-dynamo@torch=VERSION@onnxscript=VERSION
                   both pinned (onnxscript before 0.6 imports only under torch ≤ 2.10)

torch.onnx exports a small wrapper with the graph contract's names and order (input, h_0[,
c_0][, sequence_lens] → output, h_n[, c_n]); with sequence_lens it runs torch's own packed
computation (pack_padded_sequence → module → pad_packed_sequence), exactly what the truth is.
The example it is traced with is batch 2, sequence 5: a file that freezes a size refuses or
mis-computes every case of another size, which the verdicts then show.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

from exporter.cells import ONNX_OPS
from exporter.errors import ExportError
from exporter.spec import RNNSpec

__all__ = ["EXPORTERS", "TORCH_EXPORTERS", "torch_export", "structure", "exporter_names",
           "exporter_version", "exporter_torch"]

TORCH_EXPORTERS = ("torch-dynamo", "torch-legacy")
EXPORTERS = ("ours", *TORCH_EXPORTERS)
EXAMPLE_BATCH, EXAMPLE_SEQ = 2, 5


def exporter_names(text: str) -> list[str]:
    """The --exporters list: ours, torch-dynamo, torch-legacy, each torch.onnx one with pins
    (torch-dynamo@onnxscript=V, …@torch=V, both)."""
    from .versions import split_exporter

    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if split_exporter(n)[0] not in EXPORTERS]
    if not names or bad or len(set(names)) != len(names):
        raise ExportError(f"--exporters takes a comma-separated list of {', '.join(EXPORTERS)}, "
                          "torch-dynamo@onnxscript=VERSION, torch-dynamo|torch-legacy"
                          "@torch=VERSION, or both pins joined by @ (each exporter once); "
                          f"got {text!r}")
    return names


def exporter_version(exporter: str) -> str | None:
    """The onnxscript release behind a torch-dynamo file: the pinned one, or the installed
    (what version-scoped divergences match on)."""
    from .versions import split_exporter

    base, pins = split_exporter(exporter)
    if base != "torch-dynamo":
        return None
    if "onnxscript" in pins:
        return pins["onnxscript"]
    try:
        import onnxscript
        return onnxscript.__version__
    except ImportError:
        return None


def exporter_torch(exporter: str) -> str | None:
    """The torch release behind a torch.onnx file: the pinned one, or the installed."""
    from .versions import split_exporter

    base, pins = split_exporter(exporter)
    if base not in TORCH_EXPORTERS:
        return None
    if "torch" in pins:
        return pins["torch"]
    import torch
    return torch.__version__


def _pinned_export(exporter: str, module: Any, spec: RNNSpec, seed: int, with_h0: bool,
                   seq_lens: bool, path: Path, opset: int, info: dict | None) -> float:
    """torch_export in a child process that imports the pinned release from the versions
    cache first (PYTHONPATH, so nothing imported before it can be the installed one). The
    child rebuilds the module from `spec` and `seed` and loads `module`'s weights into it, so
    its file holds the weights the truth was computed with whatever the release's initialisers
    do. `info` (the cell's labels) gets the releases the child actually imported."""
    import json
    import os
    import subprocess
    import sys

    import torch

    from .versions import ensure_exporter, exporter_sites, split_exporter

    ensure_exporter(exporter, log=lambda *_: None)
    base, pins = split_exporter(exporter)
    sites = {p: str(site) for p, site in exporter_sites(exporter).items()}
    state = path.with_name(f".{path.name}.state.pt")
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, state)
    job = {"exporter": base, "spec": spec.to_json(), "seed": seed, "with_h0": with_h0,
           "seq_lens": seq_lens, "path": str(path), "opset": opset, "state": str(state),
           "sites": sites, "pins": pins}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [*sites.values(), *filter(None, [os.environ.get("PYTHONPATH")])])}
    try:
        r = subprocess.run([sys.executable, "-m", "conformance.export_child", json.dumps(job)],
                           capture_output=True, text=True, timeout=900, env=env)
    finally:
        state.unlink(missing_ok=True)
    if r.returncode != 0:
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        raise ExportError(f"{exporter} could not export: {lines[-1] if lines else r.returncode}")
    done = json.loads(r.stdout.strip().splitlines()[-1])
    if info is not None:
        info.update({"onnxscript": done["onnxscript"], "exporter_torch": done["torch"]})
    return float(done["seconds"])


def _wrapper(module: Any, spec: RNNSpec, with_h0: bool, seq_lens: bool) -> Any:
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    lstm = spec.cell_info.has_cell_state

    class ForExport(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = module

        def forward(self, *args: Any) -> tuple:
            it = iter(args)
            x = next(it)
            hx = None
            if with_h0:
                h0 = next(it)
                hx = (h0, next(it)) if lstm else h0
            if seq_lens:
                lengths = next(it)
                packed = pack_padded_sequence(x, lengths.to(torch.int64).cpu(),
                                              batch_first=spec.batch_first, enforce_sorted=False)
                out, state = self.rnn(packed, hx)
                out, _ = pad_packed_sequence(out, batch_first=spec.batch_first,
                                             total_length=x.shape[spec.seq_axis])
            else:
                out, state = self.rnn(x, hx)
            return (out, *state) if lstm else (out, state)

    return ForExport().eval()


def _example(spec: RNNSpec, with_h0: bool, seq_lens: bool) -> tuple[list[str], tuple]:
    import torch

    B, S = EXAMPLE_BATCH, EXAMPLE_SEQ
    names, args = ["input"], [torch.randn(*spec.leading(B, S), spec.input_size)]
    if with_h0:
        for state in spec.cell_info.states:
            names.append(f"{state}_0")
            args.append(torch.randn(*spec.state_shape(state, B)))
    if seq_lens:
        names.append("sequence_lens")
        args.append(torch.tensor([S, S - 2], dtype=torch.int32))
    return names, tuple(args)


def torch_export(exporter: str, module: Any, spec: RNNSpec, with_h0: bool, seq_lens: bool,
                 path: Path, opset: int = 17, seed: int | None = None,
                 info: dict | None = None) -> float:
    """Export with torch.onnx into `path`; returns the wall time. Raises ExportError. A pinned
    exporter (torch-dynamo@onnxscript=V, …@torch=V) exports `module`'s weights in a process
    of its own (_pinned_export) and tells `info` the releases it imported."""
    import torch

    if "@" in exporter:
        if seed is None:
            raise ExportError(f"{exporter}: a pinned exporter rebuilds the module from a seed")
        return _pinned_export(exporter, module, spec, seed, with_h0, seq_lens, path, opset,
                              info)

    from exporter.torch_onnx import _quiet, _root_cause

    wrapper = _wrapper(module, spec, with_h0, seq_lens)
    names, args = _example(spec, with_h0, seq_lens)
    outputs = ["output", "h_n"] + (["c_n"] if spec.cell_info.has_cell_state else [])
    axes = {"input": {spec.seq_axis: "seq", spec.batch_axis: "batch"}, "h_0": {1: "batch"},
            "c_0": {1: "batch"}, "sequence_lens": {0: "batch"}}
    start = time.perf_counter()
    try:
        with _quiet(), warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            if exporter == "torch-dynamo":
                from torch.export import Dim
                # forward(*args): the shapes of all positional arguments form one entry
                shapes = (tuple({a: Dim.AUTO for a in axes[n]} for n in names),)
                program = torch.onnx.export(wrapper, args, dynamo=True, opset_version=opset,
                                            dynamic_shapes=shapes, input_names=names,
                                            output_names=outputs, verbose=False)
                program.save(str(path))
            else:
                torch.onnx.export(wrapper, args, str(path), dynamo=False, opset_version=opset,
                                  input_names=names, output_names=outputs,
                                  dynamic_axes={n: axes[n] for n in names + outputs
                                                if n in axes} | {
                                      "output": {spec.seq_axis: "seq", spec.batch_axis: "batch"},
                                      "h_n": {1: "batch"}, "c_n": {1: "batch"}})
    except Exception as exc:
        root = _root_cause(exc)
        first = (str(root).strip().splitlines() or [""])[0][:300]
        raise ExportError(f"{exporter} could not export: {type(root).__name__}: {first}") from None
    return time.perf_counter() - start


def structure(path: Path) -> dict[str, Any]:
    """What the file is: node count and op types, whether seq and batch stay symbolic."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    g = model.graph

    def dims(values: Any, name: str) -> list:
        vi = next((v for v in values if v.name == name), None)
        return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim] if vi else []

    ins, outs = dims(g.input, "input"), dims(g.output, "output")
    ops = sorted({n.op_type for n in g.node})
    return {"nodes": len(g.node), "recurrent_ops": [o for o in ops
                                                    if o in (*ONNX_OPS, "Scan", "Loop")],
            "input_dims": ins, "output_dims": outs,
            # seq and batch symbolic on the way in *and* out (a frozen file keeps the input
            # symbolic and fixes the output)
            "dynamic": all(isinstance(d, str) and d for d in ins[:2] + outs[:2])}
