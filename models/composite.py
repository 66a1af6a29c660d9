"""Whole models that contain nn.RNN / LSTM / GRU modules, used by the tests and conformance.

Each entry of COMPOSITES says how to build the module, how to make its inputs at a given
(batch, seq) — named as its forward's arguments, which become the ONNX input names — and what
its outputs are called.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable

import numpy as np
import torch
from torch import nn

from .seed import SeedRNN

__all__ = ["Composite", "COMPOSITES", "RNNClassifier", "RNNTagger", "StackedRNNs", "LSTMTagger",
           "GRUClassifier"]

Feeds = dict[str, np.ndarray]


class RNNClassifier(nn.Module):
    """Projection → bidirectional batch_first RNN → Linear over the top layer's h_n."""

    def __init__(self, features: int = 12, hidden: int = 24, classes: int = 4) -> None:
        super().__init__()
        self.proj = nn.Linear(features, 16)
        self.rnn = nn.RNN(16, hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h_n = self.rnn(torch.tanh(self.proj(x)))            # [4, batch, hidden]
        return self.head(torch.cat([h_n[-2], h_n[-1]], dim=-1))


class RNNTagger(nn.Module):
    """Embedding → 2-layer relu RNN (batch_first) → per-step Linear: one tag per token."""

    def __init__(self, vocab: int = 50, embed: int = 8, hidden: int = 16, tags: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.rnn = nn.RNN(embed, hidden, num_layers=2, nonlinearity="relu", batch_first=True)
        self.out = nn.Linear(hidden, tags)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(self.embed(tokens))                    # [batch, seq, hidden]
        return self.out(y)


class StackedRNNs(nn.Module):
    """Two RNNs in sequence with a nonlinearity between; the first takes h0, the second
    (bidirectional, no bias) starts from zeros."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.RNN(6, 12)
        self.second = nn.RNN(12, 8, bidirectional=True, bias=False)

    def forward(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, _ = self.first(x, h0)
        return self.second(nn.functional.gelu(y))


class LSTMTagger(nn.Module):
    """Embedding → 2-layer bidirectional LSTM (batch_first) → per-step Linear: the issue's
    example of a tagger that must run at any length."""

    def __init__(self, vocab: int = 50, embed: int = 8, hidden: int = 12, tags: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.out = nn.Linear(2 * hidden, tags)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(self.embed(tokens))                   # [batch, seq, 2·hidden]
        return self.out(y)


class GRUClassifier(nn.Module):
    """GRU from a given h0 → Linear over the last layer's h_n, and the final state itself."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(6, 10, num_layers=2, batch_first=True)
        self.head = nn.Linear(10, 3)

    def forward(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, h_n = self.gru(x, h0)                               # [2, batch, 10]
        return self.head(h_n[-1]), h_n


class StatefulLSTM(nn.Module):
    """The common tutorial pattern: the forward reads its LSTM's own attributes and weights
    to build the initial state, and calls flatten_parameters() first (speechbrain's wrappers
    do the same); returns the per-step output and both final states.

    Not in the conformance matrices yet: tract fails to evaluate its LSTM nodes at batch ≥ 2
    ("Evaluating … Scan") when the initial state is computed in the graph from the input's
    shape (Expand / ConstantOfShape) and has a leading dimension > 1 — a finding awaiting a
    reviewed divergence entry (its exact scope is still being measured)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(5, 9, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(18, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.lstm.flatten_parameters()
        dirs = 2 if self.lstm.bidirectional else 1
        batch = x.shape[0] if self.lstm.batch_first else x.shape[1]
        h0 = torch.zeros(self.lstm.num_layers * dirs, batch, self.lstm.hidden_size,
                         dtype=self.lstm.weight_ih_l0.dtype)
        y, (h_n, c_n) = self.lstm(x, (h0, torch.zeros_like(h0)))
        return self.head(y), h_n, c_n


@dataclass(frozen=True)
class Composite:
    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[int, int, np.random.Generator], Feeds]
    outputs: tuple[str, ...]


def _randn(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


COMPOSITES = MappingProxyType({c.name: c for c in [
    Composite("seed", SeedRNN,
              lambda b, s, r: {"x": _randn(r, s, b, 10), "h0": _randn(r, 1, b, 20)},
              ("output", "h_n")),
    Composite("classifier", RNNClassifier,
              lambda b, s, r: {"x": _randn(r, b, s, 12)}, ("logits",)),
    Composite("tagger", RNNTagger,
              lambda b, s, r: {"tokens": r.integers(0, 50, (b, s)).astype(np.int64)},
              ("tags",)),
    Composite("stacked", StackedRNNs,
              lambda b, s, r: {"x": _randn(r, s, b, 6), "h0": _randn(r, 1, b, 12)},
              ("output", "h_n")),
    Composite("lstm-tagger", LSTMTagger,
              lambda b, s, r: {"tokens": r.integers(0, 50, (b, s)).astype(np.int64)},
              ("tags",)),
    Composite("gru-classifier", GRUClassifier,
              lambda b, s, r: {"x": _randn(r, b, s, 6), "h0": _randn(r, 2, b, 10)},
              ("logits", "h_n")),
    Composite("stateful-lstm", StatefulLSTM,
              lambda b, s, r: {"x": _randn(r, b, s, 5)}, ("scores", "h_n", "c_n")),
]})
