"""Ground truth from torch eager: float32 (what the user runs) and float64 (the exact answer)."""
from __future__ import annotations

import copy
import warnings
from typing import Any, Mapping

import numpy as np

from exporter.spec import RNNSpec

__all__ = ["OUTPUTS", "LENGTH_PATTERNS", "make_feeds", "make_lengths", "torch_truth",
           "module_truth", "module_from_state"]

OUTPUTS = ("output", "h_n")      # and c_n for nn.LSTM
LENGTH_PATTERNS = ("unsorted", "full", "ones", "mixed")


def make_lengths(pattern: str, batch: int, seq: int, rng: np.random.Generator) -> np.ndarray:
    """Valid lengths (1..seq) of a padded batch, int32 as the ONNX RNN op takes them.

    unsorted: random lengths in random order, at least one shorter than seq;
    full: all seq; ones: all 1; mixed: 1 present, and seq too when batch ≥ 2, the rest
    random, shuffled. Except for "full", some sequence is padded whenever seq > 1, so a
    runtime that ignores sequence_lens cannot pass by luck.
    """
    if pattern == "full":
        lengths = np.full(batch, seq)
    elif pattern == "ones":
        lengths = np.ones(batch)
    elif pattern == "unsorted":
        lengths = rng.integers(1, seq + 1, batch)
        lengths[rng.integers(batch)] = rng.integers(1, seq) if seq > 1 else 1
    elif pattern == "mixed":
        lengths = rng.integers(1, seq + 1, batch)
        lengths[-1], lengths[0] = seq, 1
        rng.shuffle(lengths)
    else:
        raise ValueError(f"unknown lengths pattern {pattern!r}; known: {LENGTH_PATTERNS}")
    return lengths.astype(np.int32)


def make_feeds(spec: RNNSpec, batch: int, seq: int, with_h0: bool, seed: int,
               lengths: str | None = None) -> dict[str, np.ndarray]:
    """Seeded inputs named as the graph's inputs (numpy's generator: reproducible)."""
    rng = np.random.default_rng(seed)
    shape = (batch, seq, spec.input_size) if spec.batch_first else (seq, batch, spec.input_size)
    feeds = {"input": rng.standard_normal(shape, dtype=np.float32)}
    if with_h0:
        LD = spec.num_layers * spec.num_directions
        feeds["h_0"] = rng.standard_normal((LD, batch, spec.state_size), dtype=np.float32)
        if spec.cell_info.has_cell_state:
            feeds["c_0"] = rng.standard_normal((LD, batch, spec.hidden_size), dtype=np.float32)
    if lengths is not None:
        feeds["sequence_lens"] = make_lengths(lengths, batch, seq, rng)
    return feeds


def _run(module: Any, feeds: Mapping[str, np.ndarray], dtype: Any) -> dict[str, np.ndarray]:
    """torch eager; with sequence_lens, the packed computation a padded batch gets:
    pack_padded_sequence(enforce_sorted=False) → RNN → pad_packed_sequence(padding 0)."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    def tensor(name: str) -> Any:
        return torch.from_numpy(np.ascontiguousarray(feeds[name])).to(dtype)

    x = tensor("input")
    # nn.LSTM takes and returns its state as (h, c); nn.RNN and nn.GRU as h alone
    lstm = isinstance(module, torch.nn.LSTM)
    hx = [] if "h_0" not in feeds else [(tensor("h_0"), tensor("c_0")) if lstm else tensor("h_0")]
    bf = module.batch_first
    with torch.no_grad(), warnings.catch_warnings():
        # torch notes that oneDNN lacks projected LSTMs and falls back: not the user's concern
        warnings.filterwarnings("ignore", message="LSTM with projections")
        if "sequence_lens" not in feeds:
            out, state = module(x, *hx)
        else:
            lengths = torch.from_numpy(np.asarray(feeds["sequence_lens"], np.int64))
            packed = pack_padded_sequence(x, lengths, batch_first=bf, enforce_sorted=False)
            out, state = module(packed, *hx)
            out, _ = pad_packed_sequence(out, batch_first=bf, padding_value=0.0,
                                         total_length=x.shape[1 if bf else 0])
    if lstm:
        return {"output": out.numpy(), "h_n": state[0].numpy(), "c_n": state[1].numpy()}
    return {"output": out.numpy(), "h_n": state.numpy()}


def torch_truth(module: Any, feeds: Mapping[str, np.ndarray]
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(float32 outputs, float64 outputs) of `module` in eval mode on CPU."""
    import torch

    module = module.eval()
    f32 = _run(module, feeds, torch.float32)
    f64 = _run(copy.deepcopy(module).double(), feeds, torch.float64)
    return f32, f64


def module_truth(module: Any, feeds: Mapping[str, np.ndarray], outputs: tuple[str, ...]
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A whole module's (float32, float64) outputs; feeds are its forward's arguments in order.
    Integer inputs (token ids) stay integers in the float64 run."""
    import torch

    def run(m: Any, dtype: Any) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values()]
        args = [a.to(dtype) if a.is_floating_point() else a for a in args]
        with torch.no_grad():
            out = m(*args)
        out = out if isinstance(out, tuple) else (out,)
        return {name: o.numpy() for name, o in zip(outputs, out)}

    module = module.eval()
    return run(module, torch.float32), run(copy.deepcopy(module).double(), torch.float64)


def module_from_state(spec: RNNSpec, state: Mapping[str, np.ndarray]) -> Any:
    """An eval-mode torch module of `spec` (nn.RNN / LSTM / GRU) carrying the given weights."""
    import torch

    module = spec.build_module(seed=0)
    module.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    return module.eval()
