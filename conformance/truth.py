"""Ground truth from torch eager: float32 (what the user runs) and float64 (the exact answer)."""
from __future__ import annotations

import copy
from typing import Any, Mapping

import numpy as np

from exporter.spec import RNNSpec

__all__ = ["OUTPUTS", "make_feeds", "torch_truth", "module_from_state"]

OUTPUTS = ("output", "h_n")


def make_feeds(spec: RNNSpec, batch: int, seq: int, with_h0: bool, seed: int
               ) -> dict[str, np.ndarray]:
    """Seeded float32 inputs named as the graph's inputs (numpy's generator: reproducible)."""
    rng = np.random.default_rng(seed)
    shape = (batch, seq, spec.input_size) if spec.batch_first else (seq, batch, spec.input_size)
    feeds = {"input": rng.standard_normal(shape, dtype=np.float32)}
    if with_h0:
        h0_shape = (spec.num_layers * spec.num_directions, batch, spec.hidden_size)
        feeds["h_0"] = rng.standard_normal(h0_shape, dtype=np.float32)
    return feeds


def _run(module: Any, feeds: Mapping[str, np.ndarray], dtype: Any) -> dict[str, np.ndarray]:
    import torch

    args = [torch.from_numpy(np.ascontiguousarray(feeds[name])).to(dtype)
            for name in ("input", "h_0") if name in feeds]
    with torch.no_grad():
        out, h_n = module(*args)
    return {"output": out.numpy(), "h_n": h_n.numpy()}


def torch_truth(module: Any, feeds: Mapping[str, np.ndarray]
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(float32 outputs, float64 outputs) of `module` in eval mode on CPU."""
    import torch

    module = module.eval()
    f32 = _run(module, feeds, torch.float32)
    f64 = _run(copy.deepcopy(module).double(), feeds, torch.float64)
    return f32, f64


def module_from_state(spec: RNNSpec, state: Mapping[str, np.ndarray]) -> Any:
    """An eval-mode nn.RNN of `spec` carrying the given nn.RNN-keyed weights."""
    import torch

    module = spec.build_module(seed=0)
    module.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    return module.eval()
