"""Checkpoints: load safely, find the one nn.RNN inside, infer its spec."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .errors import ExportError
from .spec import RNNSpec

__all__ = ["load_state_dict", "find_rnn_state", "spec_from_state", "spec_from_checkpoint"]

# a layer index of at most 9 digits: a longer one is no layer of any model (and int() of a
# 5,000-digit string raises)
_RNN_KEY = re.compile(r"^(weight_ih|weight_hh|weight_hr|bias_ih|bias_hh)_l(\d{1,9})(_reverse)?$")
# Fields a state_dict determines; the rest (nonlinearity, batch_first, dropout) it cannot.
_INFERRED = ("input_size", "hidden_size", "num_layers", "bias", "bidirectional", "cell",
             "proj_size")


def load_state_dict(path: str | Path) -> dict[str, Any]:
    """torch.load with weights_only=True: a pickle that would run code is refused."""
    import pickle

    import torch

    if not isinstance(path, (str, os.PathLike)):
        raise ExportError(f"checkpoint must be a file path, got {type(path).__name__}")
    p = Path(path)
    if not p.is_file():
        raise ExportError(f"checkpoint not found: {p}")
    if not _looks_like_torch_save(p):
        raise ExportError(f"cannot read checkpoint {p}: not a torch.save file")
    import zipfile
    if zipfile.is_zipfile(p):
        _check_archive(p)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ExportError(f"checkpoint {p} refused by weights_only loading: "
                          f"{_unpickler_reason(str(exc))}") from None
    except Exception as exc:   # truncated or garbled pickles raise anything (IndexError, …)
        msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"cannot read checkpoint {p}: {type(exc).__name__}: {msg}") from None
    if not isinstance(obj, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ExportError(f"checkpoint {p} is not a state_dict (a mapping of names to tensors)")
    for k, v in obj.items():
        if v.layout != torch.strided or v.is_meta or v.is_quantized:
            kind = "meta" if v.is_meta else "quantized" if v.is_quantized else str(v.layout)
            raise ExportError(f"checkpoint {p}: {k} is a {kind} tensor; only dense "
                              "(strided) tensors with data can be exported")
        _check_stored(p, k, v)
    return dict(obj)


def _check_stored(p: Path, key: str, v: Any) -> None:
    """A tensor must store the elements it has: an expanded (zero-stride) tensor of a few
    stored bytes would become a model of millions of elements — size limits count real
    elements, so such a checkpoint is refused (save a .contiguous() copy if it is meant)."""
    stored = v.untyped_storage().nbytes() // max(1, v.element_size())
    if v.numel() > 1 and (stored < v.numel() or 0 in v.stride()):
        raise ExportError(f"checkpoint {p}: {str(key)[:80]} has {v.numel():,} elements but "
                          f"stores {stored:,} (an expanded, zero-stride tensor); save a "
                          ".contiguous() copy if that is meant")


def _looks_like_torch_save(p: Path) -> bool:
    """torch.save writes a zip archive (or, legacy, a pickle starting with PROTO 0x80)."""
    import zipfile

    try:
        with open(p, "rb") as fh:
            head = fh.read(2)
    except OSError as exc:
        raise ExportError(f"cannot read checkpoint {p}: {exc.strerror}") from None
    return zipfile.is_zipfile(p) or head[:1] == b"\x80"


def _unpickler_reason(message: str) -> str:
    """torch's refusal is advice (including "retry with weights_only=False", which we never
    do) around the one fact that matters: which Python global the pickle wanted."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    if found:
        return (f"it would import the Python object {found.group(1)}; a checkpoint must hold "
                "only tensors")
    return "it holds Python objects other than tensors"


# torch.save writes its archive uncompressed (ZIP_STORED): the entries add up to the file's
# size. Far more than that is a compressed archive expanding in memory (a zip bomb).
_MAX_EXPANSION, _SLACK = 2, 1 << 20


def _check_archive(p: Path) -> None:
    import zipfile

    try:
        with zipfile.ZipFile(p) as z:
            total = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ExportError(f"cannot read checkpoint {p}: {exc}") from None
    size = p.stat().st_size
    if total > _MAX_EXPANSION * size + _SLACK:
        raise ExportError(f"checkpoint {p} would expand from {size:,} to {total:,} bytes; "
                          "torch.save never compresses, so it is not a torch checkpoint")


