"""Every export verifies itself: the file, run on onnxruntime at two shapes other than the
example, must compute what the module computes in torch.

Why: a file can be right at the example's shape and wrong at every other one — a forward that
branches on `x.shape[0]` is traced down one branch, a hook that torch.export did not see is
missing from the graph. Checking the symbolic dimensions only (the splice's own check) proves
the file *accepts* other shapes, not that it computes them. So after building the graph, the
exporter feeds it inputs whose batch and sequence both differ from the example (one smaller
where the module accepts it, one larger) and compares with torch eager; a disagreement refuses
the export (ExportError naming the shape and the error) before anything is written.
`verify=False` (CLI `--no-verify`) skips this.
"""
from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import onnx

from .errors import ExportError
from .cells import ONNX_OPS
from .onnx_walk import attribute, recurrent_nodes, subgraphs
from .feeds import make_feeds, module_from_state, rnn_forward
from .signature import Signature, flat_tensors, graph_inputs, input_sigs
from .spec import ExportOptions, RNNSpec

__all__ = ["verify_rnn", "verify_module", "layout0", "faithful_session", "VERIFY_TOLERANCE"]

# |ort − torch| ≤ atol + rtol·|torch| per element: loose enough for float32 noise in deep
# models, tight enough for what it is for (hooks and shape guards are off by 0.1–1)
VERIFY_TOLERANCE = (1e-4, 1e-3)
# onnxruntime takes a model from memory only below protobuf's 2 GiB limit
_MAX_IN_MEMORY = (1 << 31) - (1 << 24)


def layout0(model: onnx.ModelProto) -> None:
    """In place: recurrent nodes with layout=1 (which onnxruntime's kernels refuse) become
    layout=0 nodes between Transposes, which compute the same:
       X      [batch, seq, in]       → [seq, batch, in]          perm (1, 0, 2)
       h0, c0 [batch, dirs, H]       → [dirs, batch, H]          perm (1, 0, 2)
       Y      [seq, dirs, batch, H]  → [batch, seq, dirs, H]     perm (2, 0, 1, 3)
       Y_h, Y_c [dirs, batch, H]     → [batch, dirs, H]          perm (1, 0, 2)"""
    from onnx import helper

    def fix(graph: onnx.GraphProto) -> None:
        nodes = []
        for node in graph.node:
            for g in subgraphs(node):
                fix(g)
            if node.op_type not in ONNX_OPS or attribute(node, "layout") != 1:
                nodes.append(node)
                continue
            next(a for a in node.attribute if a.name == "layout").i = 0
            for k in (0, 5, 6):            # X, initial_h, initial_c
                if len(node.input) > k and node.input[k]:
                    name = f"{node.input[k]}__layout0_{node.name}_{k}"
                    nodes.append(helper.make_node("Transpose", [node.input[k]], [name],
                                                  perm=[1, 0, 2]))
                    node.input[k] = name
            after = []
            for k, out in enumerate(node.output):
                if out:
                    node.output[k] = f"{out}__layout0_raw"
                    after.append(helper.make_node("Transpose", [node.output[k]], [out],
                                                  perm=[2, 0, 1, 3] if k == 0 else [1, 0, 2]))
            nodes += [node, *after]
        del graph.node[:]
        graph.node.extend(nodes)
    fix(model.graph)


