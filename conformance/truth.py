"""Ground truth from torch eager: float32 (what the user runs) and float64 (the exact answer)."""
from __future__ import annotations

import copy
from typing import Any, Mapping

import numpy as np

from exporter.spec import RNNSpec

__all__ = ["OUTPUTS", "LENGTH_PATTERNS", "make_feeds", "make_lengths", "torch_truth",
           "module_truth", "module_from_state", "check_case_size"]

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
    from exporter.verify import rnn_forward   # one torch reading of the graph's feeds
    return rnn_forward(module, feeds, dtype)


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
