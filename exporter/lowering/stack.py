"""One nn.RNN (every layer and the edges between them) → ONNX nodes.

This is the one lowering of an nn.RNN: the direct export (graph.py) and the whole-model
export (torch_onnx.py) both call `lower_rnn`, with their own tensor names at the edges.
torch's layouts at the edges:
    x    [seq, batch, I] or [batch, seq, I] (batch_first)      h_0, h_n  [layers·dirs, batch, H]
    out  [seq, batch, dirs·H] or [batch, seq, dirs·H]
"""
from __future__ import annotations

import numpy as np

from ..spec import RNNSpec
from ..weights import LayerWeights
from .builder import GraphBuilder, split_states
from .rnn_op import lower_layer

__all__ = ["lower_rnn"]


def _merge_directions(b: GraphBuilder, y: str, spec: RNNSpec, batch_major: bool, layout: int,
                      out: str | None = None) -> str:
    """The node's Y → torch's layout, directions concatenated on the feature axis (S = the
    size of h: hidden_size, or proj_size).

    layout=0: Y [seq, dirs, batch, S] → [seq, batch, dirs·S], or [batch, seq, dirs·S] if
              batch_major (torch keeps directions on the last axis; ONNX on axis 1).
    layout=1: Y [batch, seq, dirs, S] → [batch, seq, dirs·S] (already batch-major).
    """
    if layout == 0 and spec.num_directions == 1 and not batch_major:
        axes = b.initializer("axes_1", np.array([1], np.int64))
        return b.op("Squeeze", [y, axes], out)                  # [seq, batch, S]
    if layout == 0:
        perm = [2, 0, 1, 3] if batch_major else [0, 2, 1, 3]
        y = b.op("Transpose", [y], perm=perm)                   # [·, ·, dirs, S]
    shape = b.initializer("shape_merge", np.array([0, 0, spec.num_directions * spec.state_size],
                                                  np.int64))
    return b.op("Reshape", [y, shape], out)                     # [·, ·, dirs·S]


def _gather_h_n(b: GraphBuilder, y_hs: list[str], layout: int, h_n: str) -> None:
    """Per-layer final states → h_n (or c_n) [layers·dirs, batch, ·]."""
    if layout == 0:
        if len(y_hs) > 1:
            b.op("Concat", y_hs, h_n, axis=0)
        return
    h = b.op("Concat", y_hs, axis=1) if len(y_hs) > 1 else y_hs[0]   # [batch, layers·dirs, ·]
    b.op("Transpose", [h], h_n, perm=[1, 0, 2])


def lower_rnn(b: GraphBuilder, spec: RNNSpec, layers: list[LayerWeights], *, x: str,
              h0: str | None, out: str, h_n: str, c0: str | None = None,
              c_n: str | None = None, seq_lens: str | None = None,
              batch_layout: str = "transpose") -> None:
    """Nodes computing torch's (out, h_n[, c_n]) from x[, h0[, c0]][, seq_lens] into the
    given names: one RNN / LSTM / GRU node per layer (cells.py says which)."""
    from ..errors import ExportError

    if spec.proj_size:
        raise ExportError("the ONNX LSTM op has no projection (proj_size); export with "
                          "lowering=\"scan\" (--lowering scan), which computes it exactly")
    cell = spec.cell_info
    layout = 1 if spec.batch_first and batch_layout == "attribute" else 0
    if spec.batch_first and layout == 0:
        x = b.op("Transpose", [x], perm=[1, 0, 2])              # [batch, seq, I] → [seq, batch, I]
    inits = {"h": split_states(b, spec, h0, layout, "h0"), "c": split_states(b, spec, c0, layout, "c0")}
    finals_out = {"h": h_n, "c": c_n}
    last = spec.num_layers - 1
    direct = last == 0 and layout == 0                          # the node's finals are torch's
    per_state: dict[str, list[str]] = {s: [] for s in cell.states}
    for k, w in enumerate(layers):
        names = {s: finals_out[s] for s in cell.states} if direct else None
        y, finals = lower_layer(b, x, {s: inits[s][k] for s in cell.states}, w, spec, k,
                                names, layout=layout, seq_lens=seq_lens)
        for s in cell.states:
            per_state[s].append(finals[s])
        if k < last:
            x = _merge_directions(b, y, spec, batch_major=layout == 1, layout=layout)
        else:
            _merge_directions(b, y, spec, batch_major=spec.batch_first, layout=layout, out=out)
    if not direct:
        for s in cell.states:
            _gather_h_n(b, per_state[s], layout, finals_out[s])
