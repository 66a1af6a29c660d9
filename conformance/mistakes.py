"""What a runtime computes instead: the mistake each wrong-result divergence predicts, as data.

A feature match alone cannot tell "the runtime is wrong in the known way" from "the model is
wrong": a Relu file with wrong weights on tract has the Relu feature too. So a wrong-result
entry of divergences.toml names its mistake (`computes = "activations-as-tanh"`), and a cell is
`xfail` only when the mistake explains the result exactly:

1. the file is right: run faithfully (onnxruntime CPU, this process), it computes torch's
   answer within the tolerance; and
2. the runtime made exactly the documented mistake: its result matches the same file with the
   mistake applied (a graph rewrite below), run faithfully, within the runtime's tolerance.

Otherwise the cell stays `fail`. A mistake is a rewrite of the ONNX graph, so the prediction
needs no torch module: `check` and `replay` (which only have files and answers) prove it the
same way as `run`.

The faithful run needs a graph onnxruntime accepts: recurrent nodes with layout=1 (which its
kernels refuse) are rewritten to layout=0 between Transposes first, which computes the same.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np
import onnx
from onnx import helper

from exporter.onnx_walk import attribute, recurrent_nodes
from exporter.verify import faithful_session

from .compare import Comparison, compare

__all__ = ["Mistake", "MISTAKES", "UNKNOWN", "Proof", "prove"]

# input positions of the ONNX RNN / LSTM / GRU ops
_SEQUENCE_LENS = 4
UNKNOWN = "unknown"   # an entry whose mistake nobody has pinned down: it excuses no wrong result


def _set_attr(node: onnx.NodeProto, name: str, value: object) -> None:
    keep = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(keep + [helper.make_attribute(name, value)])


def _activations_as_tanh(model: onnx.ModelProto) -> None:
    """Every RNN node's activations read as Tanh (tract: the attribute is ignored)."""
    for node in recurrent_nodes(model.graph):
        if node.op_type == "RNN":
            dirs = 2 if attribute(node, "direction") == b"bidirectional" else 1
            _set_attr(node, "activations", ["Tanh"] * dirs)


def _sequence_lens_ignored(model: onnx.ModelProto) -> None:
    """Every recurrent node runs every sequence to the full length: sequence_lens dropped."""
    for node in recurrent_nodes(model.graph):
        if len(node.input) > _SEQUENCE_LENS:
            node.input[_SEQUENCE_LENS] = ""


def _layout_read_as_0(model: onnx.ModelProto) -> None:
    """layout=1 read as layout=0: the same tensors taken as [seq, batch, …] (OpenVINO)."""
    for node in recurrent_nodes(model.graph):
        if attribute(node, "layout") == 1:
            _set_attr(node, "layout", 0)


def _cell_state_as_hidden(model: onnx.ModelProto) -> None:
    """Where an LSTM's (or an LSTM Scan's) final h and c both feed further nodes, the nodes
    reading c read h's values (onnxruntime-web's JSEP WebGPU)."""
    from .features import state_pairs_consumed

    swap = dict((c, h) for h, c in state_pairs_consumed(model.graph))
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            if name in swap:
                node.input[k] = swap[name]


def _as_written(model: onnx.ModelProto) -> None:
    """No runtime mistake: the exporter wrote a wrong file and the runtime computes it."""


@dataclass(frozen=True)
class Mistake:
    name: str
    rewrite: Callable[[onnx.ModelProto], None]
    # whether the file itself must compute torch's answer when run faithfully: yes for a
    # runtime's mistake; no where the mistake is the exporter's (the file is what is wrong)
    file_must_be_right: bool = True

    @property
    def description(self) -> str:
        return (self.rewrite.__doc__ or self.name).strip()


MISTAKES: Mapping[str, Mistake] = MappingProxyType({m.name: m for m in (
    Mistake("activations-as-tanh", _activations_as_tanh),
    Mistake("sequence-lens-ignored", _sequence_lens_ignored),
    Mistake("layout-read-as-0", _layout_read_as_0),
    Mistake("cell-state-as-hidden", _cell_state_as_hidden),
    Mistake("the-file-as-written", _as_written, file_must_be_right=False),
)})


@functools.lru_cache(maxsize=32)
def _session(path: str, mtime_ns: int, size: int, mistake: str) -> object:
    """An onnxruntime CPU session of the file with `mistake` applied, run faithfully."""
    model = onnx.load(path)          # external data from the file's folder
    MISTAKES[mistake].rewrite(model)
    return faithful_session(model, intra_op_threads=1)


def _faithful(path: str, mistake: str, feeds: Mapping[str, np.ndarray]
              ) -> dict[str, np.ndarray]:
    st = os.stat(path)
    sess = _session(str(path), st.st_mtime_ns, st.st_size, mistake)
    wanted = {i.name for i in sess.get_inputs()}
    outputs = sess.run(None, {k: v for k, v in feeds.items() if k in wanted})
    return dict(zip((o.name for o in sess.get_outputs()), outputs))


@dataclass(frozen=True)
class Proof:
    holds: bool
    note: str


def _max_err(cmp: Comparison) -> str:
    return f"max abs err {cmp.max_abs_err:.3g}" + (f" ({cmp.message})" if cmp.message else "")


def prove(mistake: str, model_path: str, feeds: Mapping[str, np.ndarray],
          got: Mapping[str, np.ndarray], f32: Mapping[str, np.ndarray],
          f64: Mapping[str, np.ndarray], runtime: str) -> Proof:
    """Does `mistake` explain the runtime's result `got`? (steps 1 and 2 of the module doc)"""
    if mistake == UNKNOWN or mistake not in MISTAKES:
        return Proof(False, "the entry states no mistake that predicts the result, so a wrong "
                            "result cannot be told from a wrong model")
    m = MISTAKES[mistake]
    try:
        if m.file_must_be_right:
            right = compare("ort-cpu", _faithful(model_path, "the-file-as-written", feeds),
                            f32, f64)
            if not right.passed:
                return Proof(False, "the file itself disagrees with torch when run faithfully "
                                    f"(onnxruntime CPU: {_max_err(right)}): the model is wrong, "
                                    "whatever the runtime does")
        predicted = _faithful(model_path, mistake, feeds)
    except Exception as exc:     # the prediction cannot be computed: nothing is proven
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        return Proof(False, f"its prediction ({m.description}) could not be computed: "
                            f"{type(exc).__name__}: {first}")
    explained = compare(runtime, got, predicted, predicted)
    if not explained.passed:
        return Proof(False, f"the result is not what it predicts ({m.description}): "
                            f"{_max_err(explained)}")
    return Proof(True, f"the result is exactly the predicted mistake ({m.description})")
