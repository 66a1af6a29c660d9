"""Whole models that contain nn.RNN / LSTM / GRU modules, used by the tests and conformance.

Each entry of COMPOSITES says how to build the module, how to make its inputs at a given
(batch, seq) — named as its forward's arguments, which become the ONNX input names — and what
its outputs are called.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .seed import SeedRNN

__all__ = ["Composite", "COMPOSITES", "RNNClassifier", "RNNTagger", "StackedRNNs", "LSTMTagger",
           "GRUClassifier", "StatefulLSTM", "StreamingVAD", "ProjectedLSTMEncoder", "GroupedLinear",
           "GRUEnhancer", "DictForecaster", "WeightDrop", "WeightDropLM", "TutorialTagger"]

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
    do the same); returns the per-step output and both final states. (tract cannot evaluate
    its in-graph initial state at batch ≥ 2: divergences.toml, tract-computed-initial-state-batch.)"""

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


class StreamingVAD(nn.Module):
    """A voice-activity detector run frame by frame: each 4 ms frame of 64 samples goes
    through a Conv1d front end, then an LSTM whose state the caller carries between chunks
    (explicit (h, c) in and out), then a per-frame speech probability."""

    def __init__(self, frame: int = 64, hidden: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, kernel_size=8, stride=4)       # 64 samples → 15 steps
        self.proj = nn.Linear(4 * ((frame - 8) // 4 + 1), 24)
        self.lstm = nn.LSTM(24, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 1)

    def forward(self, frames: torch.Tensor, h: torch.Tensor, c: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, s, n = frames.shape
        x = self.conv(frames.reshape(b * s, 1, n))                 # [b·s, 4, 15]
        x = torch.relu(self.proj(torch.relu(x).reshape(b, s, -1)))  # [b, s, 24]
        y, (h, c) = self.lstm(x, (h, c))                           # [b, s, hidden]
        return torch.sigmoid(self.out(y)).squeeze(-1), h, c        # [b, s], [1, b, hidden] ×2


class ProjectedLSTMEncoder(nn.Module):
    """A transducer-style encoder: two projected LSTMs (proj_size) with a LayerNorm between,
    each layer's (h, c) a state of its own in and out. Exported with lowering="scan" (the ONNX
    LSTM op has no projection)."""

    def __init__(self, features: int = 10, hidden: int = 16, proj: int = 8) -> None:
        super().__init__()
        self.layer1 = nn.LSTM(features, hidden, proj_size=proj, batch_first=True)
        self.norm = nn.LayerNorm(proj)
        self.layer2 = nn.LSTM(proj, hidden, proj_size=proj, batch_first=True)

    def forward(self, x: torch.Tensor, h1: torch.Tensor, c1: torch.Tensor, h2: torch.Tensor,
                c2: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y, (h1, c1) = self.layer1(x, (h1, c1))                     # [b, s, proj]
        y, (h2, c2) = self.layer2(self.norm(y), (h2, c2))
        return y, h1, c1, h2, c2


class GroupedLinear(nn.Module):
    """`groups` independent Linear maps over equal slices of the features (as speech
    enhancers use to cut a wide layer's cost): [..., groups·i] → [..., groups·o]."""

    def __init__(self, features: int, out: int, groups: int) -> None:
        super().__init__()
        self.groups = groups
        self.weight = nn.Parameter(torch.randn(groups, features // groups, out // groups) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, f = x.shape
        x = x.reshape(b, s, self.groups, f // self.groups)         # [b, s, g, i]
        y = torch.einsum("bsgi,gio->bsgo", x, self.weight)         # [b, s, g, o]
        return y.reshape(b, s, -1)                                  # [b, s, g·o]


class GRUEnhancer(nn.Module):
    """A speech-enhancement block: grouped linear in, a GRU whose state is carried between
    chunks, grouped linear out to a mask applied to the input spectrum."""

    def __init__(self, bins: int = 16, hidden: int = 24, groups: int = 4) -> None:
        super().__init__()
        self.inp = GroupedLinear(bins, hidden, groups)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.mask = GroupedLinear(hidden, bins, groups)

    def forward(self, spectrum: torch.Tensor, h: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        y, h = self.gru(torch.relu(self.inp(spectrum)), h)         # [b, s, hidden]
        return spectrum * torch.sigmoid(self.mask(y)), h


class DictForecaster(nn.Module):
    """A forecaster whose forward takes a dict of tensors: past values and a weekday index per
    step; a 2-layer LSTM (sequence-major inside) and a head predicting the next `horizon`
    values."""

    def __init__(self, horizon: int = 3) -> None:
        super().__init__()
        self.weekday = nn.Embedding(7, 3)
        self.lstm = nn.LSTM(2 + 3, 12, num_layers=2)
        self.head = nn.Linear(12, horizon)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = torch.cat([batch["history"], self.weekday(batch["weekday"])], dim=-1)  # [b, s, 5]
        _, (h_n, _) = self.lstm(x.transpose(0, 1))                 # h_n [2, b, 12]
        return self.head(h_n[-1])                                  # [b, horizon]


class WeightDrop(nn.Module):
    """DropConnect on a recurrent module's hidden-to-hidden weights, as awd-lstm does it: the
    weight parameter is replaced by `<name>_raw` on the wrapper, and each call assigns
    dropout(raw) to the module before calling its forward directly. In eval mode the
    weights are the raw ones."""

    def __init__(self, module: nn.Module, weights: list[str], dropout: float) -> None:
        super().__init__()
        self.module, self.weights, self.dropout = module, list(weights), dropout
        for name in self.weights:
            raw = getattr(module, name)
            del module._parameters[name]
            self.register_parameter(f"{name}_raw", nn.Parameter(raw.data))

    def forward(self, *args: torch.Tensor) -> tuple:
        for name in self.weights:
            raw = getattr(self, f"{name}_raw")
            setattr(self.module, name, nn.functional.dropout(raw, self.dropout, self.training))
        return self.module.forward(*args)


class WeightDropLM(nn.Module):
    """An awd-lstm-style language model: embedding → weight-dropped LSTM (called through its
    wrapper) → decoder over the vocabulary, sequence-major."""

    def __init__(self, vocab: int = 40, embed: int = 8, hidden: int = 12) -> None:
        super().__init__()
        self.encoder = nn.Embedding(vocab, embed)
        self.rnn = WeightDrop(nn.LSTM(embed, hidden), ["weight_hh_l0"], 0.5)
        self.decoder = nn.Linear(hidden, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(self.encoder(tokens))                      # [seq, batch, hidden]
        return self.decoder(y)


class TutorialTagger(nn.Module):
    """The PyTorch tutorial's part-of-speech tagger: one unbatched sentence of token ids,
    `len(sentence)` in the forward and a batch of 1 built in with view()."""

    def __init__(self, vocab: int = 30, embed: int = 6, hidden: int = 8, tags: int = 3) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden)
        self.hidden2tag = nn.Linear(hidden, tags)

    def forward(self, sentence: torch.Tensor) -> torch.Tensor:
        embeds = self.word_embeddings(sentence)
        lstm_out, _ = self.lstm(embeds.view(len(sentence), 1, -1))    # [seq, 1, hidden]
        return torch.log_softmax(self.hidden2tag(lstm_out.view(len(sentence), -1)), dim=1)


@dataclass(frozen=True)
class Composite:
    """How to build a whole model and feed it. `inputs(batch, seq, rng)` gives its flat input
    tensors, named as the ONNX inputs will be; `call(feeds)` arranges them as the forward's
    arguments (default: positional, in order); `options` are export options it needs."""

    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[int, int, np.random.Generator], Feeds]
    outputs: tuple[str, ...]
    call: Callable[[dict[str, Any]], tuple] = lambda feeds: tuple(feeds.values())
    options: Callable[[], dict[str, Any]] = dict


def _randn(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


def _vad_shapes() -> dict[str, Any]:
    """Only batch and sequence vary: a frame is always 64 samples (torch.export would leave
    the frame size symbolic too, and the conv front end's Reshape then fixes nothing)."""
    from torch.export import Dim

    batch, seq = Dim("batch"), Dim("seq")
    return {"dynamic_shapes": ({0: batch, 1: seq}, {1: batch}, {1: batch})}


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
    Composite("vad", StreamingVAD,
              lambda b, s, r: {"frames": _randn(r, b, s, 64), "h": _randn(r, 1, b, 16),
                               "c": _randn(r, 1, b, 16)},
              ("speech", "h_n", "c_n"), options=_vad_shapes),
    Composite("projected-encoder", ProjectedLSTMEncoder,
              lambda b, s, r: {"x": _randn(r, b, s, 10), "h1": _randn(r, 1, b, 8),
                               "c1": _randn(r, 1, b, 16), "h2": _randn(r, 1, b, 8),
                               "c2": _randn(r, 1, b, 16)},
              ("encoded", "h1_n", "c1_n", "h2_n", "c2_n"),
              options=lambda: {"lowering": "scan"}),
    Composite("gru-enhancer", GRUEnhancer,
              lambda b, s, r: {"spectrum": _randn(r, b, s, 16), "h": _randn(r, 1, b, 24)},
              ("enhanced", "h_n")),
    Composite("dict-forecaster", DictForecaster,
              lambda b, s, r: {"history": _randn(r, b, s, 2),
                               "weekday": r.integers(0, 7, (b, s)).astype(np.int64)},
              ("forecast",),
              call=lambda f: ({"history": f["history"], "weekday": f["weekday"]},)),
    Composite("weight-drop-lm", WeightDropLM,
              lambda b, s, r: {"tokens": r.integers(0, 40, (s, b)).astype(np.int64)},
              ("logits",)),
    Composite("tutorial-tagger", TutorialTagger,      # one sentence: the batch is always 1
              lambda b, s, r: {"sentence": r.integers(0, 30, (s,)).astype(np.int64)},
              ("tag_scores",)),
]})
