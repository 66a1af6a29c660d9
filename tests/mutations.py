"""Deliberately wrong models: each a small graph surgery on a correct export.

Every verdict path (run, check, replay, the Node harness) must call each of them `fail`,
whatever the file is called. The mutations keep the graph features that known divergences
match on (no new activation class, no missing initial_h, ...), so no divergence may excuse
them: they are the silently wrong models a runtime or an exporter could produce.
"""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["MUTATIONS", "ADVERSARIAL_NAME"]

# A name under which, were verdicts still matched by name, every known divergence would apply.
ADVERSARIAL_NAME = "i10h20-l1-relu-bi-bf-h0zero-layout1-seqlens-scan--b1s1-lens_unsorted"


def _init(model: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))


def _set_init(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    t = next(t for t in model.graph.initializer if t.name == name)
    t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(value), name))


def _rnn(model: onnx.ModelProto) -> onnx.NodeProto:
    """The (first) recurrent node: RNN, or GRU for the gru base."""
    return next(n for n in model.graph.node if n.op_type in ("RNN", "GRU", "LSTM"))


def _attr(node: onnx.NodeProto, name: str, value) -> None:
    keep = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(keep + [helper.make_attribute(name, value)])


def _producer(model: onnx.ModelProto, output: str) -> tuple[onnx.NodeProto, int]:
    for node in model.graph.node:
        if output in node.output:
            return node, list(node.output).index(output)
    raise LookupError(output)


def _append_after(model: onnx.ModelProto, output: str, make: Callable[[str], list]) -> None:
    """Rename `output`'s producer to write `<output>_raw`, then add `make(raw)` nodes that
    write `output` again (so the graph's declared outputs keep their names)."""
    node, k = _producer(model, output)
    raw = f"{output}_raw"
    node.output[k] = raw
    model.graph.node.extend(make(raw))


def r_scaled(m: onnx.ModelProto) -> None:
    """R × 1.001: one hidden-to-hidden weight matrix off by 0.1 %."""
    _set_init(m, "R_l0", _init(m, "R_l0") * np.float32(1.001))


def directions_swapped(m: onnx.ModelProto) -> None:
    """The forward and reverse weights exchanged."""
    for name in ("W_l0", "R_l0", "B_l0"):
        _set_init(m, name, _init(m, name)[::-1])


def bias_dropped(m: onnx.ModelProto) -> None:
    _rnn(m).input[3] = ""


def activation_changed(m: onnx.ModelProto) -> None:
    """Tanh written where torch computes Relu (used on the relu base model)."""
    _attr(_rnn(m), "activations", ["Tanh", "Tanh"])


def gru_reset_before_linear(m: onnx.ModelProto) -> None:
    """linear_before_reset=0 on an nn.GRU (torch applies the reset gate after the recurrent
    linear map): onnxscript 0.5.7-0.7.0's silent bug. (Not a changed activation: onnx's
    reference evaluator ignores a GRU's activations attribute, so that wrong file computes
    torch's answer there; no output comparison can see it.)"""
    _attr(_rnn(m), "linear_before_reset", 0)


def r_transposed(m: onnx.ModelProto) -> None:
    _set_init(m, "R_l0", np.swapaxes(_init(m, "R_l0"), 1, 2))


def h0_ignored(m: onnx.ModelProto) -> None:
    """h_0 is still a graph input and still reaches the RNN, multiplied by zero."""
    m.graph.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), "zero"))
    m.graph.node.insert(0, helper.make_node("Mul", ["h_0", "zero"], ["h_0_zeroed"]))
    _rnn(m).input[5] = "h_0_zeroed"


def reverse_hn_wrong(m: onnx.ModelProto) -> None:
    """Only the reverse direction's half of h_n off by 1e-3; output untouched."""
    delta = np.zeros((2, 1, 20), np.float32)
    delta[1] = 1e-3
    m.graph.initializer.append(numpy_helper.from_array(delta, "delta"))
    _append_after(m, "h_n", lambda raw: [helper.make_node("Add", [raw, "delta"], ["h_n"])])


def output_truncated(m: onnx.ModelProto) -> None:
    """The last time step dropped from output."""
    for name, v in (("t_start", [0]), ("t_end", [-1]), ("t_axis", [0])):
        m.graph.initializer.append(numpy_helper.from_array(np.array(v, np.int64), name))
    _append_after(m, "output", lambda raw: [
        helper.make_node("Slice", [raw, "t_start", "t_end", "t_axis"], ["output"])])


def float64_outputs(m: onnx.ModelProto) -> None:
    """Right numbers, wrong dtype: both outputs cast to float64."""
    for name in ("output", "h_n"):
        _append_after(m, name, lambda raw, name=name: [
            helper.make_node("Cast", [raw], [name], to=TensorProto.DOUBLE)])
    for out in m.graph.output:
        out.type.tensor_type.elem_type = TensorProto.DOUBLE


def nan_weight(m: onnx.ModelProto) -> None:
    r = _init(m, "R_l0").copy()
    r[0, 0, 0] = np.nan
    _set_init(m, "R_l0", r)


def extra_output(m: onnx.ModelProto) -> None:
    """Right outputs plus one torch does not produce."""
    m.graph.node.append(helper.make_node("Identity", ["h_n"], ["debug"]))
    m.graph.output.append(helper.make_tensor_value_info("debug", TensorProto.FLOAT,
                                                        [2, "batch", 20]))


# name → (mutation, base model: "tanh" or "relu" (bidirectional nn.RNN), "gru" (bidirectional
# nn.GRU: the same surgery on a GRU node, for runtimes that run GRU but refuse RNN nodes, such
# as onnxruntime-web's WebGPU provider))
MUTATIONS: dict[str, tuple[Callable[[onnx.ModelProto], None], str]] = {
    "r_scaled": (r_scaled, "tanh"),
    "directions_swapped": (directions_swapped, "tanh"),
    "bias_dropped": (bias_dropped, "tanh"),
    "activation_changed": (activation_changed, "relu"),
    "r_transposed": (r_transposed, "tanh"),
    "h0_ignored": (h0_ignored, "tanh"),
    "reverse_hn_wrong": (reverse_hn_wrong, "tanh"),
    "output_truncated": (output_truncated, "tanh"),
    "float64_outputs": (float64_outputs, "tanh"),
    "nan_weight": (nan_weight, "tanh"),
    "extra_output": (extra_output, "tanh"),
    "gru_r_scaled": (r_scaled, "gru"),
    "gru_directions_swapped": (directions_swapped, "gru"),
    "gru_bias_dropped": (bias_dropped, "gru"),
    "gru_reset_before_linear": (gru_reset_before_linear, "gru"),
    "gru_h0_ignored": (h0_ignored, "gru"),
    "gru_reverse_hn_wrong": (reverse_hn_wrong, "gru"),
}


def mutate(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    out = copy.deepcopy(model)
    MUTATIONS[name][0](out)
    onnx.checker.check_model(out)
    return out
