"""The direct export's graph: I/O contract, metadata, atomic saving around lower_rnn."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import onnx
from onnx import TensorProto, helper

from . import __version__
from .errors import ExportError
from .files import atomic_write, check_output
from .lowering import GraphBuilder, lower
from .spec import ExportOptions, RNNSpec
from .targets import Construction
from .weights import LayerWeights

__all__ = ["GraphBuilder", "build_model", "save_atomic", "weight_bytes", "PRODUCER_NAME",
           "EXTERNAL_DATA_THRESHOLD"]

PRODUCER_NAME = "torch-rnn-onnx"


def _io(spec: RNNSpec, options: ExportOptions) -> tuple[list, list]:
    D, S = spec.num_directions, spec.state_size
    seq_batch = spec.leading("batch", "seq")
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                            seq_batch + [spec.input_size])]
    if options.has_h0:
        inputs += [helper.make_tensor_value_info(f"{state}_0", TensorProto.FLOAT,
                                                 spec.state_shape(state, "batch"))
                   for state in spec.cell_info.states]
    if options.sequence_lens:   # the recurrent ops take int32 lengths only
        inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["batch"]))
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, seq_batch + [D * S])]
    outputs += [helper.make_tensor_value_info(f"{state}_n", TensorProto.FLOAT,
                                              spec.state_shape(state, "batch"))
                for state in spec.cell_info.states]
    return inputs, outputs


def _metadata(model: onnx.ModelProto, spec: RNNSpec, options: ExportOptions,
              how: "Construction") -> None:
    import torch

    props = {"rnn_config": spec.to_json(), "initial_state": options.initial_state,
             "batch_layout": how.batch_layout,
             "sequence_lens": str(options.sequence_lens).lower(), "lowering": how.lowering,
             "target": options.target, "construction": how.to_json(),
             "torch_version": torch.__version__}
    helper.set_model_props(model, props)


def build_model(spec: RNNSpec, layers: list[LayerWeights], options: ExportOptions) -> onnx.ModelProto:
    """The direct export: graph I/O named by the contract around the one lowering."""
    b = GraphBuilder(taken=("input", "h_0", "c_0", "sequence_lens", "output", "h_n", "c_n"))
    lstm = spec.cell_info.has_cell_state
    edges = dict(x="input", h0="h_0" if options.has_h0 else None, out="output", h_n="h_n",
                 c0="c_0" if options.has_h0 and lstm else None, c_n="c_n" if lstm else None,
                 seq_lens="sequence_lens" if options.sequence_lens else None)
    how = options.construction(spec)
    lower(b, spec, layers, how, **edges)
    inputs, outputs = _io(spec, options)
    op = spec.cell_info.onnx_op
    what = f"native ONNX {op} ops" if how.lowering == "rnn" else "MatMul + Scan"
    graph = helper.make_graph(b.nodes, spec.cell, inputs, outputs, initializer=b.initializers,
                              doc_string=f"torch.nn.{spec.cell_info.torch_class}"
                                         f"({spec.to_json()}) as {what}")
    opsets = [helper.make_opsetid("", options.opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name=PRODUCER_NAME,
                              producer_version=__version__,
                              ir_version=helper.find_min_ir_version_for(opsets))
    _metadata(model, spec, options, how)
    return model


# A protobuf message cannot exceed 2 GiB: above this many bytes of weights (leaving room for
# the graph itself) a model is written with ONNX external data, weights in "<name>.data".
EXTERNAL_DATA_THRESHOLD = (1 << 31) - (1 << 26)
_EXTERNAL_MIN_BYTES = 1024   # smaller tensors stay inside the .onnx file


def weight_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) for t in model.graph.initializer)


def _with_external_data(model: onnx.ModelProto, data_name: str, data: Path) -> bytes:
    """Write the large initializers' bytes to `data`; return the model serialized with
    references to them (the in-memory model is left as it was)."""
    moved = []
    with open(data, "wb") as fh:
        for t in model.graph.initializer:
            if len(t.raw_data) < _EXTERNAL_MIN_BYTES:
                continue
            offset = fh.tell()
            fh.write(t.raw_data)
            moved.append((t, t.raw_data, offset))
    try:
        for t, raw, offset in moved:
            t.ClearField("raw_data")
            t.data_location = TensorProto.EXTERNAL
            for key, value in (("location", data_name), ("offset", str(offset)),
                               ("length", str(len(raw)))):
                t.external_data.add(key=key, value=value)
        return model.SerializeToString()
    finally:
        for t, raw, _ in moved:
            t.ClearField("external_data")
            t.data_location = TensorProto.DEFAULT
            t.raw_data = raw


def save_atomic(model: onnx.ModelProto, path: str | os.PathLike, *,
                inputs: Iterable[str | os.PathLike | None] = (),
                external_data: bool | None = None) -> Path:
    """Write the model atomically (see files.py); never onto a non-regular file or an input.

    external_data: True writes the weights to "<file name>.data" beside the model (ONNX
    external data); None (default) does so only when they would not fit a 2 GiB protobuf."""
    big = weight_bytes(model) > EXTERNAL_DATA_THRESHOLD
    if external_data is False and big:
        raise ExportError(f"the model's weights ({weight_bytes(model):,} bytes) do not fit "
                          "one ONNX file (2 GiB protobuf limit); use external data")
    target = check_output(path, inputs)
    if not (external_data or big):
        return atomic_write(target, model.SerializeToString(), inputs)
    data_name = f"{target.name}.data"
    holder: dict[str, bytes] = {}

    def write_data(tmp: Path) -> None:
        holder["model"] = _with_external_data(model, data_name, tmp)

    # The weights first, then the model that points at them: each rename is atomic.
    atomic_write(target.parent / data_name, write_data, inputs)
    return atomic_write(target, holder["model"], inputs)
