"""What a model *is*, read from the graph and the feeds: the features known divergences match.

A known divergence must never turn on a file's name: `check` and `replay` see whatever a user
called the file, and a generated case id is only a name too. So every path (run, check,
replay) derives these features from the ONNX graph it is about to run and from the inputs it
feeds, and divergences.toml entries state the features they cover.

Graph features (live nodes only, subgraphs included: a node whose results reach no graph
output cannot change a result, so a dead node never makes a divergence apply). "A recurrent
node" is an ONNX RNN, LSTM or GRU node:
    rnn-op                  an ONNX RNN node
    lstm-op                 an ONNX LSTM node
    gru-op                  an ONNX GRU node
    rnn-bidirectional       a recurrent node with direction="bidirectional"
    rnn-unidirectional      a recurrent node with direction forward or reverse
    rnn-activation-relu     an RNN node whose activations include Relu
    rnn-activation-not-tanh an RNN node with any activation other than Tanh
    rnn-layout1             a recurrent node with layout=1 (batch-major)
    rnn-sequence-lens       a recurrent node fed a sequence_lens input
    rnn-no-initial-h        a recurrent node without an initial_h input (zero initial state)
    rnn-computed-initial-state  a recurrent node (top-level graph) whose initial_h is computed
                            in the graph from no graph input's values (e.g. zeros shaped from
                            the input's Shape), rather than fed or absent — as one tensor: a
                            state concatenated from per-layer·direction blocks (what the
                            exporter's explicit zero state writes) does not count
    rnn-symbolic-batch      a recurrent node whose input's batch dimension is not a fixed
                            number (per ONNX shape inference; unknown counts as symbolic)
    scan                    a Scan node
    scan-rnn-body           a Scan whose body is only MatMul, Add, Tanh/Relu and Identity: an
                            unmasked nn.RNN step (no gates, no sequence_lens masking)
    scan-reverse-direction  a Scan with a reversed scan input or output
                            (scan_input_directions / scan_output_directions entry 1)
    negative-step-slice     a Slice whose steps are a constant with a negative entry
    lstm-states-consumed    an LSTM node (top-level) whose final h and c (Y_h, Y_c) both feed
                            further nodes, or a Scan stepping an LSTM (a loop state computed as
                            Mul(…, Tanh(the next loop state)): h = o ⊙ tanh(c)) whose final h
                            and c both do: what a multi-layer LSTM's Concat of the per-layer
                            states makes
Input features (from the feeds of one case):
    padded                  a sequence_lens feed with a length below the sequence length
    batch1-seq1             the first input's two leading dims are both 1
    fixed-size-mismatch     a feed's size differs from a size the graph declares fixed (a
                            file that froze its sequence length or batch, fed another one)
    frozen-output-size      the graph's `output` declares a fixed size on one of its two
                            leading axes (sequence, batch) and the `input` feed has another
                            size there: the file computes a frozen number of steps
Config features (only for a case whose exporter produced no file, so there is no graph to
read; taken from the generated matrix's own config, never from a user's file):
    lstm-proj-size          an nn.LSTM with proj_size
    (and rnn-op / lstm-op / gru-op, rnn-sequence-lens for the module's cell and options)
"""
from __future__ import annotations

import functools
from typing import Iterator, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from exporter.cells import ONNX_OPS
from exporter.onnx_walk import ancestors, subgraphs

__all__ = ["model_features", "feed_features", "case_features", "FEATURES", "state_pairs_consumed"]

FEATURES = frozenset({
    "rnn-op", "lstm-op", "gru-op", "rnn-bidirectional", "rnn-unidirectional", "rnn-activation-relu",
    "rnn-activation-not-tanh", "rnn-layout1", "rnn-sequence-lens", "rnn-no-initial-h", "rnn-symbolic-batch", "scan", "rnn-computed-initial-state",
    "scan-reverse-direction", "negative-step-slice", "scan-rnn-body", "lstm-states-consumed", "padded", "batch1-seq1", "fixed-size-mismatch", "frozen-output-size", "lstm-proj-size"})

_RNN_SEQUENCE_LENS, _RNN_INITIAL_H = 4, 5   # input positions of the ONNX RNN op