def faithful_session(model: onnx.ModelProto, intra_op_threads: int = 0) -> Any:
    """An onnxruntime CPU session computing exactly what the file says: layout=1 recurrent
    nodes (which onnxruntime refuses) run as layout=0 between Transposes, on a copy.
    Raises onnxruntime's own error if it refuses the file."""
    import onnxruntime as ort

    if any(attribute(n, "layout") == 1 for n in recurrent_nodes(model.graph)):
        model = onnx.ModelProto.FromString(model.SerializeToString())
        layout0(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def _session(model: onnx.ModelProto) -> Any:
    try:
        return faithful_session(model)
    except Exception as exc:
        raise ExportError(f"verification: onnxruntime refuses the exported file: "
                          f"{(str(exc).strip().splitlines() or [''])[0][:300]}") from None


def _too_large(model: onnx.ModelProto) -> bool:
    if model.ByteSize() < _MAX_IN_MEMORY:
        return False
    warnings.warn("the exported model is too large to verify in memory (over 2 GiB): not "
                  "verified; run `python -m conformance check` on the file", stacklevel=3)
    return True


def _judge(got: Sequence[np.ndarray], want: Sequence[np.ndarray], names: Sequence[str],
           where: str) -> None:
    atol, rtol = VERIFY_TOLERANCE
    if len(got) != len(want):
        raise ExportError(f"the exported file disagrees with the module {where}: it returns "
                          f"{len(got)} outputs, torch {len(want)}")
    for name, a, b in zip(names, got, want):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            raise ExportError(f"the exported file disagrees with the module {where}: {name} has "
                              f"shape {list(a.shape)}, torch {list(b.shape)}")
        if b.dtype.kind in "fc":
            with np.errstate(invalid="ignore", over="ignore"):
                err = np.abs(a.astype(np.float64) - b.astype(np.float64))
            bad = ~(err <= atol + rtol * np.abs(b.astype(np.float64)))
            bad &= ~(np.isnan(a) & np.isnan(b))
        else:
            bad, err = a != b, (a != b).astype(np.float64)
        if bad.any():
            worst = float(np.nanmax(np.where(np.isfinite(err), err, np.inf)))
            raise ExportError(f"the exported file disagrees with the module {where}: {name} "
                              f"max error {worst:.3g} ({int(bad.sum())}/{bad.size} elements "
                              "off); refusing to write it (a hook, an instance-level forward "
                              "or a branch on a tensor's size that torch.export traced for "
                              "the example only?). verify=False / --no-verify skips this check")


def _rnn_shapes(example: tuple[int, int] | None) -> list[tuple[int, int]]:
    """Two (batch, seq) shapes, each differing from the example in both."""
    if example is None:
        return [(3, 7), (1, 2)]
    b, s = example
    return [(b + 2, s + 3), (1 if b != 1 else 2, 1 if s != 1 else 2)]


def verify_rnn(model: onnx.ModelProto, spec: RNNSpec, state: Mapping[str, np.ndarray],
               opts: ExportOptions, example: tuple[int, int] | None = None) -> None:
    """A direct export (one nn.RNN / LSTM / GRU) against the module rebuilt from its weights."""
    import torch

    if _too_large(model):
        return
    module = module_from_state(spec, state)
    sess = _session(model)
    names = [o.name for o in sess.get_outputs()]
    for k, (batch, seq) in enumerate(_rnn_shapes(example)):
        feeds = make_feeds(spec, batch, seq, opts.initial_state == "input", k,
                           "unsorted" if opts.sequence_lens else None)
        want = rnn_forward(module, feeds, torch.float32)
        got = sess.run(names, feeds)
        _judge(got, [want[n] for n in names], names, f"at batch {batch}, sequence {seq}")


# ---- whole modules ------------------------------------------------------------------------

def _size_maps(example: Mapping[str, int]) -> list[dict[str, int]]:
    """Candidate size maps, smallest first, each differing from the example in every
    symbolic dimension; then one larger."""
    smaller = [{k: f(n) for k, n in example.items()}
               for f in (lambda n: 1 if n != 1 else 2, lambda n: 2 if n != 2 else 3,
                         lambda n: max(1, n // 2) if n // 2 not in (0, n) else n + 1,
                         lambda n: n - 1 if n > 1 else n + 2)]
    unique = []
    for m in smaller:
        if m not in unique and all(m[k] != example[k] for k in m):
            unique.append(m)
    return unique + [{k: n + 3 for k, n in example.items()}]


def _narrowed(shape: Mapping[str, int], example: Mapping[str, int]) -> list[dict[str, int]]:
    """`shape`, then `shape` with only the batch and sequence dims changed: torch.export may
    leave a size symbolic that the module's code still fixes (a Linear's features)."""
    core = {k: (v if k in ("batch", "seq") else example[k]) for k, v in shape.items()}
    return [dict(shape)] + ([core] if core != shape and core != dict(example) else [])


def verify_module(module: Any, args: tuple, model: onnx.ModelProto) -> None:
    """A whole-model export against the module in torch eager at two other shapes: one smaller
    than the example where the module accepts it, and one larger."""
    import torch
    import torch.utils._pytree as pytree

    if _too_large(model):
        return
    leaves, spec, tensors = flat_tensors(args)
    inputs = graph_inputs(model.graph)
    names = [o.name for o in model.graph.output]
    if len(tensors) != len(inputs):
        raise ExportError(f"cannot verify the export: the example args hold {len(tensors)} "
                          f"tensors, the graph takes {len(inputs)} inputs; pass verify=False "
                          "(--no-verify) and check the file with `python -m conformance check`")
    sig = Signature(input_sigs(model.graph, [leaves[i] for i in tensors]), tuple(names))
    sizes = sig.example_sizes()
    if not sizes:
        return      # the caller fixed every dimension: the example is the only shape
    rng = np.random.default_rng(0)
    sess = _session(model)

    def checked(shape: Mapping[str, int]) -> bool:
        """Compare at `shape`; False when the module itself refuses it (not the file's
        fault); raises ExportError when the file disagrees."""
        feeds = sig.feeds(shape, rng)
        call = list(leaves)
        for i, vi in zip(tensors, inputs):
            call[i] = torch.from_numpy(feeds[vi.name])
        try:
            with torch.no_grad():
                want = module(*pytree.tree_unflatten(call, spec))
        except Exception:
            return False
        want = [w.numpy() for w in pytree.tree_leaves(want) if isinstance(w, torch.Tensor)]
        got = sess.run(names, feeds)
        _judge(got, want, names, "at " + ", ".join(
            f"{n}={v}" for n, v in shape.items() if v != sizes[n]))
        return True

    *smaller, larger = _size_maps(sizes)
    # the first smaller shape the module accepts (none is fine), then the larger one (required);
    # any() stops at the first shape checked
    any(checked(tried) for shape in smaller for tried in _narrowed(shape, sizes))
    if not any(checked(tried) for tried in _narrowed(larger, sizes)):
        raise ExportError("cannot verify the export: the module refuses every input larger "
                          "than the example that the graph accepts; pass verify=False "
                          "(--no-verify)")
