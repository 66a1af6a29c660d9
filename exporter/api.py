"""The Python front door: `export(model, args=None, f=None, **options)`."""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np
import onnx

from .errors import ExportError
from .graph import build_model, save_atomic
from .spec import ExportOptions, RNNSpec
from .weights import pack_layers

__all__ = ["export", "export_spec", "module_state"]


def module_state(module: Any) -> dict[str, np.ndarray]:
    """nn.RNN parameters as float32 numpy arrays keyed like its state_dict."""
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def _check_args(spec: RNNSpec, args: Any, options: ExportOptions) -> None:
    """Example inputs are optional; when given they must fit the module."""
    import torch

    args = args if isinstance(args, (tuple, list)) else (args,)
    if not 1 <= len(args) <= 2 or not all(isinstance(a, torch.Tensor) for a in args):
        raise ExportError("args must be (input,) or (input, h_0) tensors")
    x = args[0]
    if x.dim() != 3 or x.shape[-1] != spec.input_size:
        raise ExportError(f"example input has shape {list(x.shape)}, expected 3-D with last "
                          f"dimension {spec.input_size}")
    if len(args) == 2 and not options.has_h0:
        raise ExportError("an example h_0 was given but initial_state='zeros' leaves h_0 out")
    if len(args) == 2:
        batch = x.shape[0] if spec.batch_first else x.shape[1]
        want = [spec.num_layers * spec.num_directions, batch, spec.hidden_size]
        if list(args[1].shape) != want:
            raise ExportError(f"example h_0 has shape {list(args[1].shape)}, expected {want}")


def _options(options: Mapping[str, Any]) -> ExportOptions:
    try:
        return ExportOptions(**options)
    except TypeError as exc:
        raise ExportError(f"unknown export option: {exc}") from None


def _build(spec: RNNSpec, state: Mapping[str, np.ndarray], f: str | os.PathLike | None,
           opts: ExportOptions) -> onnx.ModelProto:
    model = build_model(spec, pack_layers(state, spec), opts)
    if f is not None:
        save_atomic(model, f)
    return model


def export_spec(spec: RNNSpec, state: Mapping[str, np.ndarray], f: str | os.PathLike | None = None,
                **options: Any) -> onnx.ModelProto:
    """Export from a spec and nn.RNN-keyed weights (the path the CLI takes for checkpoints)."""
    return _build(spec, state, f, _options(options))


def export(model: Any, args: Any = None, f: str | os.PathLike | None = None,
           **options: Any) -> onnx.ModelProto:
    """Export an `nn.RNN` to an ONNX graph of native RNN ops; write it to `f` if given.

    options: opset (default 17), initial_state ("input" or "zeros"),
    batch_layout ("transpose" or "attribute"; batch_first models only),
    sequence_lens (bool: add the int32 input sequence_lens [batch], PackedSequence semantics).
    """
    opts = _options(options)
    spec = RNNSpec.from_module(model)
    if model.training and spec.dropout > 0:
        raise ExportError(f"the RNN is in training mode with dropout={spec.dropout:g}; the exported "
                          "graph is the eval-mode computation: call model.eval() first")
    if args is not None:
        _check_args(spec, args, opts)
    return _build(spec, module_state(model), f, opts)
