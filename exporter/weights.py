"""Pure-numpy packing of nn.RNN parameters into the ONNX RNN op's W, R and B.

torch, per layer k and direction d (suffix "" or "_reverse"):
    weight_ih_l{k}{d}  [H, I_k]     weight_hh_l{k}{d}  [H, H]
    bias_ih_l{k}{d}    [H]          bias_hh_l{k}{d}    [H]
ONNX RNN, per layer:
    W [dirs, H, I_k]    R [dirs, H, H]    B [dirs, 2H] = bias_ih ‖ bias_hh
Both compute x·Wᵀ + h·Rᵀ + b, so the matrices are stacked as they are (no transpose).
I_0 = input_size; I_k = dirs·H for k > 0 (the previous layer's concatenated directions).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .errors import ExportError
from .spec import RNNSpec

__all__ = ["LayerWeights", "pack_layers", "expected_shapes"]

_SUFFIXES = ("", "_reverse")


@dataclass(frozen=True)
class LayerWeights:
    W: np.ndarray            # [dirs, H, I_k]
    R: np.ndarray            # [dirs, H, H]
    B: np.ndarray | None     # [dirs, 2H], None when bias=False


def expected_shapes(spec: RNNSpec) -> dict[str, tuple[int, ...]]:
    """nn.RNN's state_dict keys and shapes for `spec`."""
    H = spec.hidden_size
    shapes: dict[str, tuple[int, ...]] = {}
    for k in range(spec.num_layers):
        in_k = spec.input_size if k == 0 else spec.num_directions * H
        for d in _SUFFIXES[:spec.num_directions]:
            shapes[f"weight_ih_l{k}{d}"] = (H, in_k)
            shapes[f"weight_hh_l{k}{d}"] = (H, H)
            if spec.bias:
                shapes[f"bias_ih_l{k}{d}"] = (H,)
                shapes[f"bias_hh_l{k}{d}"] = (H,)
    return shapes


def _check(state: Mapping[str, np.ndarray], spec: RNNSpec) -> None:
    want = expected_shapes(spec)
    missing = sorted(set(want) - set(state))
    extra = sorted(set(state) - set(want))
    if missing:
        raise ExportError(f"RNN weights missing for {spec.id}: {', '.join(missing)}")
    if extra:
        raise ExportError(f"unexpected RNN weights for {spec.id}: {', '.join(extra)}")
    for key, shape in want.items():
        got = tuple(state[key].shape)
        if got != shape:
            raise ExportError(f"{key} has shape {list(got)}, expected {list(shape)} for {spec.id}")


def check_finite(state: Mapping[str, np.ndarray], where: str = "") -> None:
    """A NaN or ±Inf weight (a diverged training run) is refused by name."""
    for key, value in state.items():
        a = np.asarray(value)
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            n = int((~np.isfinite(a)).sum())
            raise ExportError(f"{where}{key} has {n} NaN/±Inf value(s) of {a.size}; refusing "
                              "to export them (allow_nonfinite=True / --allow-nonfinite to "
                              "write them anyway)")


def pack_layers(state: Mapping[str, np.ndarray], spec: RNNSpec,
                allow_nonfinite: bool = False) -> list[LayerWeights]:
    """Validate `state` (nn.RNN keys → float arrays) against `spec` and pack each layer."""
    _check(state, spec)
    if not allow_nonfinite:
        check_finite(state)
    dirs = _SUFFIXES[:spec.num_directions]
    layers = []
    for k in range(spec.num_layers):
        def stack(name: str) -> np.ndarray:
            return np.stack([np.asarray(state[f"{name}_l{k}{d}"], np.float32) for d in dirs])
        W = stack("weight_ih")                                   # [dirs, H, I_k]
        R = stack("weight_hh")                                   # [dirs, H, H]
        B = None
        if spec.bias:
            B = np.concatenate([stack("bias_ih"), stack("bias_hh")], axis=1)  # [dirs, 2H]
        layers.append(LayerWeights(W=W, R=R, B=B))
    return layers
