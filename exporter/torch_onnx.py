"""Whole modules: torch.onnx exports everything around the RNNs; each nn.RNN becomes the same
lowering the direct export uses (lowering.lower), spliced in where torch.onnx left a
placeholder node for it.

Why a placeholder: torch.onnx's default exporter decomposes nn.RNN into per-step ops and freezes
the sequence length. During export each nn.RNN is swapped for a module that emits one
`torch_rnn_onnx::RNN` node (torch.onnx.ops.symbolic_multi_out) whose output shapes are written in
terms of the input's symbolic sizes, so batch and sequence stay dynamic; afterwards the node is
replaced by native ONNX RNN nodes built from that RNN's weights.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import warnings
from typing import Any, Iterator, Mapping, Sequence

import onnx
from onnx import helper

from . import __version__
from .errors import ExportError
from .graph import PRODUCER_NAME, save_atomic
from .lowering import GraphBuilder, lower
from .onnx_walk import ancestors
from .reading import (exportable_spec, missing_weights, module_state, refuse_global_hooks,
                      refuse_hooks)
from .signature import (SIGNATURE_KEY, RNNEdges, Signature, class_path, flat_tensors,
                        input_sigs, placeholder_edges, state_pairs)
from .spec import ExportOptions, RNNSpec
from .targets import Construction
from .weights import LayerWeights, pack_layers

__all__ = ["export_module", "PLACEHOLDER_DOMAIN"]

PLACEHOLDER_DOMAIN = "torch_rnn_onnx"


def _placeholder_class() -> type:
    import torch
    from torch import nn
    from torch.nn.utils.rnn import PackedSequence

    class RNNPlaceholder(nn.Module):
        """Stands in for one nn.RNN / LSTM / GRU during export; its call signature, one node."""

        def __init__(self, spec: RNNSpec, key: int, path: str, original: Any) -> None:
            super().__init__()
            self.spec, self.key, self.path = spec, key, path
            # Behave like the module for whatever a forward may read: its constructor's
            # attributes (num_layers, hidden_size, batch_first, bidirectional, proj_size, …)
            # and its parameters, under their own names. The original is kept out of the
            # module tree (no registration), so torch.export never traces it.
            for name, param in original.named_parameters(recurse=False):
                self.register_parameter(name, param)
            object.__setattr__(self, "_original", original)     # after: hasattr() reads it

        def __getattr__(self, name: str) -> Any:
            try:
                return super().__getattr__(name)
            except AttributeError:
                original = self.__dict__.get("_original")
                if original is None:
                    raise
                return getattr(original, name)

        def __setattr__(self, name: str, value: Any) -> None:
            params = self.__dict__.get("_parameters", {})
            if (name in params and isinstance(value, torch.Tensor)
                    and not isinstance(value, nn.Parameter)):
                # a wrapper assigning the module's weights in its forward (awd-lstm's WeightDrop
                # sets dropout(raw), in eval mode raw itself): the graph holds the values read
                # before the export; the self-check compares with torch eager at other shapes
                return
            super().__setattr__(name, value)

        def flatten_parameters(self) -> None:
            """cuDNN's flat weight buffer has no meaning in an ONNX graph: nothing to do."""

        def forward(self, x: Any, hx: Any = None) -> tuple[Any, Any]:
            if isinstance(x, PackedSequence):
                raise ExportError(f"{self.path}: PackedSequence inputs are not supported inside "
                                  "whole-model export; export the RNN itself with "
                                  "sequence_lens=True")
            if not isinstance(x, torch.Tensor) or x.dim() != 3:
                shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise ExportError(f"{self.path} is called with input {shape}; only batched "
                                  "3-D input is exported (the unbatched 2-D form has no "
                                  "batch dimension to keep dynamic): add a batch dimension")
            s = self.spec
            lstm = s.cell_info.has_cell_state
            batch = x.shape[s.batch_axis]
            # nn.LSTM's state is (h, c); nn.RNN's and nn.GRU's is h alone
            states = [] if hx is None else (list(hx) if lstm else [hx])
            # Tell torch.export what the torch module itself would check, so the graph's
            # declared shapes tie the states' batch to the input's and keep feature sizes static.
            torch._check(x.shape[2] == s.input_size)
            for t, name in zip(states, s.cell_info.states):
                for got, want in zip(t.shape, s.state_shape(name, batch)):
                    torch._check(got == want)
            # output [seq, batch, D·S] (batch_first: [batch, seq, D·S]), then h_n[, c_n]
            shapes = [[x.shape[0], x.shape[1], s.num_directions * s.state_size]] + [
                s.state_shape(name, batch) for name in s.cell_info.states]
            outs = _placeholder_node(self.key, [x, *states], shapes)
            return (outs[0], (outs[1], outs[2])) if lstm else (outs[0], outs[1])

    return RNNPlaceholder


