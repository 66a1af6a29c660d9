"""What a whole-model file says about itself, so that torch's answer can be rebuilt from it.

A whole-model export writes one JSON metadata entry, `signature`:
    module         "package.module:Class" of the exported module (absent for a class that
                   cannot be imported by name, e.g. one defined inside a function)
    module_kwargs  its constructor's keyword arguments, when the exporter was told them
    inputs         per graph input, in order: name, dtype, the example's shape, each axis's
                   symbolic name (null where the size is fixed) and, for integer inputs (token
                   ids, indices), the example's value range [low, high]
    outputs        the graph's output names, in order (the forward's tensors, flattened)
    args_spec      torch's pytree spec of the forward's arguments (tuples, dicts of tensors),
                   so flat graph inputs become the forward's call again
    state_pairs    [input, output] pairs that carry a recurrent state: the output is what to
                   feed the input on the next chunk of a stream
    rnn_modules    per recurrent module, in call order: its path and the graph tensors of its
                   input, output and states (for "which module diverged first")
`conformance check` reads it; files another exporter wrote get the same Signature built from
their graph and the example shapes a user gives.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import onnx

from .errors import ExportError
from .onnx_walk import ancestors, descendants

__all__ = ["InputSig", "RNNEdges", "Signature", "SIGNATURE_KEY", "graph_inputs",
           "read_signature", "class_path", "state_pairs", "flat_tensors", "call_flat",
           "input_sigs", "placeholder_edges"]

SIGNATURE_KEY = "signature"


@dataclass(frozen=True)
class InputSig:
    name: str
    dtype: str                          # numpy dtype name
    example: tuple[int, ...]            # the example's shape
    dims: tuple[str | None, ...]        # per axis: symbolic name, or None where fixed
    low: int | None = None              # integer inputs: the example's value range
    high: int | None = None

    def axis(self, dim: str) -> int | None:
        return self.dims.index(dim) if dim in self.dims else None


@dataclass(frozen=True)
class RNNEdges:
    """One spliced recurrent module's tensors in the graph."""

    path: str
    input: str
    output: str
    states_in: tuple[str, ...] = ()     # h_0[, c_0] where the forward passed a state
    states_out: tuple[str, ...] = ()    # h_n[, c_n]
    time_axis: int = 0                  # the output's time axis (1 for batch_first)


@dataclass(frozen=True)
class Signature:
    inputs: tuple[InputSig, ...]
    outputs: tuple[str, ...]
    module: str | None = None
    module_kwargs: Mapping[str, Any] | None = None
    args_spec: str | None = None
    state_pairs: tuple[tuple[str, str], ...] = ()
    rnn_modules: tuple[RNNEdges, ...] = field(default_factory=tuple)

    def example_sizes(self) -> dict[str, int]:
        """Each symbolic dimension's name → its size in the example."""
        sizes: dict[str, int] = {}
        for i in self.inputs:
            for dim, n in zip(i.dims, i.example):
                if dim is not None:
                    sizes.setdefault(dim, n)
        return sizes

    def feeds(self, sizes: Mapping[str, int], rng: Any) -> dict[str, Any]:
        """Inputs (numpy) with the symbolic dims at `sizes` (the others at the example's) and
        values like the example's: floats normal, integers within the example's range (token
        ids stay valid ids), booleans random."""
        import numpy as np

        feeds = {}
        for i in self.inputs:
            shape = [sizes.get(d, n) if d is not None else n for d, n in zip(i.dims, i.example)]
            dtype = np.dtype(i.dtype)
            if dtype.kind == "f":
                value = rng.standard_normal(shape).astype(dtype)
            elif dtype.kind == "b":
                value = rng.random(shape) < 0.5
            else:
                low, high = (i.low, i.high) if i.low is not None else (0, 0)
                value = rng.integers(low, high + 1, shape).astype(dtype)
            feeds[i.name] = value
        return feeds

    def call(self, module: Any, feeds: Mapping[str, Any], dtype: Any = None) -> list[Any]:
        """`module` on these feeds (numpy, by input name; floating ones cast to `dtype` when
        given), arranged as its forward's arguments; its output tensors, flattened."""
        import numpy as np
        import torch

        tensors = [torch.from_numpy(np.ascontiguousarray(feeds[i.name])) for i in self.inputs]
        if dtype is not None:
            tensors = [t.to(dtype) if t.is_floating_point() else t for t in tensors]
        return call_flat(module, self.args_spec, tensors)

    def to_json(self) -> str:
        data = asdict(self)
        data["module_kwargs"] = dict(self.module_kwargs) if self.module_kwargs is not None else None
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Signature":
        try:
            data = json.loads(text)
            return cls(
                inputs=tuple(InputSig(i["name"], i["dtype"], tuple(i["example"]),
                                      tuple(i["dims"]), i.get("low"), i.get("high"))
                             for i in data["inputs"]),
                outputs=tuple(data["outputs"]), module=data.get("module"),
                module_kwargs=data.get("module_kwargs"), args_spec=data.get("args_spec"),
                state_pairs=tuple(tuple(p) for p in data.get("state_pairs", ())),
                rnn_modules=tuple(RNNEdges(r["path"], r["input"], r["output"],
                                           tuple(r["states_in"]), tuple(r["states_out"]),
                                           int(r.get("time_axis", 0)))
                                  for r in data.get("rnn_modules", ())))
        except (ValueError, KeyError, TypeError, RecursionError):
            raise ExportError("the file's signature metadata is unreadable") from None


