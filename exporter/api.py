"""The Python front door: `export(model, args=None, f=None, **options)`."""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np
import onnx

from .errors import ExportError
from .graph import build_model, save_atomic
from .reading import exportable_spec, module_state, refuse_global_hooks, refuse_hooks
from .spec import ExportOptions, RNNSpec
from .weights import pack_layers

__all__ = ["export", "export_spec", "module_state"]


def _check_args(spec: RNNSpec, args: Any, options: ExportOptions) -> None:
    """Example inputs are optional; when given they must fit the module: (input,),
    (input, h_0), or for nn.LSTM (input, (h_0, c_0)) — the module's own call signature."""
    import torch

    args = args if isinstance(args, (tuple, list)) else (args,)
    lstm = spec.cell_info.has_cell_state
    state_ok = len(args) < 2 or (
        isinstance(args[1], (tuple, list)) and len(args[1]) == 2
        and all(isinstance(t, torch.Tensor) for t in args[1]) if lstm
        else isinstance(args[1], torch.Tensor))
    if not 1 <= len(args) <= 2 or not isinstance(args[0], torch.Tensor) or not state_ok:
        raise ExportError("args must be (input,) or (input, (h_0, c_0)) tensors" if lstm
                          else "args must be (input,) or (input, h_0) tensors")
    x = args[0]
    if x.dim() != 3 or x.shape[-1] != spec.input_size:
        raise ExportError(f"example input has shape {list(x.shape)}, expected 3-D with last "
                          f"dimension {spec.input_size}")
    if len(args) == 2 and not options.has_h0:
        raise ExportError("an example initial state was given but initial_state='zeros' "
                          "leaves it out")
    if len(args) == 2:
        batch = x.shape[spec.batch_axis]
        for state, t in zip(spec.cell_info.states, args[1] if lstm else (args[1],)):
            want = spec.state_shape(state, batch)
            if list(t.shape) != want:
                raise ExportError(f"example {state}_0 has shape {list(t.shape)}, expected "
                                  f"{want}")


def _options(options: Mapping[str, Any]) -> ExportOptions:
    try:
        return ExportOptions(**options)
    except TypeError as exc:
        raise ExportError(f"unknown export option: {exc}") from None


def _spec_arg(spec: Any, state: Any) -> dict[str, np.ndarray]:
    """The weights as real floating-point numpy arrays (torch tensors accepted); anything
    else — strings, None, lists, complex numbers, meta tensors — is refused by name."""
    if not isinstance(spec, RNNSpec):
        raise ExportError(f"spec must be an RNNSpec, got {type(spec).__name__}")
    if not isinstance(state, Mapping):
        raise ExportError(f"state must be a mapping of nn.RNN weight names to arrays, "
                          f"got {type(state).__name__}")
    arrays = {}
    for key, value in state.items():
        if hasattr(value, "detach") and hasattr(value, "is_meta"):      # a torch tensor
            if value.is_meta:
                raise ExportError(f"{str(key)[:80]} is a meta tensor (no data)")
            value = value.detach().cpu().numpy()
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            kind = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
            raise ExportError(f"weight {str(key)[:80]} must be a real floating-point array, "
                              f"got {kind}")
        arrays[str(key)] = value
    return arrays


def _check_f(f: Any) -> None:
    if f is not None and not isinstance(f, (str, os.PathLike)):
        raise ExportError(f"f must be a file path (str or os.PathLike) or None, "
                          f"got {type(f).__name__}")


def _build(spec: RNNSpec, state: Mapping[str, np.ndarray], f: str | os.PathLike | None,
           opts: ExportOptions, example: tuple[int, int] | None = None) -> onnx.ModelProto:
    _check_f(f)
    spec.check_fits(copies=2)
    model = build_model(spec, pack_layers(state, spec, opts.allow_nonfinite), opts)
    if opts.verify:
        from .verify import verify_rnn
        verify_rnn(model, spec, state, opts, example)
    if f is not None:
        save_atomic(model, f, external_data=opts.external_data)
    return model


def export_spec(spec: RNNSpec, state: Mapping[str, np.ndarray], f: str | os.PathLike | None = None,
                **options: Any) -> onnx.ModelProto:
    """Export from a spec and nn.RNN-keyed weights (the path the CLI takes for checkpoints)."""
    return _build(spec, _spec_arg(spec, state), f, _options(options))


_MODULE_ONLY = ("dynamic_shapes", "input_names", "output_names", "module_kwargs")


def export(model: Any, args: Any = None, f: str | os.PathLike | None = None,
           **options: Any) -> onnx.ModelProto:
    """Export to an ONNX graph whose recurrent modules are native RNN / LSTM / GRU ops (or the
    scan lowering); write it to `f` if given.

    `model` is an nn.RNN, nn.LSTM or nn.GRU (graph I/O: input[, h_0[, c_0]][, sequence_lens]
    → output, h_n[, c_n]), or any nn.Module whose forward uses them, exported through
    torch.onnx with `args` as example inputs (required then) and every recurrent module
    lowered to native RNN / LSTM / GRU nodes.
    options, for every front door: opset (default 17); batch_layout ("transpose" or
    "attribute": layout=1 nodes; batch_first modules only); lowering ("rnn": native nodes,
    default; "scan": hoisted projections + a Scan, the only exact export of an LSTM's
    proj_size); allow_nonfinite; external_data; verify (default True: the file is run on
    onnxruntime at two other shapes and compared with torch before it is written).
    For a recurrent module itself: initial_state ("input" or "zeros") and sequence_lens (bool:
    the int32 input sequence_lens [batch], PackedSequence semantics).
    For whole modules: dynamic_shapes (torch.export's; default: every dimension Dim.AUTO),
    input_names, output_names, module_kwargs (the module's constructor arguments, recorded in
    the file so that `python -m conformance check FILE --checkpoint W.pt` can rebuild it).
    """
    import torch

    recurrent = (torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU)
    if not isinstance(model, recurrent) or type(model).forward not in (
            torch.nn.RNN.forward, torch.nn.LSTM.forward, torch.nn.GRU.forward):
        if not isinstance(model, torch.nn.Module):
            raise ExportError(f"expected a torch.nn.Module, got {type(model).__name__}")
        module_opts = {k: options.pop(k) for k in _MODULE_ONLY if k in options}
        opts = _options(options)
        for name in ("initial_state", "sequence_lens"):
            if name in options and options[name] != getattr(ExportOptions(), name):
                raise ExportError(f"{name} applies to exporting a recurrent module itself; a "
                                  "whole module's inputs are whatever its forward takes")
        from .torch_onnx import export_module
        _check_f(f)
        return export_module(model, args, f, opts, **module_opts)
    unknown = [k for k in _MODULE_ONLY if k in options]
    if unknown:
        raise ExportError(f"{', '.join(unknown)} apply to whole-module export, not to an nn.RNN")
    opts = _options(options)
    refuse_hooks(model, f"the {type(model).__name__}")
    refuse_global_hooks()
    spec = exportable_spec(model)
    example = None
    if args is not None:
        _check_args(spec, args, opts)
        x = (args if isinstance(args, (tuple, list)) else (args,))[0]
        example = (int(x.shape[spec.batch_axis]), int(x.shape[spec.seq_axis]))
    return _build(spec, module_state(model), f, opts, example)
