"""The direct export's graph: I/O contract, metadata, atomic saving around lower_rnn."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from . import __version__
from .errors import ExportError
from .lowering.scan import lower_rnn_scan
from .lowering.stack import GraphBuilder, lower_rnn
from .spec import ExportOptions, RNNSpec
from .weights import LayerWeights

__all__ = ["GraphBuilder", "build_model", "save_atomic", "PRODUCER_NAME"]

PRODUCER_NAME = "torch-rnn-onnx"


def _io(spec: RNNSpec, options: ExportOptions) -> tuple[list, list]:
    D, H, L = spec.num_directions, spec.hidden_size, spec.num_layers
    seq_batch = ["batch", "seq"] if spec.batch_first else ["seq", "batch"]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                            seq_batch + [spec.input_size])]
    if options.has_h0:
        inputs.append(helper.make_tensor_value_info("h_0", TensorProto.FLOAT, [L * D, "batch", H]))
    if options.sequence_lens:   # the RNN op takes int32 lengths only
        inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["batch"]))
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, seq_batch + [D * H]),
               helper.make_tensor_value_info("h_n", TensorProto.FLOAT, [L * D, "batch", H])]
    return inputs, outputs


def _metadata(model: onnx.ModelProto, spec: RNNSpec, options: ExportOptions) -> None:
    import torch

    props = {"rnn_config": spec.to_json(), "initial_state": options.initial_state,
             "batch_layout": options.batch_layout,
             "sequence_lens": str(options.sequence_lens).lower(), "lowering": options.lowering,
             "torch_version": torch.__version__}
    helper.set_model_props(model, props)


def build_model(spec: RNNSpec, layers: list[LayerWeights], options: ExportOptions) -> onnx.ModelProto:
    """The direct export: graph I/O named by the contract around the one lowering."""
    b = GraphBuilder(taken=("input", "h_0", "sequence_lens", "output", "h_n"))
    edges = dict(x="input", h0="h_0" if options.has_h0 else None, out="output", h_n="h_n",
                 seq_lens="sequence_lens" if options.sequence_lens else None)
    if options.lowering == "scan":
        lower_rnn_scan(b, spec, layers, **edges)
    else:
        lower_rnn(b, spec, layers, batch_layout=options.batch_layout, **edges)
    inputs, outputs = _io(spec, options)
    what = "native ONNX RNN ops" if options.lowering == "rnn" else "MatMul + Scan"
    graph = helper.make_graph(b.nodes, "rnn", inputs, outputs, initializer=b.initializers,
                              doc_string=f"torch.nn.RNN({spec.to_json()}) as {what}")
    opsets = [helper.make_opsetid("", options.opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name=PRODUCER_NAME,
                              producer_version=__version__,
                              ir_version=helper.find_min_ir_version_for(opsets))
    _metadata(model, spec, options)
    return model


def save_atomic(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """Write next to the target, then rename: a failure never leaves half a file behind."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise ExportError(f"output directory does not exist: {parent}")
    if target.is_dir():
        raise ExportError(f"output path is a directory: {target}")
    data = model.SerializeToString()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise ExportError(f"cannot write to {parent}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ExportError(f"cannot write {target}: {exc.strerror}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
