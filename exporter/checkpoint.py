"""Checkpoints: load safely, find the one nn.RNN inside, infer its spec."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .errors import ExportError
from .spec import RNNSpec

__all__ = ["load_state_dict", "find_rnn_state", "spec_from_state", "spec_from_checkpoint"]

_RNN_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)(_reverse)?$")
# Fields a state_dict determines; the rest (nonlinearity, batch_first, dropout) it cannot.
_INFERRED = ("input_size", "hidden_size", "num_layers", "bias", "bidirectional")


def load_state_dict(path: str | Path) -> dict[str, Any]:
    """torch.load with weights_only=True: a pickle that would run code is refused."""
    import pickle

    import torch

    p = Path(path)
    if not p.is_file():
        raise ExportError(f"checkpoint not found: {p}")
    if not _looks_like_torch_save(p):
        raise ExportError(f"cannot read checkpoint {p}: not a torch.save file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ExportError(f"checkpoint {p} refused by weights_only loading: "
                          f"{_unpickler_reason(str(exc))}") from None
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"cannot read checkpoint {p}: {msg}") from None
    if not isinstance(obj, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ExportError(f"checkpoint {p} is not a state_dict (a mapping of names to tensors)")
    return dict(obj)


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
    """torch's refusal is a boilerplate paragraph around one line that says why."""
    boiler = ("Weights only load failed", "Check the documentation", "Please file an issue")
    for line in message.splitlines():
        line = line.strip()
        if line and not line.startswith(boiler):
            return line
    return "not a plain tensor state_dict"


def find_rnn_state(state: Mapping[str, Any]) -> tuple[str, dict[str, np.ndarray]]:
    """Locate exactly one nn.RNN in a state_dict; return (prefix, its keys → float32 arrays).

    nn.RNN's own state_dict has prefix ""; a wrapper's (e.g. `self.rnn1`) has "rnn1.".
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
            raise ExportError(f"unexpected key {key!r} in the RNN's weights")
        if value.dtype != __import__("torch").float32:
            raise ExportError(f"only float32 weights are supported; {key} is {value.dtype}")
        rnn[local] = value.detach().cpu().numpy()
    return prefix, rnn


def spec_from_state(rnn: Mapping[str, np.ndarray], **given: Any) -> RNNSpec:
    """Infer sizes from the weights; `given` fields must agree with them.

    Keys in `given` set to None are treated as not given.
    """
    given = {k: v for k, v in given.items() if v is not None}
    hidden, input_size = rnn["weight_ih_l0"].shape
    layers = 1 + max(int(m.group(2)) for m in map(_RNN_KEY.match, rnn) if m)
    inferred = {"input_size": int(input_size), "hidden_size": int(hidden), "num_layers": layers,
                "bias": "bias_ih_l0" in rnn, "bidirectional": "weight_ih_l0_reverse" in rnn}
    for name in _INFERRED:
        if name in given and given[name] != inferred[name]:
            raise ExportError(f"{name}={given[name]!r} disagrees with the checkpoint "
                              f"({name}={inferred[name]!r})")
    return RNNSpec.from_kwargs({**given, **inferred})


def spec_from_checkpoint(path: str | Path, **given: Any) -> tuple[RNNSpec, dict[str, np.ndarray]]:
    """Load `path` and return (spec, nn.RNN-keyed float32 arrays)."""
    _, rnn = find_rnn_state(load_state_dict(path))
    return spec_from_state(rnn, **given), rnn
