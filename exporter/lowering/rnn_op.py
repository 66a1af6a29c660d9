"""One nn.RNN layer → one ONNX `RNN` node. The only module that knows the RNN op.

ONNX RNN (per direction, no clip, default alpha/beta):
    H_t = f(X_t·Wᵀ + H_{t-1}·Rᵀ + Wb + Rb)
torch nn.RNN:
    h_t = f(x_t·W_ihᵀ + b_ih + h_{t-1}·W_hhᵀ + b_hh)
so W = W_ih, R = W_hh, B = b_ih ‖ b_hh (see weights.py), and f is spelled "Tanh"/"Relu".
Both directions of a bidirectional layer share one node (direction="bidirectional").
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..spec import RNNSpec
from ..weights import LayerWeights

if TYPE_CHECKING:
    from .stack import GraphBuilder

__all__ = ["lower_layer", "ACTIVATION"]

# torch's nonlinearity → the ONNX name: the RNN op's activations attribute, and the op itself
ACTIVATION = {"tanh": "Tanh", "relu": "Relu"}


def lower_layer(b: "GraphBuilder", x: str, h0: str | None, w: LayerWeights, spec: RNNSpec,
                layer: int, y_h_name: str | None = None, layout: int = 0,
                seq_lens: str | None = None) -> tuple[str, str]:
    """Add layer `layer`'s RNN node.

    layout=0 (sequence-major):  x [seq, batch, I_k],  h0 [dirs, batch, H] or None (zeros)
        → Y [seq, dirs, batch, H],  Y_h [dirs, batch, H]
    layout=1 (batch-major):     x [batch, seq, I_k],  h0 [batch, dirs, H] or None
        → Y [batch, seq, dirs, H],  Y_h [batch, dirs, H]
    `y_h_name` names Y_h. seq_lens [batch] int32 or None (every sequence runs full length):
    with it, each direction runs over the first seq_lens[b] steps of sequence b (the reverse
    direction starts at its last valid step), Y is zero past them and Y_h holds the last valid
    step, which is what torch computes on a PackedSequence.
    """
    tag = f"l{layer}"
    inputs = [x, b.initializer(f"W_{tag}", w.W), b.initializer(f"R_{tag}", w.R),
              b.initializer(f"B_{tag}", w.B) if w.B is not None else "",
              seq_lens or "",
              h0 or ""]
    while inputs and inputs[-1] == "":
        inputs.pop()                   # trailing optional inputs are left out, not blank
    y = b.fresh(f"Y_{tag}")
    y_h = y_h_name or b.fresh(f"Y_h_{tag}")
    extra = {"layout": 1} if layout else {}   # layout=0 is the default; leave it unwritten
    b.node("RNN", inputs, [y, y_h], name=f"rnn_{tag}", **extra,
           hidden_size=spec.hidden_size,
           direction="bidirectional" if spec.bidirectional else "forward",
           activations=[ACTIVATION[spec.nonlinearity]] * spec.num_directions)
    return y, y_h
