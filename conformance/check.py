"""The check pipeline: an already exported file + the torch module it came from → prepared
cases (feeds and torch's answers), for every front door (the CLI's `check`, the Python API
`conformance.check_model`, the pytest plugin). The cases then take the same road as `run`'s:
runner → worker → runtimes → judge → reports.

Two kinds of file:
  * a bare recurrent module (`input[, h_0[, c_0]][, sequence_lens]` → `output, h_n[, c_n]`),
    rebuilt from its nn.RNN arguments and a checkpoint or seed (rnn_cases);
  * a whole model: its signature (exporter/signature.py — written by our exporter, or built
    from the graph and example shapes for another exporter's file) says which inputs there are,
    which dimensions are symbolic and which inputs and outputs carry a recurrent state; the
    module itself is imported (or handed over by the Python API) with its checkpoint.
    Cases: every symbolic batch/sequence size at 1, at the example, and larger
    (model_cases); for stateful models also the sequence streamed in chunks.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnx

from exporter.errors import ExportError
from exporter.signature import Signature, graph_inputs, input_sigs, read_signature

from .matrix import stable_seed
from .prepare import Prepared
from .streaming import Stream, split_chunks

__all__ = ["WholeModel", "load_file", "whole_model", "model_cases", "rnn_cases", "shape_maps",
           "DEFAULT_CHUNKS", "parse_shapes", "parse_chunks", "case_for", "streamable",
           "is_whole_model"]

DEFAULT_CHUNKS = (1, 4)
# the dimensions our exporter names; a foreign file's symbolic dims all vary
_VARYING = ("batch", "seq")


def load_file(path: Path) -> onnx.ModelProto:
    """The graph of an ONNX file, its external data left where it is (and confined to its
    folder)."""
    from exporter.files import external_data_files

    if not Path(path).is_file():
        raise ExportError(f"model not found: {path}")
    external_data_files(path)      # weights kept beside it must stay inside its folder
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ExportError(f"cannot read ONNX model {path}: {exc}") from None


# ---- whole models -----------------------------------------------------------------------

@dataclass(frozen=True)
class WholeModel:
    """A whole-model file and the module that is its truth."""

    path: Path
    module: Any
    signature: Signature


def _foreign_signature(model: onnx.ModelProto, examples: Sequence[Any]) -> Signature:
    """For a file another exporter wrote: inputs matched by position with the examples."""
    inputs = graph_inputs(model.graph)
    if len(inputs) != len(examples):
        raise ExportError(f"the file takes {len(inputs)} inputs "
                          f"({', '.join(i.name for i in inputs)}); {len(examples)} example "
                          "shapes were given (--example-shape, once per input, in order)")
    return Signature(inputs=input_sigs(model.graph, examples),
                     outputs=tuple(o.name for o in model.graph.output))


def whole_model(path: Path, model: onnx.ModelProto, *, module: Any = None,
                module_path: str | None = None, module_kwargs: Mapping[str, Any] | None = None,
                checkpoint: str | None = None, examples: Sequence[Any] | None = None
                ) -> WholeModel:
    """The module and signature for a whole-model file: the file's own metadata, overridden
    by what the caller gives (a module object, or an importable class + kwargs + checkpoint;
    example tensors for a file without a signature)."""
    from exporter.cli import load_module

    signature = read_signature(model)
    if examples is not None and signature is None:
        signature = _foreign_signature(model, examples)
    if signature is None:
        raise ExportError(f"{path.name} carries no signature (written by another exporter?): "
                          "give --module and one --example-shape per input")
    if module is None:
        target = module_path or signature.module
        if target is None:
            raise ExportError("the file does not name its module class (defined in __main__ or "
                              "a function?): give --module package.module:Class")
        kwargs = dict(module_kwargs if module_kwargs is not None
                      else signature.module_kwargs or {})
        module = load_module(target, kwargs, checkpoint, what="the module")
    _check_fit(signature, model)
    return WholeModel(Path(path), module.eval(), signature)


def _check_fit(sig: Signature, model: onnx.ModelProto) -> None:
    names = [i.name for i in graph_inputs(model.graph)]
    if len(names) != len(sig.inputs):
        raise ExportError(f"the file takes inputs {names}; its signature describes "
                          f"{len(sig.inputs)}")
    outs = [o.name for o in model.graph.output]
    if len(outs) != len(sig.outputs):
        raise ExportError(f"the file returns {outs}; its signature describes {len(sig.outputs)}")


def shape_maps(sig: Signature) -> list[dict[str, int]]:
    """Sizes of the symbolic dims for each case: all at 1, the example, and larger (batch
    and sequence; a foreign file's every symbolic dim). Other dims stay at the example."""
    example = sig.example_sizes()
    varying = {d for d in example if d in _VARYING} or set(example)
    maps = [{d: (f(n) if d in varying else n) for d, n in example.items()}
            for f in (lambda n: 1, lambda n: n, lambda n: 2 * n + 1)]
    return [m for k, m in enumerate(maps) if m not in maps[:k]]


def parse_shapes(text: str) -> list[dict[str, int]]:
    """`batch=1,seq=1;batch=3,seq=40` → size maps."""
    maps = []
    for part in (p for p in text.split(";") if p.strip()):
        try:
            pairs = [kv.split("=") for kv in part.split(",")]
            maps.append({k.strip(): int(v) for k, v in pairs})
        except ValueError:
            raise ExportError(f"--shapes must look like batch=1,seq=1;batch=3,seq=40, got "
                              f"{text!r}") from None
        if min(maps[-1].values(), default=0) < 1:
            raise ExportError(f"--shapes sizes must be ≥ 1, got {text!r}")
    if not maps:
        raise ExportError(f"--shapes needs at least one shape, got {text!r}")
    return maps


def parse_chunks(text: str) -> tuple[int, ...]:
    try:
        chunks = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ExportError(f"--chunks must be comma-separated step counts, got {text!r}") from None
    if any(c < 1 for c in chunks):
        raise ExportError(f"--chunks must be ≥ 1, got {text!r}")
    return chunks


def _torch_call(module: Any, sig: Signature, feeds: Mapping[str, np.ndarray], dtype: Any
                ) -> dict[str, np.ndarray]:
    out = sig.call(module, feeds, dtype)
    if len(out) != len(sig.outputs):
        raise ExportError(f"the module returns {len(out)} tensors, the file {len(sig.outputs)} "
                          f"outputs ({', '.join(sig.outputs)}): is it the module the file was "
                          "exported from?")
    return {name: o.detach().numpy() for name, o in zip(sig.outputs, out)}


def _output_time_axes(model: onnx.ModelProto) -> dict[str, int]:
    """Outputs with a dimension named "seq" (per-step outputs) → that axis."""
    axes = {}
    for o in model.graph.output:
        for k, d in enumerate(o.type.tensor_type.shape.dim):
            if d.dim_param == "seq":
                axes[o.name] = k
    return axes


def _seq_axes(sig: Signature) -> dict[str, int]:
    return {i.name: i.axis("seq") for i in sig.inputs if i.axis("seq") is not None}


def _truths(module: Any, sig: Signature, feeds: Any
            ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """torch's float32 and float64 answers to a case (a Stream: chunk by chunk)."""
    import torch

    m64 = copy.deepcopy(module).double()
    answers = []
    for m, dtype in ((module, torch.float32), (m64, torch.float64)):
        if isinstance(feeds, Stream):
            answers.append(feeds.run(lambda f, m=m, dtype=dtype: _torch_call(m, sig, f, dtype)))
        else:
            answers.append(_torch_call(m, sig, feeds, dtype))
    return answers[0], answers[1]


def _accepts(module: Any, sig: Signature, feeds: Mapping[str, np.ndarray]) -> str | None:
    """None if the module runs on these inputs in torch; else why not (the file is then not
    judged at that shape: nothing to compare with)."""
    import torch

    try:
        _torch_call(module, sig, feeds, torch.float32)
    except ExportError:
        raise
    except Exception as exc:
        return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
    return None


def model_cases(target: WholeModel, model: onnx.ModelProto, *,
                shapes: Sequence[Mapping[str, int]] | None = None,
                chunks: Sequence[int] = DEFAULT_CHUNKS, lowering: str | None = None,
                skipped: list[str] | None = None) -> list[Prepared]:
    """The cases of a whole-model check: each shape run whole, and — for a model with state
    pairs and a sequence dimension — the largest shape streamed in chunks of each size.
    Shapes the module itself refuses in torch are left out (listed in `skipped`)."""
    from .features import model_features

    sig, module, path = target.signature, target.module, target.path
    example = sig.example_sizes()
    maps = [dict(m) for m in (shapes if shapes is not None else shape_maps(sig))]
    unknown = {d for m in maps for d in m} - set(example)
    if unknown:
        raise ExportError(f"--shapes names {', '.join(sorted(unknown))}; the file's symbolic "
                          f"dimensions are {', '.join(example) or 'none'}")
    lowering = lowering or ("scan" if "scan" in model_features(str(path)) else "rnn")
    varying = {d for m in maps for d in m if m[d] != example[d]} or set(example)
    stem = path.stem
    prepared, accepted = [], []
    for m in maps:
        sizes = {**example, **m}
        shape_id = "-".join(f"{d}{n}" for d, n in sizes.items()
                            if d in varying) or "fixed"
        feeds = sig.feeds(sizes, np.random.default_rng(stable_seed(f"{stem}--{shape_id}")))
        why = _accepts(module, sig, feeds)
        if why is not None:
            if skipped is not None:
                skipped.append(f"{shape_id}: the module refuses it in torch ({why})")
            continue
        accepted.append((shape_id, sizes, feeds))
        labels = _labels(target, lowering, sizes)
        prepared.append(case_for(target, model, f"{stem}--{shape_id}", feeds, labels))
    if not accepted:
        raise ExportError("the module refuses every shape tried in torch: "
                          + "; ".join(skipped or []))
    shape_id, sizes, feeds = max(accepted, key=lambda a: a[1].get("seq", 0))
    for size in streamable(sig, sizes.get("seq", 0), chunks):
        prepared.append(case_for(target, model, f"{stem}--{shape_id}--stream{size}", feeds,
                                 _labels(target, lowering, sizes), size))
    return prepared


def streamable(sig: Signature, steps: int, chunks: Sequence[int]) -> list[int]:
    """The chunk sizes a case of `steps` steps is streamed in: only for a model with state
    pairs and a sequence dimension, and only sizes that make two chunks or more."""
    if not sig.state_pairs or not _seq_axes(sig):
        return []
    return [c for c in sorted(set(chunks)) if c < steps]


def _labels(target: WholeModel, lowering: str, sizes: Mapping[str, int]) -> dict[str, Any]:
    return {"module": target.signature.module or type(target.module).__qualname__,
            "lowering": lowering, **sizes}


def case_for(target: WholeModel, model: onnx.ModelProto, case_id: str,
             feeds: dict[str, np.ndarray], labels: dict[str, Any], chunk: int | None = None,
             model_id: str | None = None) -> Prepared:
    """One whole-model case: torch's answers to `feeds` (streamed in chunks of `chunk` steps,
    each chunk's state outputs fed to the next, when given)."""
    sig = target.signature
    time_axes = _output_time_axes(model)
    stream = (Stream(split_chunks(feeds, _seq_axes(sig), chunk), sig.state_pairs, time_axes)
              if chunk else None)
    f32, f64 = _truths(target.module, sig, stream if stream is not None else feeds)
    p = Prepared(case_id, model_id or target.path.stem, str(target.path.resolve()),
                 stream.chunks[0] if stream is not None else feeds, f32, f64,
                 {**labels, "chunk": chunk})
    p.stream, p.time_axes = stream, dict(time_axes)
    return p


# ---- bare recurrent modules -------------------------------------------------------------

RNN_INPUTS = {"input", "h_0", "c_0", "sequence_lens"}


def rnn_cases(path: Path, model: onnx.ModelProto, spec: Any, state: Mapping[str, np.ndarray],
              inputs: Sequence[tuple[int, int]], patterns: Sequence[str | None]
              ) -> list[Prepared]:
    """A bare recurrent file's cases: (batch, seq) × length pattern, torch from the weights."""
    from .features import model_features
    from .truth import check_case_size, make_feeds, module_from_state, torch_truth

    names = [i.name for i in graph_inputs(model.graph)]
    # the lowering the file *is* (read from its graph, never from its metadata or name), so
    # the support table counts a scan-lowered file in the scan rows
    lowering = "scan" if "scan" in model_features(str(path)) else "rnn"
    for batch, seq in inputs:
        check_case_size(spec, batch, seq)
    module = module_from_state(spec, state)
    prepared = []
    for (batch, seq), lengths in itertools.product(inputs, patterns):
        case_id = (f"{path.stem}--{spec.id}--b{batch}s{seq}"
                   + (f"-lens_{lengths}" if lengths else ""))
        # Inputs depend on the config and shape only, never on the file's name.
        feeds = make_feeds(spec, batch, seq, "h_0" in names,
                           stable_seed(f"{spec.id}--b{batch}s{seq}-{lengths}"), lengths)
        f32, f64 = torch_truth(module, feeds)
        labels = {**spec.config(), "initial_state": "input" if "h_0" in names else "zeros",
                  "sequence_lens": lengths is not None, "lengths": lengths, "lowering": lowering,
                  "batch": batch, "seq": seq}
        p = Prepared(case_id, path.stem, str(path.resolve()), feeds, f32, f64, labels)
        p.time_axes = {"output": spec.seq_axis}
        prepared.append(p)
    return prepared


def is_whole_model(model: onnx.ModelProto) -> bool:
    names = {i.name for i in graph_inputs(model.graph)}
    return read_signature(model) is not None or not (names <= RNN_INPUTS and "input" in names)