def find_rnn_state(state: Mapping[str, Any]) -> tuple[str, dict[str, np.ndarray]]:
    """Locate exactly one nn.RNN / nn.LSTM / nn.GRU in a state_dict; return (prefix, its
    keys → float32 arrays).

    The module's own state_dict has prefix ""; a wrapper's (e.g. `self.rnn1`) has "rnn1.".
    """
    prefixes = sorted({k[: -len("weight_ih_l0")] for k in state if k.endswith("weight_ih_l0")})
    if not prefixes:
        raise ExportError("checkpoint holds no nn.RNN weights (no key ending in weight_ih_l0)")
    if len(prefixes) > 1:
        raise ExportError(f"checkpoint holds {len(prefixes)} RNNs ({', '.join(p or '<root>' for p in prefixes)}); "
                          "expected exactly one")
    prefix = prefixes[0]
    rnn: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if not key.startswith(prefix) or "." in key[len(prefix):]:
            continue                             # another submodule's weights
        local = key[len(prefix):]
        if not _RNN_KEY.match(local):
            raise ExportError(f"unexpected key {key[:80]!r} in the RNN's weights")
        if value.dtype != __import__("torch").float32:
            raise ExportError(f"only float32 weights are supported; {key} is {value.dtype}")
        rnn[local] = value.detach().cpu().numpy()
    return prefix, rnn


def _check_ranks(rnn: Mapping[str, np.ndarray]) -> None:
    """Weights are 2-D, biases 1-D, nothing empty: checked before any shape is read."""
    for key, value in rnn.items():
        want = 2 if key.startswith("weight") else 1
        if value.ndim != want or 0 in value.shape:
            raise ExportError(f"{key} has shape {list(value.shape)}; nn.RNN's is "
                              f"{'[H, in]' if want == 2 else '[H]'}")
    if "weight_ih_l0" not in rnn or "weight_hh_l0" not in rnn:
        raise ExportError("the RNN's weights lack weight_ih_l0 or weight_hh_l0")


def _cell_and_sizes(rnn: Mapping[str, np.ndarray]) -> tuple[str, int, int]:
    """(cell, hidden_size, proj_size) from the shapes: weight_hh is [G·H, S] with G = 1, 3, 4
    gates (nn.RNN, nn.GRU, nn.LSTM) and S = H, or S = proj_size when weight_hr [S, H] exists."""
    from .cells import CELLS

    rows, cols = rnn["weight_hh_l0"].shape
    if "weight_hr_l0" in rnn:
        proj, hidden = rnn["weight_hr_l0"].shape
        if rows != 4 * hidden or cols != proj:
            raise ExportError(f"weight_hh_l0 {[rows, cols]} and weight_hr_l0 {[proj, hidden]} "
                              "are not a projected nn.LSTM's")
        return "lstm", int(hidden), int(proj)
    by_gates = {c.gates: c.name for c in CELLS.values()}
    if rows % cols or rows // cols not in by_gates:
        raise ExportError(f"weight_hh_l0 has shape {[rows, cols]}: not nn.RNN's [H, H], "
                          "nn.GRU's [3H, H] or nn.LSTM's [4H, H]")
    return by_gates[rows // cols], int(cols), 0


def spec_from_state(rnn: Mapping[str, np.ndarray], **given: Any) -> RNNSpec:
    """Infer the cell and sizes from the weights; `given` fields must agree with them.

    Keys in `given` set to None are treated as not given.
    """
    given = {k: v for k, v in given.items() if v is not None}
    _check_ranks(rnn)
    cell, hidden, proj = _cell_and_sizes(rnn)
    input_size = rnn["weight_ih_l0"].shape[1]
    layers = 1 + max(int(m.group(2)) for m in map(_RNN_KEY.match, rnn) if m)
    inferred = {"input_size": int(input_size), "hidden_size": hidden, "num_layers": layers,
                "bias": "bias_ih_l0" in rnn, "bidirectional": "weight_ih_l0_reverse" in rnn,
                "cell": cell, "proj_size": proj}
    if layers > len(rnn):    # before any per-layer work: keys may claim a billion layers
        raise ExportError(f"the checkpoint's keys name {layers:,} layers but hold only "
                          f"{len(rnn)} tensors")
    for name in _INFERRED:
        if name in given and given[name] != inferred[name]:
            raise ExportError(f"{name}={given[name]!r} disagrees with the checkpoint "
                              f"({name}={inferred[name]!r})")
    return RNNSpec.from_kwargs({**given, **inferred})


def spec_from_checkpoint(path: str | Path, **given: Any) -> tuple[RNNSpec, dict[str, np.ndarray]]:
    """Load `path` and return (spec, nn.RNN-keyed float32 arrays)."""
    _, rnn = find_rnn_state(load_state_dict(path))
    return spec_from_state(rnn, **given), rnn
