"""One torch reading of the graph's contract: seeded feeds named as the graph's inputs, and
what torch computes for them. The exporter's self-check and the conformance runner's truth
both use it, so there is one definition of "what torch computes for this file's inputs"."""
from __future__ import annotations

import warnings
from typing import Any, Mapping

import numpy as np

from .spec import RNNSpec

__all__ = ["LENGTH_PATTERNS", "make_lengths", "make_feeds", "rnn_forward", "module_from_state"]

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
    """Seeded inputs named as the graph's inputs (numpy's generator: reproducible):
    input [seq, batch, I] (batch_first: [batch, seq, I]), h_0 [L·D, batch, S], c_0
    [L·D, batch, H] for nn.LSTM, sequence_lens [batch] int32."""
    rng = np.random.default_rng(seed)
    feeds = {"input": rng.standard_normal((*spec.leading(batch, seq), spec.input_size),
                                          dtype=np.float32)}
    if with_h0:
        for state in spec.cell_info.states:
            feeds[f"{state}_0"] = rng.standard_normal(spec.state_shape(state, batch),
                                                      dtype=np.float32)
    if lengths is not None:
        feeds["sequence_lens"] = make_lengths(lengths, batch, seq, rng)
    return feeds


def module_from_state(spec: RNNSpec, state: Mapping[str, np.ndarray]) -> Any:
    """An eval-mode torch module of `spec` (nn.RNN / LSTM / GRU) carrying the given weights."""
    import torch

    module = spec.build_module(seed=0)
    module.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    return module.eval()


def rnn_forward(module: Any, feeds: Mapping[str, np.ndarray], dtype: Any
                ) -> dict[str, np.ndarray]:
    """An nn.RNN / LSTM / GRU in torch eager on graph-named feeds (input[, h_0[, c_0]]
    [, sequence_lens]) → output, h_n[, c_n]. With sequence_lens, the packed computation a
    padded batch gets: pack_padded_sequence(enforce_sorted=False) → RNN →
    pad_packed_sequence(padding 0) — what the ONNX op's sequence_lens means."""
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