def _placeholder_node(key: int, inputs: list[Any], shapes: list[list[Any]]) -> list[Any]:
    """One `torch_rnn_onnx::RNN` node (float32 outputs of `shapes`), as
    torch.onnx.ops.symbolic_multi_out would emit it.

    Why not call that function: dynamo skips everything under torch/onnx, so torch.export's
    strict mode refuses the call ("Attempted to call function marked as skipped"), and strict
    mode is the only one that keeps `len(x)` symbolic (non-strict `len()` returns a plain int
    and fixes the size). The custom op it wraps is traceable, so call that op directly, with
    the attribute encoding done here, outside the trace. Falls back to the public function
    where the op is not there (another torch release)."""
    import torch

    op = getattr(getattr(torch.ops, "onnx_symbolic", None), "_symbolic_multi_out", None)
    if op is None:
        return torch.onnx.ops.symbolic_multi_out(
            f"{PLACEHOLDER_DOMAIN}::RNN", tuple(inputs), {"key": key},
            dtypes=tuple(torch.float32 for _ in shapes), shapes=shapes, version=1)
    onnx_float = 1        # TensorProto.FLOAT: the placeholder's outputs are float32
    return op.default(inputs, "RNN", [onnx_float] * len(shapes), shapes=shapes,
                      attr_keys=["key"], attr_types=["i"], attr_pos=[[0, 1]], attr_ints=[key],
                      attr_floats=[], attr_strs=[], metadata_props_keys=[],
                      metadata_props_values=[], domain=PLACEHOLDER_DOMAIN, version=1)


def _find_rnns(model: Any) -> tuple[list[Any], dict[int, list[str]]]:
    """The distinct nn.RNN / nn.LSTM / nn.GRU modules (subclasses included) and every attribute
    path to each: a module reached under two names is one module, swapped under both."""
    from torch import nn

    lowered = (nn.RNN, nn.LSTM, nn.GRU)
    rnns: list[Any] = []
    paths: dict[int, list[str]] = {}
    refused = []
    for path, module in model.named_modules(remove_duplicate=False):
        where = path or "<the module itself>"
        if isinstance(module, lowered):
            base = next(c for c in lowered if isinstance(module, c))
            if type(module).forward is not base.forward:
                refused.append(f"{where} ({type(module).__name__} overrides "
                               f"nn.{base.__name__}.forward: what it computes is not "
                               f"nn.{base.__name__}'s)")
                continue
            if id(module) not in paths:
                rnns.append(module)
            paths.setdefault(id(module), []).append(path)
        elif isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
            refused.append(f"{where} ({type(module).__name__})")
    if refused:
        raise ExportError(
            f"unsupported recurrent module(s): {', '.join(dict.fromkeys(refused))}; refusing "
            "to let torch.onnx export them (it unrolls the *Cell modules step by step)")
    if not rnns:
        raise ExportError(f"{type(model).__name__} holds no nn.RNN, nn.LSTM or nn.GRU: "
                          "nothing for this exporter to do (use torch.onnx.export)")
    return rnns, paths


@contextlib.contextmanager
def _swapped(model: Any, rnns: list[Any], paths: dict[int, list[str]],
             specs: list[RNNSpec]) -> Iterator[None]:
    """Replace each nn.RNN by its placeholder, under every path, for the export's duration."""
    placeholder = _placeholder_class()
    swaps = []
    try:
        for key, (module, spec) in enumerate(zip(rnns, specs)):
            stand_in = placeholder(spec, key, paths[id(module)][0], module)
            for path in paths[id(module)]:
                parent_path, _, attr = path.rpartition(".")
                parent = model.get_submodule(parent_path) if parent_path else model
                swaps.append((parent, attr, module))
                setattr(parent, attr, stand_in)
        yield
    finally:
        for parent, attr, module in reversed(swaps):
            setattr(parent, attr, module)