def _names_used(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name a graph's nodes read, its subgraphs' included (outer-scope reads)."""
    used = set()
    for node in graph.node:
        used.update(node.input)
        for g in subgraphs(node):
            used |= _names_used(g)
    return used


def _live(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The nodes whose results reach one of the graph's outputs (ONNX keeps nodes in
    topological order, so one backward pass finds them)."""
    needed = {o.name for o in graph.output}
    live = []          # in reverse order: features are a set, order does not matter
    for node in reversed(graph.node):
        if needed & set(node.output):
            live.append(node)
            needed.update(node.input)
            for g in subgraphs(node):
                needed |= _names_used(g)
    return live


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """The live nodes, and the live nodes of their subgraphs."""
    for node in _live(graph):
        yield node
        for g in subgraphs(node):
            yield from _nodes(g)


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    # weights kept as external data are never a Slice's steps: not read here
    found = {t.name: numpy_helper.to_array(t) for t in graph.initializer
             if t.data_location != onnx.TensorProto.EXTERNAL}
    for node in _nodes(graph):
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    found[node.output[0]] = numpy_helper.to_array(attr.t)
    return found


def _input(node: onnx.NodeProto, k: int) -> str:
    return node.input[k] if len(node.input) > k else ""


def _rnn_features(node: onnx.NodeProto, dims: Mapping[str, tuple]) -> set[str]:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    # onnx returns string attributes as bytes; no direction means forward
    bidirectional = attrs.get("direction") == b"bidirectional"
    feats = {f"{node.op_type.lower()}-op",
             "rnn-bidirectional" if bidirectional else "rnn-unidirectional"}
    if node.op_type == "RNN":    # LSTM and GRU are written with ONNX's default activations
        acts = [a.decode() for a in attrs.get("activations", [b"Tanh"])]
        if "Relu" in acts:
            feats.add("rnn-activation-relu")
        if any(a != "Tanh" for a in acts):
            feats.add("rnn-activation-not-tanh")
    layout1 = attrs.get("layout") == 1
    if layout1:
        feats.add("rnn-layout1")
    if _input(node, _RNN_SEQUENCE_LENS):
        feats.add("rnn-sequence-lens")
    if not _input(node, _RNN_INITIAL_H):
        feats.add("rnn-no-initial-h")
    x = dims.get(node.input[0])
    batch_axis = 0 if layout1 else 1           # X: [seq, batch, …], or layout=1 [batch, seq, …]
    if x is None or len(x) <= batch_axis or x[batch_axis] is None:
        feats.add("rnn-symbolic-batch")
    return feats


def _inferred_dims(model: onnx.ModelProto) -> dict[str, tuple]:
    """Tensor name → its dims (an int, or None where not a fixed number), after shape
    inference; a graph that cannot be inferred keeps only what it declares."""
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:   # a graph onnx cannot infer: its declarations are all there is
        pass
    found = {}
    for vi in (*model.graph.input, *model.graph.value_info, *model.graph.output):
        if vi.type.tensor_type.HasField("shape"):
            found[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                   for d in vi.type.tensor_type.shape.dim)
    return found


def _from_blocks(graph: onnx.GraphProto, name: str) -> bool:
    """`name` is (a Split or Identity of) a Concat along axis 0: one block per layer and
    direction, or a single block passed through Identity."""
    producers = {o: n for n in graph.node for o in n.output if o}
    node = producers.get(name)
    while node is not None and node.op_type in ("Split", "Identity"):
        if node.op_type == "Identity":
            return True
        node = producers.get(node.input[0])
    return node is not None and node.op_type == "Concat" and any(
        a.name == "axis" and a.i == 0 for a in node.attribute)


def state_pairs_consumed(graph: onnx.GraphProto) -> list[tuple[str, str]]:
    """(h, c) output names of each top-level LSTM node, or each Scan with two or more loop
    states, whose final h and c are both read by other live nodes."""
    live = _live(graph)
    read = {name for node in live for name in node.input}
    pairs = []
    for node in live:
        if node.op_type == "LSTM":
            h, c = _input_out(node, 1), _input_out(node, 2)
        elif node.op_type == "Scan":
            pairs += [(h, c) for h, c in _scan_lstm_states(node) if h in read and c in read]
            continue
        else:
            continue
        if h and c and h in read and c in read:
            pairs.append((h, c))
    return pairs


def _scan_lstm_states(node: onnx.NodeProto) -> list[tuple[str, str]]:
    """(h, c) final-state outputs of a Scan whose body steps an LSTM: loop state k's new value
    is Mul(…, Tanh(loop state k+1's new value)), i.e. h = o ⊙ tanh(c)."""
    body = next(a.g for a in node.attribute if a.name == "body")
    n_scan = next((a.i for a in node.attribute if a.name == "num_scan_inputs"), 0)
    n_states = len(node.input) - n_scan
    producer = {o: n for n in body.node for o in n.output if o}

    def source(name: str) -> str:             # through Identity nodes
        while name in producer and producer[name].op_type == "Identity":
            name = producer[name].input[0]
        return name

    pairs = []
    for k in range(n_states - 1):
        h_new = producer.get(source(body.output[k].name))
        c_new = source(body.output[k + 1].name)
        if h_new is None or h_new.op_type != "Mul":
            continue
        tanhs = [producer.get(source(i)) for i in h_new.input]
        if any(t is not None and t.op_type == "Tanh" and source(t.input[0]) == c_new
               for t in tanhs):
            pairs.append((_input_out(node, k), _input_out(node, k + 1)))
    return pairs


def _input_out(node: onnx.NodeProto, k: int) -> str:
    return node.output[k] if len(node.output) > k else ""


def graph_features(model: onnx.ModelProto) -> frozenset[str]:
    consts = _constants(model.graph)
    dims = _inferred_dims(model)
    feats: set[str] = set()
    inputs = {i.name for i in model.graph.input} - {t.name for t in model.graph.initializer}
    top = {n.name for n in model.graph.node if n.op_type in ONNX_OPS}
    for node in _nodes(model.graph):
        if node.op_type in ONNX_OPS:
            feats |= _rnn_features(node, dims)
            h0 = _input(node, _RNN_INITIAL_H)
            if (h0 and node.name in top and not ancestors(model.graph, h0) & inputs
                    and not _from_blocks(model.graph, h0)):
                feats.add("rnn-computed-initial-state")
        elif node.op_type == "Scan":
            feats.add("scan")
            body = next(a.g for a in node.attribute if a.name == "body")   # Scan requires it
            ops = {n.op_type for n in body.node}
            if ops & {"Tanh", "Relu"} and ops <= {"MatMul", "Add", "Tanh", "Relu", "Identity"}:
                feats.add("scan-rnn-body")
            if any(a.name in ("scan_input_directions", "scan_output_directions")
                   and any(a.ints) for a in node.attribute):
                feats.add("scan-reverse-direction")
        elif node.op_type == "Slice" and _input(node, 4) in consts \
                and (consts[_input(node, 4)] < 0).any():
            feats.add("negative-step-slice")
    if state_pairs_consumed(model.graph):
        feats.add("lstm-states-consumed")
    return frozenset(feats)


@functools.lru_cache(maxsize=64)
def _cached(path: str, mtime_ns: int, size: int) -> tuple[frozenset[str], tuple]:
    model = onnx.load(path, load_external_data=False)
    fixed = tuple((i.name, tuple(d.dim_value if d.HasField("dim_value") else None
                                 for d in i.type.tensor_type.shape.dim))
                  for i in (*model.graph.input, *model.graph.output))
    return graph_features(model), fixed


def model_features(path: str) -> frozenset[str]:
    """Graph features of the model file (cached per path, modification time and size)."""
    import os
    st = os.stat(path)
    return _cached(str(path), st.st_mtime_ns, st.st_size)[0]


def _fixed_dims(path: str) -> dict[str, tuple]:
    import os
    st = os.stat(path)
    return dict(_cached(str(path), st.st_mtime_ns, st.st_size)[1])


def feed_features(feeds: Mapping[str, np.ndarray]) -> frozenset[str]:
    feats = set()
    first = next(iter(feeds.values()), None)
    if first is not None and first.ndim >= 2 and first.shape[0] == first.shape[1] == 1:
        feats.add("batch1-seq1")
    lens = feeds.get("sequence_lens")
    if lens is not None and first is not None and first.ndim >= 2:
        batch = int(lens.shape[0])
        # The first input is [seq, batch, …] or [batch, seq, …]: seq is the other dim.
        lead = tuple(int(d) for d in first.shape[:2])
        seq = lead[1] if lead[0] == batch else lead[0]
        if (np.asarray(lens) < seq).any():
            feats.add("padded")
    return frozenset(feats)


def case_features(model_path: str, feeds: Mapping[str, np.ndarray]) -> frozenset[str]:
    feats = set(model_features(model_path) | feed_features(feeds))
    declared = _fixed_dims(model_path)
    out, x = declared.get("output"), feeds.get("input")
    if out is not None and x is not None and any(
            d is not None and d != size for d, size in zip(out[:2], np.shape(x)[:2])):
        feats.add("frozen-output-size")
    for name, value in feeds.items():
        dims = declared.get(name)
        if dims is not None and (len(dims) != np.ndim(value) or any(
                d is not None and d != s for d, s in zip(dims, np.shape(value)))):
            feats.add("fixed-size-mismatch")
    return frozenset(feats)
