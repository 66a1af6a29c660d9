"""Named nn.RNN configurations: the vocabulary tests and conformance matrices draw from."""
from __future__ import annotations

from types import MappingProxyType

from exporter.errors import ExportError
from exporter.spec import RNNSpec

__all__ = ["PRESETS", "preset"]

PRESETS = MappingProxyType({
    "seed": RNNSpec(10, 20),
    "deep": RNNSpec(10, 20, num_layers=3),
    "bidirectional": RNNSpec(10, 20, bidirectional=True),
    "bidir-batch-first": RNNSpec(10, 20, num_layers=2, bidirectional=True, batch_first=True),
    "relu": RNNSpec(10, 20, nonlinearity="relu"),
    "relu-bidir-deep": RNNSpec(10, 20, num_layers=2, nonlinearity="relu", bidirectional=True),
    "no-bias": RNNSpec(10, 20, bias=False),
    "wide": RNNSpec(64, 512),
    "tiny": RNNSpec(1, 1),
    "lstm": RNNSpec(10, 20, cell="lstm"),
    "lstm-bidir-deep": RNNSpec(10, 20, num_layers=2, bidirectional=True, cell="lstm"),
    "lstm-proj": RNNSpec(10, 20, num_layers=2, bidirectional=True, cell="lstm", proj_size=8),
    "gru": RNNSpec(10, 20, cell="gru"),
    "gru-bidir-batch-first": RNNSpec(10, 20, num_layers=2, bidirectional=True, batch_first=True,
                                     cell="gru"),
    "dropout": RNNSpec(10, 20, num_layers=2, dropout=0.3),
})


def preset(name: str) -> RNNSpec:
    try:
        return PRESETS[name]
    except KeyError:
        raise ExportError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
