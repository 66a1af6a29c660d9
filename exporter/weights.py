"""Pure-numpy packing of nn.RNN / nn.LSTM / nn.GRU parameters into the ONNX ops' W, R, B.

torch, per layer k and direction d (suffix "" or "_reverse"), G gates (cells.py), S = the
size of h (hidden_size, or proj_size for a projected LSTM):
    weight_ih_l{k}{d}  [G·H, I_k]   weight_hh_l{k}{d}  [G·H, S]
    bias_ih_l{k}{d}    [G·H]        bias_hh_l{k}{d}    [G·H]
    weight_hr_l{k}{d}  [S, H]       (projected LSTM only: h = (o ⊙ tanh c)·W_hrᵀ)
ONNX RNN / LSTM / GRU, per layer:
    W [dirs, G·H, I_k]    R [dirs, G·H, S]    B [dirs, 2·G·H] = bias_ih ‖ bias_hh
with the H-sized gate blocks reordered from torch's order to ONNX's (cells.py). Every op
computes x·Wᵀ + h·Rᵀ + b per gate, so the blocks are stacked as they are (no transpose).
I_0 = input_size; I_k = dirs·S for k > 0 (the previous layer's concatenated directions).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .errors import ExportError
from .spec import RNNSpec

__all__ = ["LayerWeights", "pack_layers", "expected_shapes", "check_finite", "permute_gates"]

_SUFFIXES = ("", "_reverse")


@dataclass(frozen=True)
class LayerWeights:
    W: np.ndarray                 # [dirs, G·H, I_k], gates in ONNX order
    R: np.ndarray                 # [dirs, G·H, S]
    B: np.ndarray | None          # [dirs, 2·G·H], None when bias=False
    P: np.ndarray | None = None   # [dirs, S, H]: a projected LSTM's weight_hr, else None


def permute_gates(a: np.ndarray, perm: tuple[int, ...], H: int) -> np.ndarray:
    """Reorder the H-sized gate blocks along axis 0: block j of the result is block perm[j]
    of `a`. a [G·H, ...] → [G·H, ...]."""
    if perm == tuple(range(len(perm))):
        return a
    return np.concatenate([a[g * H:(g + 1) * H] for g in perm])      # along axis 0


def expected_shapes(spec: RNNSpec) -> dict[str, tuple[int, ...]]:
    """The torch module's state_dict keys and shapes for `spec`."""
    H, S, G = spec.hidden_size, spec.state_size, spec.cell_info.gates
    shapes: dict[str, tuple[int, ...]] = {}
    for k in range(spec.num_layers):
        in_k = spec.input_size if k == 0 else spec.num_directions * S
        for d in _SUFFIXES[:spec.num_directions]:
            shapes[f"weight_ih_l{k}{d}"] = (G * H, in_k)
            shapes[f"weight_hh_l{k}{d}"] = (G * H, S)
            if spec.bias:
                shapes[f"bias_ih_l{k}{d}"] = (G * H,)
                shapes[f"bias_hh_l{k}{d}"] = (G * H,)
            if spec.proj_size:
                shapes[f"weight_hr_l{k}{d}"] = (S, H)
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
    """Validate `state` (torch keys → float arrays) against `spec` and pack each layer."""
    _check(state, spec)
    if not allow_nonfinite:
        check_finite(state)
    dirs = _SUFFIXES[:spec.num_directions]
    perm, H = spec.cell_info.perm, spec.hidden_size
    layers = []
    for k in range(spec.num_layers):
        def stack(name: str, gates: bool = True) -> np.ndarray:
            blocks = [np.asarray(state[f"{name}_l{k}{d}"], np.float32) for d in dirs]
            return np.stack([permute_gates(b, perm, H) if gates else b for b in blocks])
        W = stack("weight_ih")                                   # [dirs, G·H, I_k]
        R = stack("weight_hh")                                   # [dirs, G·H, S]
        B = None
        if spec.bias:
            B = np.concatenate([stack("bias_ih"), stack("bias_hh")], axis=1)  # [dirs, 2·G·H]
        P = stack("weight_hr", gates=False) if spec.proj_size else None      # [dirs, S, H]
        layers.append(LayerWeights(W=W, R=R, B=B, P=P))
    return layers