# The ATen ops an nn.RNN / LSTM / GRU (or a *Cell) becomes in an exported program. Any of them
# left after the swap is a recurrent module the forward reached some other way than a module
# attribute (a plain list, a closure): torch.onnx would unroll it and freeze the sequence.
_RECURRENT_ATEN = ("aten.rnn_tanh.", "aten.rnn_relu.", "aten.lstm.", "aten.gru.",
                   "aten.rnn_tanh_cell.", "aten.rnn_relu_cell.", "aten.lstm_cell.",
                   "aten.gru_cell.")


def _refuse_stray_recurrent(ep: Any) -> None:
    """Checked on the exported program, not with a hook around the call: a global module hook
    would make dynamo refuse the strict fallback."""
    stray = sorted({str(n.target) for n in ep.graph.nodes if n.op == "call_function"
                    and str(n.target).startswith(_RECURRENT_ATEN)})
    if stray:
        raise ExportError(f"a recurrent module is called from outside the module tree "
                          f"({', '.join(stray)}; kept in a plain list, dict or closure?): "
                          "register it as a submodule "
                          "(nn.ModuleList, an attribute) so it can be lowered")


def _default_dynamic_shapes(args: Sequence[Any]) -> tuple:
    """Let torch.export decide every dimension (Dim.AUTO) of every tensor, however deep in
    tuples, lists and dicts an argument holds it: sizes the computation ties to a weight stay
    static, batch and sequence become symbolic."""
    import torch
    import torch.utils._pytree as pytree
    from torch.export import Dim

    def leaf(a: Any) -> Any:
        return {i: Dim.AUTO for i in range(a.dim())} if isinstance(a, torch.Tensor) else None

    return tuple(pytree.tree_map(leaf, a) for a in args)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch.onnx logs opset notes and registry warnings at WARNING; keep the CLI's output ours."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export",
                                               "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _root_cause(exc: BaseException) -> BaseException:
    """torch.onnx wraps the real error in several layers of advice; dig out the first one
    raised (an ExportError of ours wins wherever it sits in the chain). Exceptions that say
    nothing (a bare StopIteration from an exhausted iterator inside torch.export's argument
    matching) are skipped for the one around them that does."""
    seen, chain = set(), []
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ExportError):
            return exc
        chain.append(exc)
        # `raise … from None` hides the context: the error raised there is the one meant
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    telling = [e for e in chain if str(e).strip() and not isinstance(e, StopIteration)]
    return (telling or chain)[-1]


def _size_oblivious() -> Any:
    """torch.export specialises dims of size 0/1 unless told not to (torch.onnx's own setting)."""
    try:
        from torch.fx.experimental import _config as fx_config
        return fx_config.patch(backed_size_oblivious=True)
    except (ImportError, AttributeError, KeyError):
        return contextlib.nullcontext()


class FrozenDimension(ExportError):
    """torch.export fixed the batch or sequence size of a recurrent module."""


def _torch_export(model: Any, args: tuple, opset: int, dynamic_shapes: Any,
                  input_names: Sequence[str] | None, output_names: Sequence[str] | None,
                  strict: bool | None = None) -> onnx.ModelProto:
    """torch.export (non-strict, then strict if that fails; `strict` True: strict only)
    and torch.onnx on the program."""
    import torch

    shapes = dynamic_shapes if dynamic_shapes is not None else _default_dynamic_shapes(args)
    try:
        with _quiet():
            # torch.export first, then torch.onnx on the program: torch.onnx.export(model, args)
            # takes a trailing dict argument for keyword arguments (a forward(batch: dict)
            # then fails); torch.export keeps positional arguments positional.
            # As torch.onnx does: sizes of 0 or 1 in the examples stay dynamic
            # (backed_size_oblivious), non-strict first, then strict.
            with _size_oblivious():
                if strict:
                    ep = torch.export.export(model, args, dynamic_shapes=shapes, strict=True)
                else:
                    try:
                        ep = torch.export.export(model, args, dynamic_shapes=shapes,
                                                 strict=False)
                    except ExportError:
                        raise
                    except Exception as first:
                        try:
                            ep = torch.export.export(model, args, dynamic_shapes=shapes,
                                                     strict=True)
                        except Exception:   # both failed: the non-strict error says more
                            raise first from None
            _refuse_stray_recurrent(ep)
            program = torch.onnx.export(
                ep, dynamo=True, opset_version=opset, optimize=True, verbose=False,
                input_names=list(input_names) if input_names else None,
                output_names=list(output_names) if output_names else None)
    except ExportError:
        raise
    except (Exception, SystemExit) as exc:  # torch.export / torch.onnx failures: the model's
        root = _root_cause(exc)
        if isinstance(root, ExportError):
            raise root from None
        first = re.sub(r"\x1b\[[0-9;]*m", "", (str(root).strip().splitlines() or [""])[0])
        raise ExportError("torch.onnx could not export the module around its RNNs: "
                          f"{type(root).__name__}: {first}") from None
    return program.model_proto


