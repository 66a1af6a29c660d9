"""Building ONNX nodes: one name space, shared constants, and the pieces every lowering of a
recurrent module uses (the per-layer split of a state input, an explicit zero state).

Both lowerings (rnn_op + stack: native RNN / LSTM / GRU nodes; scan: MatMul + Scan) build
with this, and nothing here knows either of them.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..spec import RNNSpec

__all__ = ["GraphBuilder", "split_states", "explicit_zeros"]


class GraphBuilder:
    """Collects nodes and initializers with unique names.

    `taken` names already exist around the nodes being built (a host graph's tensors);
    `prefix` starts every name this builder invents.
    """

    def __init__(self, prefix: str = "", taken: Iterable[str] = ()) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set(taken)
        self._next: dict[str, int] = {}     # base → next suffix to try (linear, not quadratic)
        self._prefix = prefix
        self._consts: dict[tuple, str] = {}

    def fresh(self, base: str) -> str:
        base = self._prefix + base
        i = self._next.get(base, 0)
        name = base if i == 0 else f"{base}_{i}"
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._next[base] = i + 1
        self._names.add(name)
        return name

    def child(self) -> "GraphBuilder":
        """A builder for a subgraph (a Scan body): its own nodes, the same name space, since
        ONNX wants subgraph names distinct from the enclosing graph's."""
        sub = GraphBuilder()
        sub._names, sub._next, sub._prefix = self._names, self._next, self._prefix
        return sub

    def initializer(self, base: str, array: np.ndarray) -> str:
        name = self.fresh(base)
        # np.asarray(order="C"), not ascontiguousarray: that one turns scalars into [1]
        self.initializers.append(numpy_helper.from_array(np.asarray(array, order="C"), name))
        return name

    def const(self, base: str, array: np.ndarray) -> str:
        """An initializer shared by every use of the same small constant (shape, axes, steps)."""
        array = np.asarray(array)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            self._consts[key] = self.initializer(base, array)
        return self._consts[key]

    def node(self, op: str, inputs: list[str], outputs: list[str], **attrs) -> list[str]:
        name = self.fresh(attrs.pop("name", None) or op.lower())
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))
        return outputs

    def op(self, op: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        """Single-output node; returns its output name."""
        return self.node(op, inputs, [out or self.fresh(op.lower())], **attrs)[0]


def split_states(b: GraphBuilder, spec: RNNSpec, h0: str | None,
                 layout: int, name: str = "h0") -> list[str | None]:
    """A state input (h_0 or c_0) [layers·dirs, batch, ·] → per layer [dirs, batch, ·]
    (layout=1: [batch, dirs, ·]). None per layer when there is none (zero state)."""
    if h0 is None:
        return [None] * spec.num_layers
    axis = 0
    if layout == 1:
        h0, axis = b.op("Transpose", [h0], perm=[1, 0, 2]), 1   # [batch, layers·dirs, ·]
    if spec.num_layers == 1:
        return [h0]
    sizes = b.initializer(f"{name}_split", np.full(spec.num_layers, spec.num_directions, np.int64))
    outs = [b.fresh(f"{name}_l{k}") for k in range(spec.num_layers)]
    return b.node("Split", [h0, sizes], outs, axis=axis)


def explicit_zeros(b: GraphBuilder, spec: RNNSpec, x: str, size: int, name: str) -> str:
    """A zero initial state [layers·dirs, batch, size] computed from x's batch dimension
    (x: torch's layout, [seq, batch, I] or batch_first [batch, seq, I]) — for runtimes that
    mishandle a recurrent node without initial_h (tract aborts when the batch is symbolic).
    Built as one [1, batch, size] block per layer·direction, concatenated: tract fails to
    evaluate an LSTM whose in-graph state is a single computed tensor with a leading dimension
    above 1 at batch ≥ 2 (divergences.toml: tract-computed-initial-state-batch), and is exact
    with this form."""
    batch = b.op("Gather", [b.op("Shape", [x]),
                            b.const(f"axis_{spec.batch_axis}_1d",
                                    np.array([spec.batch_axis], np.int64))], axis=0)  # [1]
    dims = b.op("Concat", [b.const("one_1d", np.array([1], np.int64)), batch,
                           b.const(f"size_{size}", np.array([size], np.int64))], axis=0)
    block = b.op("ConstantOfShape", [dims],
                 value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]))  # [1, batch, size]
    n = spec.num_layers * spec.num_directions
    if n == 1:
        return b.op("Identity", [block], b.fresh(name))
    return b.op("Concat", [block] * n, b.fresh(name), axis=0)                   # [L·D, batch, size]
