"""Graph assembly around the per-layer lowering: I/O contract, edges, metadata, saving."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import __version__
from .errors import ExportError
from .lowering.rnn_op import lower_layer
from .spec import ExportOptions, RNNSpec
from .weights import LayerWeights

__all__ = ["GraphBuilder", "build_model", "save_atomic", "PRODUCER_NAME"]

PRODUCER_NAME = "torch-rnn-onnx"


class GraphBuilder:
    """Collects nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name

    def initializer(self, base: str, array: np.ndarray) -> str:
        name = self.fresh(base)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], **attrs) -> list[str]:
        name = attrs.pop("name", None) or self.fresh(op.lower())
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))
        return outputs

    def op(self, op: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        """Single-output node; returns its output name."""
        return self.node(op, inputs, [out or self.fresh(op.lower())], **attrs)[0]


def _merge_directions(b: GraphBuilder, y: str, spec: RNNSpec, batch_major: bool, layout: int,
                      out: str | None = None) -> str:
    """The RNN's Y → torch's layout, directions concatenated on the feature axis.

    layout=0: Y [seq, dirs, batch, H] → [seq, batch, dirs·H], or [batch, seq, dirs·H] if
              batch_major (torch keeps directions on the last axis; ONNX on axis 1).
    layout=1: Y [batch, seq, dirs, H] → [batch, seq, dirs·H] (already batch-major).
    """
    if layout == 0 and spec.num_directions == 1 and not batch_major:
        axes = b.initializer("axes_1", np.array([1], np.int64))
        return b.op("Squeeze", [y, axes], out)                  # [seq, batch, H]
    if layout == 0:
        perm = [2, 0, 1, 3] if batch_major else [0, 2, 1, 3]
        y = b.op("Transpose", [y], perm=perm)                   # [·, ·, dirs, H]
    shape = b.initializer("shape_merge", np.array([0, 0, spec.num_directions * spec.hidden_size],
                                                  np.int64))
    return b.op("Reshape", [y, shape], out)                     # [·, ·, dirs·H]


def _split_h0(b: GraphBuilder, spec: RNNSpec, options: ExportOptions,
              layout: int) -> list[str | None]:
    """h_0 [layers·dirs, batch, H] → per layer [dirs, batch, H] (layout=1: [batch, dirs, H]).

    None per layer when the graph has no h_0 (zero state).
    """
    if not options.has_h0:
        return [None] * spec.num_layers
    h0, axis = "h_0", 0
    if layout == 1:
        h0, axis = b.op("Transpose", [h0], perm=[1, 0, 2]), 1   # [batch, layers·dirs, H]
    if spec.num_layers == 1:
        return [h0]
    sizes = b.initializer("h0_split", np.full(spec.num_layers, spec.num_directions, np.int64))
    outs = [b.fresh(f"h0_l{k}") for k in range(spec.num_layers)]
    return b.node("Split", [h0, sizes], outs, axis=axis)


def _gather_h_n(b: GraphBuilder, y_hs: list[str], layout: int) -> None:
    """Per-layer Y_h → h_n [layers·dirs, batch, H]."""
    if layout == 0:
        if len(y_hs) > 1:
            b.op("Concat", y_hs, "h_n", axis=0)
        return
    h = b.op("Concat", y_hs, axis=1) if len(y_hs) > 1 else y_hs[0]   # [batch, layers·dirs, H]
    b.op("Transpose", [h], "h_n", perm=[1, 0, 2])


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
             "sequence_lens": str(options.sequence_lens).lower(), "lowering": "rnn",
             "torch_version": torch.__version__}
    helper.set_model_props(model, props)


def build_model(spec: RNNSpec, layers: list[LayerWeights], options: ExportOptions) -> onnx.ModelProto:
    """The whole graph: edges for batch_first, one lowered layer each, h_n gathered."""
    b = GraphBuilder()
    for reserved in ("input", "h_0", "sequence_lens", "output", "h_n"):
        b.fresh(reserved)
    seq_lens = "sequence_lens" if options.sequence_lens else None
    layout = 1 if spec.batch_first and options.batch_layout == "attribute" else 0
    x = "input"
    if spec.batch_first and layout == 0:
        x = b.op("Transpose", [x], perm=[1, 0, 2])             # [batch, seq, I] → [seq, batch, I]
    h0s = _split_h0(b, spec, options, layout)
    last = spec.num_layers - 1
    y_hs = []
    for k, (w, h0) in enumerate(zip(layers, h0s)):
        direct = last == 0 and layout == 0                       # Y_h is h_n as it stands
        y, y_h = lower_layer(b, x, h0, w, spec, k, y_h_name="h_n" if direct else None,
                             layout=layout, seq_lens=seq_lens)
        y_hs.append(y_h)
        if k < last:
            x = _merge_directions(b, y, spec, batch_major=layout == 1, layout=layout)
        else:
            _merge_directions(b, y, spec, batch_major=spec.batch_first, layout=layout,
                              out="output")
    if not (last == 0 and layout == 0):
        _gather_h_n(b, y_hs, layout)
    inputs, outputs = _io(spec, options)
    graph = helper.make_graph(b.nodes, "rnn", inputs, outputs, initializer=b.initializers,
                              doc_string=f"torch.nn.RNN({spec.to_json()}) as native ONNX RNN ops")
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