def _pin_input_dims(graph: onnx.GraphProto, name: str, dims: dict[int, int]) -> None:
    """Where a graph input feeds an RNN directly, declare the sizes nn.RNN requires
    (torch.export leaves them symbolic even though the RNN fixes them)."""
    for vi in graph.input:
        if vi.name == name:
            shape = vi.type.tensor_type.shape.dim
            for axis, size in dims.items():
                if axis < len(shape) and not shape[axis].dim_value:
                    shape[axis].Clear()
                    shape[axis].dim_value = size


def _dims_of(graph: onnx.GraphProto, name: str) -> list[str]:
    for vi in (*graph.input, *graph.value_info, *graph.output):
        if vi.name == name:
            return [d.dim_param for d in vi.type.tensor_type.shape.dim]
    return []


def _name_dims(graph: onnx.GraphProto, specs_by_input: list[tuple[str, RNNSpec]]) -> None:
    """torch names symbolic sizes s27, s77...: call the ones an RNN reads as its batch and
    sequence "batch" and "seq" everywhere they appear."""
    rename: dict[str, str] = {}
    for x, spec in specs_by_input:
        dims = _dims_of(graph, x)
        if len(dims) < 2:
            continue
        for axis, word in ((spec.seq_axis, "seq"), (spec.batch_axis, "batch")):
            if dims[axis] and word not in rename.values():
                rename.setdefault(dims[axis], word)
    for vi in (*graph.input, *graph.output, *graph.value_info):
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param in rename:
                d.dim_param = rename[d.dim_param]


def _splice(model: onnx.ModelProto, paths: list[str], specs: list[RNNSpec],
            weights: list[list[LayerWeights]], options: ExportOptions,
            chosen: dict[str, Construction]
            ) -> tuple[list[tuple[str, RNNSpec]], list[tuple[str, RNNSpec]]]:
    """Replace every placeholder node by the lowering's nodes (built as the target chooses
    for that call, recorded in `chosen` by path), in place and in order; returns the (input,
    spec) and (output, spec) tensor names of every spliced RNN."""
    g = model.graph
    taken = {n for node in g.node for n in (*node.input, *node.output, node.name)}
    taken |= {t.name for t in g.initializer} | {v.name for v in (*g.input, *g.output)}
    nodes, rnn_inputs, rnn_outputs = [], [], []
    inputs = {i.name for i in g.input} - {t.name for t in g.initializer}
    for node in g.node:
        if node.domain != PLACEHOLDER_DOMAIN:
            nodes.append(node)
            continue
        key = next(a.i for a in node.attribute if a.name == "key")
        path, spec = paths[key], specs[key]
        rnn_inputs.append((node.input[0], spec))
        rnn_outputs.append((node.output[0], spec))
        b = GraphBuilder(prefix=f"{path}/", taken=taken)
        ins = [n or None for n in node.input] + [None, None]
        h0, c0 = ins[1], ins[2]
        _pin_input_dims(g, node.input[0], {2: spec.input_size})
        for state, size in zip((h0, c0), spec.state_sizes().values()):
            if state is not None:
                _pin_input_dims(g, state, {0: spec.layer_directions, 2: size})
        edges = dict(x=node.input[0], h0=h0, c0=c0, out=node.output[0], h_n=node.output[1],
                     c_n=node.output[2] if len(node.output) > 2 else None)
        computed = h0 is not None and not ancestors(g, h0) & inputs
        how = options.construction(spec, has_state=h0 is not None, computed_state=computed)
        chosen.setdefault(path, how)
        lower(b, spec, weights[key], how, **edges)
        nodes.extend(b.nodes)
        g.initializer.extend(b.initializers)
        taken |= {n for new in b.nodes for n in (*new.output, new.name)}
        taken |= {t.name for t in b.initializers}
    del g.node[:]
    g.node.extend(nodes)
    return rnn_inputs, rnn_outputs


