"""Lowering one recurrent module to ONNX nodes: `lower` is the one entry, and the
construction (exporter/targets.py) the one visible choice between the two lowerings
(rnn_op + stack: native RNN / LSTM / GRU nodes; scan: MatMul + Scan), both built with
builder.py.

torch's layouts at the edges, for both:
    x    [seq, batch, I] or [batch, seq, I] (batch_first)      h_0, h_n  [layers·dirs, batch, H]
    out  [seq, batch, dirs·H] or [batch, seq, dirs·H]
"""
from __future__ import annotations

from ..spec import RNNSpec
from ..targets import Construction
from ..weights import LayerWeights
from .builder import GraphBuilder, explicit_zeros
from .scan import lower_rnn_scan
from .stack import lower_rnn

__all__ = ["lower", "GraphBuilder"]


def lower(b: GraphBuilder, spec: RNNSpec, layers: list[LayerWeights], how: Construction, *,
          x: str, h0: str | None, out: str, h_n: str, c0: str | None = None,
          c_n: str | None = None, seq_lens: str | None = None) -> None:
    """Nodes computing torch's (out, h_n[, c_n]) from x[, h0[, c0]][, seq_lens] into the given
    names, built the way `how` says."""
    if how.zero_state == "explicit":
        sizes = spec.state_sizes()
        if h0 is None:
            h0 = explicit_zeros(b, spec, x, sizes["h"], "h0_zeros")
        if spec.cell_info.has_cell_state and c0 is None:
            c0 = explicit_zeros(b, spec, x, sizes["c"], "c0_zeros")
    edges = dict(x=x, h0=h0, out=out, h_n=h_n, c0=c0, c_n=c_n, seq_lens=seq_lens)
    if how.lowering == "scan":
        lower_rnn_scan(b, spec, layers, flip=how.flip, **edges)
    else:
        lower_rnn(b, spec, layers, batch_layout=how.batch_layout, **edges)
