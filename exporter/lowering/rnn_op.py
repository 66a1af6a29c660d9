"""One layer → one ONNX recurrent node (RNN, LSTM or GRU). The only module that knows them.

Per direction, torch and ONNX compute the same gates from x·Wᵀ + h·Rᵀ + b (no clip, default
alpha/beta); the differences are data in cells.py (gate order, GRU's linear_before_reset) and
weights.py (packing). The node's activations:
    RNN   "Tanh" / "Relu" per direction, as torch's nonlinearity
    LSTM  ONNX's defaults (Sigmoid, Tanh, Tanh) are torch's: not written
    GRU   ONNX's defaults (Sigmoid, Tanh) are torch's; linear_before_reset=1 (see cells.py)
Both directions of a bidirectional layer share one node (direction="bidirectional").
"""
from __future__ import annotations

from typing import Mapping

from ..cells import ACTIVATION
from ..spec import RNNSpec
from ..weights import LayerWeights
from .builder import GraphBuilder

__all__ = ["lower_layer"]


def lower_layer(b: GraphBuilder, x: str, init: Mapping[str, str | None], w: LayerWeights,
                spec: RNNSpec, layer: int, names: Mapping[str, str | None] | None = None,
                layout: int = 0, seq_lens: str | None = None) -> tuple[str, dict[str, str]]:
    """Add layer `layer`'s node; returns (Y, {state: Y_state}).

    layout=0 (sequence-major):  x [seq, batch, I_k],  init[s] [dirs, batch, ·] or None (zeros)
        → Y [seq, dirs, batch, S],  Y_h [dirs, batch, S] (and Y_c [dirs, batch, H], LSTM)
    layout=1 (batch-major):     x [batch, seq, I_k],  init[s] [batch, dirs, ·] or None
        → Y [batch, seq, dirs, S],  Y_h [batch, dirs, S]
    `names[s]` names a final state output. seq_lens [batch] int32 or None (every sequence
    runs full length): with it, each direction runs over the first seq_lens[b] steps of
    sequence b (the reverse direction starts at its last valid step), Y is zero past them and
    the final states hold the last valid step: what torch computes on a PackedSequence.
    """
    cell, tag, names = spec.cell_info, f"l{layer}", names or {}
    inputs = [x, b.initializer(f"W_{tag}", w.W), b.initializer(f"R_{tag}", w.R),
              b.initializer(f"B_{tag}", w.B) if w.B is not None else "",
              seq_lens or "",
              *(init.get(s) or "" for s in cell.states)]
    while inputs and inputs[-1] == "":
        inputs.pop()                   # trailing optional inputs are left out, not blank
    y = b.fresh(f"Y_{tag}")
    finals = {s: names.get(s) or b.fresh(f"Y_{s}_{tag}") for s in cell.states}
    attrs: dict = dict(cell.extra_attrs)
    if layout:
        attrs["layout"] = 1            # layout=0 is the default; leave it unwritten
    if cell.has_nonlinearity:
        attrs["activations"] = [ACTIVATION[spec.nonlinearity]] * spec.num_directions
    b.node(cell.onnx_op, inputs, [y, *finals.values()], name=f"{cell.name}_{tag}", **attrs,
           hidden_size=spec.hidden_size,
           direction="bidirectional" if spec.bidirectional else "forward")
    return y, finals
