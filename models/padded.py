"""A padded-batch example: a sentence classifier reading h_n of variable-length sentences.

Its forward packs the padded batch (pack_padded_sequence, enforce_sorted=False), so padding
never reaches the RNN; the exported RNN reproduces that with the sequence_lens input:
    exporter.export(clf.rnn, sequence_lens=True, initial_state="zeros")
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

__all__ = ["PaddedSentenceClassifier"]


class PaddedSentenceClassifier(nn.Module):
    """tokens [batch, seq] (0 = padding) + lengths [batch] → logits [batch, classes]."""

    def __init__(self, vocab: int = 100, embed: int = 16, hidden: int = 32,
                 classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed, padding_idx=0)
        self.rnn = nn.RNN(embed, hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * hidden, classes)

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embed(tokens)                            # [batch, seq, embed]

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(self.features(tokens), lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        _, h_n = self.rnn(packed)                            # [layers·2, batch, hidden]
        last = torch.cat([h_n[-2], h_n[-1]], dim=-1)         # top layer, both directions
        return self.head(last)