def _verify(model: onnx.ModelProto, rnn_edges: list[tuple[str, RNNSpec]], n_rnns: int,
            dynamic_shapes: Any, code_batch1: bool = False) -> None:
    """Never write a frozen file: every placeholder must be gone, and (unless the caller
    chose dynamic_shapes) the batch and sequence dims of every RNN's input and output must
    be symbolic. `code_batch1`: a batch of 1 fixed by the module's own code (the classic
    tagger's `x.view(len(x), 1, -1)`, seen through strict tracing) is the module's design,
    accepted while the sequence stays symbolic."""
    g = model.graph
    if any(n.domain == PLACEHOLDER_DOMAIN for n in g.node):
        raise ExportError("internal: a placeholder was left in the graph")
    if len(rnn_edges) < 1:
        raise ExportError(f"none of the module's {n_rnns} nn.RNN(s) was called by its forward "
                          "with these example inputs")
    if dynamic_shapes is not None:
        return
    for x, spec in rnn_edges:
        dims = [d for vi in (*g.input, *g.value_info, *g.output) if vi.name == x
                for d in vi.type.tensor_type.shape.dim][:2]
        for axis, word in ((spec.seq_axis, "sequence length"), (spec.batch_axis, "batch size")):
            seq_symbolic = spec.seq_axis < len(dims) and not dims[spec.seq_axis].HasField(
                "dim_value")
            if (code_batch1 and axis == spec.batch_axis and seq_symbolic
                    and axis < len(dims) and dims[axis].dim_value == 1):
                continue
            if axis < len(dims) and dims[axis].HasField("dim_value"):
                size = dims[axis].dim_value
                why = ("torch.export specialises every dimension of size 0 or 1: give example "
                       "inputs whose batch and sequence are at least 2" if size <= 1 else
                       "the module's code specialises on it; pass dynamic_shapes explicitly "
                       "if a fixed size is what you want")
                raise FrozenDimension(f"torch.export fixed the {word} of an nn.RNN to {size}, so "
                                  f"the file would refuse every other size: {why}")



def _signature(model: Any, args: tuple, graph: onnx.GraphProto, edges: list[RNNEdges],
               module_kwargs: Mapping[str, Any] | None) -> Signature:
    """What `conformance check` needs to rebuild torch's answer (exporter/signature.py)."""
    import torch.utils._pytree as pytree

    leaves, spec, tensors = flat_tensors(args)
    try:
        args_spec = pytree.treespec_dumps(spec) if len(tensors) == len(leaves) else None
    except Exception:     # a container pytree cannot write as JSON: check then passes by position
        args_spec = None
    if module_kwargs is not None:
        try:
            json.dumps(dict(module_kwargs))
        except (TypeError, ValueError):
            raise ExportError("module_kwargs must be JSON-serialisable (it is written into the "
                              "file's metadata, for `conformance check`)") from None
    return Signature(inputs=input_sigs(graph, [leaves[i] for i in tensors]),
                     outputs=tuple(o.name for o in graph.output), module=class_path(model),
                     module_kwargs=dict(module_kwargs) if module_kwargs is not None else None,
                     args_spec=args_spec, state_pairs=tuple(state_pairs(graph, edges)),
                     rnn_modules=tuple(edges))


def _check_parameters(model: Any, allow_nonfinite: bool = False) -> None:
    """Every floating-point parameter and buffer finite (a diverged run exports silently)."""
    from .weights import check_finite

    meta = [k for k, v in model.state_dict().items() if v.is_meta]
    if meta:
        raise ExportError(f"{', '.join(meta[:3])} {'is' if len(meta) == 1 else 'are'} on the "
                          "meta device (no data): load real weights first")
    if allow_nonfinite:
        return
    check_finite({k: v.detach().cpu().numpy() for k, v in model.state_dict().items()
                  if v.is_floating_point()}, where=f"{type(model).__name__}: ")


