"""The demo model this project grew from: a module wrapping one nn.RNN as `self.rnn1`."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["SeedRNN", "SEED_INPUT_SHAPE", "SEED_H0_SHAPE"]

SEED_INPUT_SHAPE = (5, 1, 10)   # [seq, batch, input_size]
SEED_H0_SHAPE = (1, 1, 20)      # [layers·dirs, batch, hidden_size]


class SeedRNN(nn.Module):
    """`forward(x, h0) -> (output, hn)` around `nn.RNN(10, 20, 1)`."""

    def __init__(self, input_size: int = 10, hidden_size: int = 20, num_layers: int = 1) -> None:
        super().__init__()
        self.rnn1 = nn.RNN(input_size, hidden_size, num_layers)

    def forward(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rnn1(x, h0)