def class_path(module: Any) -> str | None:
    """"package.module:Class", when the class can be imported by that name."""
    cls = type(module)
    if "<" in cls.__qualname__ or cls.__module__ == "__main__":
        return None
    return f"{cls.__module__}:{cls.__qualname__}"


def graph_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """The inputs a caller feeds (initializers listed as inputs are not)."""
    inits = {t.name for t in graph.initializer}
    return [i for i in graph.input if i.name not in inits]


def _dims(vi: onnx.ValueInfoProto) -> list[str]:
    """Each axis as text: its fixed size, or its symbolic name ("?" when unnamed)."""
    return [str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?")
            for d in vi.type.tensor_type.shape.dim]


def flat_tensors(args: Any) -> tuple[list[Any], Any, list[int]]:
    """(leaves, pytree spec, positions of the tensor leaves) of a forward's arguments."""
    import torch
    import torch.utils._pytree as pytree

    leaves, spec = pytree.tree_flatten(tuple(args))
    return leaves, spec, [i for i, v in enumerate(leaves) if isinstance(v, torch.Tensor)]


def call_flat(module: Any, args_spec: str | None, tensors: Sequence[Any]) -> list[Any]:
    """Call `module` with flat input tensors arranged as the forward's arguments; returns its
    output tensors, flattened in order."""
    import torch
    import torch.utils._pytree as pytree

    if args_spec is None:
        args = tuple(tensors)
    else:
        spec = pytree.treespec_loads(args_spec)
        if spec.num_leaves != len(tensors):
            raise ExportError(f"the forward takes {spec.num_leaves} tensors, got {len(tensors)}")
        args = pytree.tree_unflatten(list(tensors), spec)
    with torch.no_grad():
        out = module(*args)
    return [o for o in pytree.tree_leaves(out) if isinstance(o, torch.Tensor)]


def state_pairs(graph: onnx.GraphProto, modules: Iterable[RNNEdges]) -> list[tuple[str, str]]:
    """Graph input → graph output pairs that carry a recurrent state: the input reaches a
    recurrent module's initial state k (not merely through its shape), the output comes from
    the same module's final state k, and both have the same type and shape. Read on the graph
    before the recurrent modules are lowered (their edges are then single tensors)."""
    inputs = {vi.name: vi for vi in graph_inputs(graph)}
    outputs = {vi.name: vi for vi in graph.output}
    pairs: list[tuple[str, str]] = []
    for m in modules:
        for s_in, s_out in zip(m.states_in, m.states_out):
            srcs = [n for n in ancestors(graph, s_in) if n in inputs]
            sinks = [n for n in descendants(graph, s_out) if n in outputs]
            for src in sorted(srcs, key=list(inputs).index):
                match = [o for o in sorted(sinks, key=list(outputs).index)
                         if _dims(outputs[o]) == _dims(inputs[src])
                         and outputs[o].type.tensor_type.elem_type
                         == inputs[src].type.tensor_type.elem_type
                         and o not in {p[1] for p in pairs}]
                if match and src not in {p[0] for p in pairs}:
                    pairs.append((src, match[0]))
    return pairs


def input_sigs(graph: onnx.GraphProto, examples: Sequence[Any]) -> tuple[InputSig, ...]:
    """Each graph input with the example tensor fed to it (matched by position)."""
    import torch
    from onnx import helper

    sigs = []
    for vi, t in zip(graph_inputs(graph), examples):
        dims = tuple(None if d.HasField("dim_value") else (d.dim_param or f"{vi.name}.{k}")
                     for k, d in enumerate(vi.type.tensor_type.shape.dim))
        dtype = str(helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))
        low = high = None
        if not t.is_floating_point() and t.dtype != torch.bool and t.numel():
            low, high = int(t.min()), int(t.max())
        sigs.append(InputSig(vi.name, dtype, tuple(int(s) for s in t.shape), dims, low, high))
    return tuple(sigs)


def read_signature(model: onnx.ModelProto) -> Signature | None:
    """The file's own signature, or None for a file that carries none."""
    for p in model.metadata_props:
        if p.key == SIGNATURE_KEY:
            return Signature.from_json(p.value)
    return None


def placeholder_edges(graph: onnx.GraphProto, domain: str, paths: Sequence[str],
                      time_axes: Sequence[int]) -> list[RNNEdges]:
    """Each recurrent module call's tensors, read off its placeholder node (in call order):
    inputs (x[, h_0[, c_0]]), outputs (output, h_n[, c_n])."""
    edges = []
    for node in graph.node:
        if node.domain == domain:
            key = next(a.i for a in node.attribute if a.name == "key")
            edges.append(RNNEdges(paths[key], node.input[0], node.output[0],
                                  tuple(i for i in node.input[1:] if i),
                                  tuple(o for o in node.output[1:] if o), time_axes[key]))
    return edges
