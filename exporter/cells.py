"""The three recurrent cells as data: what differs between nn.RNN, nn.LSTM and nn.GRU.

Everything else (packing, layer plumbing, graph I/O, the scan lowering's scaffolding, truth,
conformance) reads these rows instead of branching on the cell's name.

Gate order. torch stacks a cell's gates along dim 0 of weight_ih / weight_hh / biases in its
own order; the ONNX ops expect another:
    LSTM  torch i, f, g, o   → ONNX i, o, f, c   (g is ONNX's "c", the cell candidate)
    GRU   torch r, z, n      → ONNX z, r, h      (n is ONNX's "h", the new-state candidate)
`perm[j]` is the torch block that becomes ONNX block j; packing permutes H-sized blocks.

GRU's reset gate. torch computes n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)): the reset gate
multiplies the hidden projection *after* its bias. ONNX GRU's default (linear_before_reset=0)
applies r to h before the projection; linear_before_reset=1 is torch's formula, and keeps b_hn
(the R-bias of the h gate) inside r ⊙ (…), which is why that bias can never be folded into
the input bias.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["Cell", "CELLS", "CELL_NAMES", "ONNX_OPS", "ACTIVATION"]


@dataclass(frozen=True)
class Cell:
    name: str                     # "rnn" | "lstm" | "gru": the CLI's --cell, ids, metadata
    torch_class: str              # nn.<torch_class>
    onnx_op: str                  # the ONNX operator of the rnn lowering
    gates: int                    # gate blocks stacked in each weight (1, 4, 3)
    perm: tuple[int, ...]         # ONNX gate block j = torch gate block perm[j]
    states: tuple[str, ...]       # recurrent state tensors: ("h",) or ("h", "c")
    has_nonlinearity: bool        # nn.RNN's nonlinearity argument
    has_proj: bool                # nn.LSTM's proj_size argument
    extra_attrs: tuple[tuple[str, int], ...] = ()   # fixed ONNX attributes

    @property
    def has_cell_state(self) -> bool:
        return "c" in self.states


CELLS = MappingProxyType({
    "rnn": Cell("rnn", "RNN", "RNN", 1, (0,), ("h",), has_nonlinearity=True, has_proj=False),
    "lstm": Cell("lstm", "LSTM", "LSTM", 4, (0, 3, 1, 2), ("h", "c"), has_nonlinearity=False,
                 has_proj=True),
    "gru": Cell("gru", "GRU", "GRU", 3, (1, 0, 2), ("h",), has_nonlinearity=False,
                has_proj=False, extra_attrs=(("linear_before_reset", 1),)),
})
CELL_NAMES = tuple(CELLS)
# the ONNX recurrent operators, one per cell: RNN, LSTM, GRU
ONNX_OPS = tuple(c.onnx_op for c in CELLS.values())


# torch's nonlinearity → the ONNX name: the RNN op's activations attribute, and the op itself
ACTIVATION = MappingProxyType({"tanh": "Tanh", "relu": "Relu"})
