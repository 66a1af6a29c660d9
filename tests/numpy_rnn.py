"""An independent numpy reading of the ONNX RNN operator spec, a third opinion in tests.

It reads W, R, B from the exported model's initializers (not from torch) and applies the
spec's equations, so a packing mistake shows up as a disagreement with torch.
    H_t = f(X_t·W[d]ᵀ + H_{t-1}·R[d]ᵀ + Wb[d] + Rb[d]);  d = 1 runs over reversed time.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

_F = {"Tanh": np.tanh, "Relu": lambda v: np.maximum(v, 0.0)}


def rnn_op(x, W, R, B, h0, activation):
    """x [seq, batch, I]; W [dirs, H, I]; R [dirs, H, H]; B [dirs, 2H] | None; h0 [dirs, batch, H];
    activation: one name for every direction, or a list with one per direction (as the op's
    `activations` attribute). Returns Y [seq, dirs, batch, H], Y_h [dirs, batch, H] in float64."""
    dirs, H = W.shape[0], W.shape[1]
    acts = [activation] * dirs if isinstance(activation, str) else list(activation)
    Y = np.zeros((x.shape[0], dirs, x.shape[1], H))
    Yh = np.zeros((dirs, x.shape[1], H))
    for d in range(dirs):
        f = _F[acts[d]]
        bias = 0.0 if B is None else B[d, :H] + B[d, H:]
        h = h0[d]
        steps = range(x.shape[0]) if d == 0 else reversed(range(x.shape[0]))
        for t in steps:
            h = f(x[t] @ W[d].T + h @ R[d].T + bias)
            Y[t, d] = h
        Yh[d] = h
    return Y, Yh


def run_model(model: onnx.ModelProto, x: np.ndarray, h0: np.ndarray | None, batch_first: bool):
    """Evaluate an exported model's RNN nodes in order, gluing layers as torch does."""
    init = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    rnns = [n for n in model.graph.node if n.op_type == "RNN"]
    seq_x = np.swapaxes(x, 0, 1) if batch_first else x
    seq_x = seq_x.astype(np.float64)
    finals = []
    for k, node in enumerate(rnns):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        act = attrs["activations"][0].decode()
        W, R = init[node.input[1]], init[node.input[2]]
        B = init[node.input[3]] if len(node.input) > 3 and node.input[3] else None
        dirs, H = W.shape[0], W.shape[1]
        batch = seq_x.shape[1]
        h = np.zeros((dirs, batch, H)) if h0 is None else h0[k * dirs:(k + 1) * dirs]
        Y, Yh = rnn_op(seq_x, W, R, B, h, act)
        seq_x = np.transpose(Y, (0, 2, 1, 3)).reshape(Y.shape[0], batch, dirs * H)
        finals.append(Yh)
    out = np.swapaxes(seq_x, 0, 1) if batch_first else seq_x
    return out, np.concatenate(finals, axis=0)