def export_module(model: Any, args: Any, f: str | os.PathLike | None = None,
                  options: ExportOptions | None = None, *, dynamic_shapes: Any = None,
                  input_names: Sequence[str] | None = None,
                  output_names: Sequence[str] | None = None,
                  module_kwargs: Mapping[str, Any] | None = None) -> onnx.ModelProto:
    """Export any nn.Module whose forward runs nn.RNN / LSTM / GRU modules; each becomes
    native RNN / LSTM / GRU nodes or MatMul + Scan, as options.target chooses
    (exporter/targets.py) unless options.lowering says."""
    options = options or ExportOptions()
    opset, allow_nonfinite = options.opset, options.allow_nonfinite
    import torch


    if args is None:
        raise ExportError("exporting a whole module needs example args, as torch.onnx.export does")
    args = tuple(args) if isinstance(args, (tuple, list)) else (args,)
    rnns, paths = _find_rnns(model)
    first_paths = [paths[id(m)][0] for m in rnns]
    for m, path in zip(rnns, first_paths):
        refuse_hooks(m, path or "the module itself")
    refuse_global_hooks()
    specs = [exportable_spec(m, path) for m, path in zip(rnns, first_paths)]
    for spec, path in zip(specs, first_paths):
        spec.check_fits(copies=2)
        if spec.proj_size and options.lowering == "rnn":
            raise ExportError(f"{path}: the ONNX LSTM op has no projection (proj_size); "
                              "export with lowering=\"scan\" (--lowering scan)")
    _check_parameters(model, allow_nonfinite)
    if any(missing_weights(m) for m in rnns):
        # a wrapper sets them in its forward (awd-lstm's WeightDrop deletes weight_hh_l0 and
        # assigns dropout(raw) before each call): one eval-mode call leaves the values the
        # graph must hold
        try:
            with torch.no_grad():
                model(*args)
        except Exception as exc:
            raise ExportError(f"the module's forward fails on the example: "
                              f"{type(exc).__name__}: {exc}"[:500]) from None
        gone = [f"{p}.{n}" for m, p in zip(rnns, first_paths) for n in missing_weights(m)]
        if gone:
            raise ExportError(f"{', '.join(gone)} {'is' if len(gone) == 1 else 'are'} neither "
                              "a parameter nor set by the forward: nothing to export")
    weights = [pack_layers(module_state(m), spec, allow_nonfinite=True)
               for m, spec in zip(rnns, specs)]
    chosen: dict[str, Construction] = {}

    def lowered(strict: bool | None) -> tuple[onnx.ModelProto, list[RNNEdges]]:
        with torch.no_grad(), _swapped(model, rnns, paths, specs):
            onnx_model = _torch_export(model, args, opset, dynamic_shapes, input_names,
                                       output_names, strict)
        edges = placeholder_edges(onnx_model.graph, PLACEHOLDER_DOMAIN, first_paths,
                                  [s.seq_axis for s in specs])
        chosen.clear()
        rnn_inputs, rnn_outputs = _splice(onnx_model, first_paths, specs, weights, options,
                                          chosen)
        _verify(onnx_model, rnn_inputs + rnn_outputs, len(rnns), dynamic_shapes,
                code_batch1=bool(strict))
        _name_dims(onnx_model.graph, rnn_inputs)
        return onnx_model, edges

    try:
        onnx_model, edges = lowered(None)
    except FrozenDimension as frozen:
        # non-strict tracing fixes a size the code reads as a Python int (`len(x)`, an int
        # from x.shape used in arithmetic); strict tracing (dynamo) keeps it symbolic
        try:
            onnx_model, edges = lowered(True)
        except ExportError:
            raise frozen from None
    signature = _signature(model, args, onnx_model.graph, edges, module_kwargs)
    kept = [o for o in onnx_model.opset_import if o.domain != PLACEHOLDER_DOMAIN]
    del onnx_model.opset_import[:]
    onnx_model.opset_import.extend(kept)
    onnx_model.producer_name, onnx_model.producer_version = PRODUCER_NAME, __version__
    helper.set_model_props(onnx_model, {
        "rnn_modules": json.dumps({path: spec.config() for path, spec in zip(first_paths, specs)}),
        "batch_layout": ",".join(sorted({c.batch_layout for c in chosen.values()})),
        "lowering": ",".join(sorted({c.lowering for c in chosen.values()})),
        "target": options.target,
        "construction": json.dumps({p: json.loads(c.to_json()) for p, c in chosen.items()}),
        "torch_version": torch.__version__,
        SIGNATURE_KEY: signature.to_json()})
    try:
        onnx.checker.check_model(onnx_model, full_check=True)
    except Exception as exc:
        raise ExportError(f"the spliced model does not check: {str(exc).splitlines()[0]}") from None
    if options.verify:
        from .verify import verify_module
        verify_module(model, args, onnx_model)
    if f is not None:
        save_atomic(onnx_model, f, external_data=options.external_data)
    return onnx_model
