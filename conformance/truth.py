"""Ground truth from torch eager: float32 (what the user runs) and float64 (the exact answer)."""
from __future__ import annotations

import copy
from typing import Any, Mapping

import numpy as np

from exporter.feeds import (LENGTH_PATTERNS, make_feeds, make_lengths, module_from_state,
                            rnn_forward)
from exporter.spec import RNNSpec

__all__ = ["OUTPUTS", "LENGTH_PATTERNS", "make_feeds", "make_lengths", "torch_truth",
           "module_from_state", "check_case_size"]

OUTPUTS = ("output", "h_n")      # and c_n for nn.LSTM


# copies of one case's tensors alive at once: feeds, torch float32 and float64 answers (the
# float64 pair counts twice), each runtime's outputs and its worker's copy
_CASE_COPIES = 8


def check_case_size(spec: RNNSpec, batch: int, seq: int) -> None:
    """Refuse (ExportError), before allocating, an input case whose tensors would not fit."""
    from exporter.errors import ExportError
    from exporter.spec import available_memory

    width = spec.input_size + spec.num_directions * spec.state_size
    need = 4 * _CASE_COPIES * batch * seq * width
    if need > available_memory() // 2:
        raise ExportError(f"input case {batch}x{seq}: its tensors need about "
                          f"{need / 2**30:,.1f} GiB; {available_memory() / 2**30:,.1f} GiB "
                          "are available")


def torch_truth(module: Any, feeds: Mapping[str, np.ndarray]
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(float32 outputs, float64 outputs) of `module` in eval mode on CPU."""
    import torch

    module = module.eval()
    f32 = rnn_forward(module, feeds, torch.float32)
    f64 = rnn_forward(copy.deepcopy(module).double(), feeds, torch.float64)
    return f32, f64
