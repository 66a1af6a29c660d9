from __future__ import annotations

import pytest
import torch

from exporter import ExportError, ExportOptions, RNNSpec
from exporter.opset import max_supported_opset


@pytest.mark.parametrize("kwargs, message", [
    ({"input_size": 0, "hidden_size": 3}, "input_size must be a positive integer"),
    ({"input_size": 3, "hidden_size": -1}, "hidden_size must be a positive integer"),
    ({"input_size": 3, "hidden_size": 3, "num_layers": 0}, "num_layers"),
    ({"input_size": 3, "hidden_size": 3, "nonlinearity": "sigmoid"}, "nonlinearity"),
    ({"input_size": 3, "hidden_size": 3, "dropout": 1.0}, "dropout"),
    ({"input_size": 3, "hidden_size": 3, "dropout": -0.1}, "dropout"),
    ({"input_size": 3, "hidden_size": 3, "bias": "yes"}, "bias"),
    ({"input_size": 2.5, "hidden_size": 3}, "input_size"),
])
def test_bad_specs_are_refused(kwargs, message):
    with pytest.raises(ExportError, match=message):
        RNNSpec(**kwargs)


def test_from_kwargs_rejects_unknown_and_missing():
    with pytest.raises(ExportError, match="unknown nn.RNN argument.*peepholes"):
        RNNSpec.from_kwargs({"input_size": 1, "hidden_size": 1, "peepholes": 2})
    with pytest.raises(ExportError, match="proj_size is nn.LSTM's argument"):
        RNNSpec.from_kwargs({"input_size": 1, "hidden_size": 2, "proj_size": 1})
    with pytest.raises(ExportError, match="missing.*hidden_size"):
        RNNSpec.from_kwargs({"input_size": 1})


def test_spec_round_trips_through_module():
    spec = RNNSpec(3, 4, num_layers=2, nonlinearity="relu", bias=False, batch_first=True,
                   dropout=0.25, bidirectional=True)
    module = spec.build_module(seed=1)
    assert RNNSpec.from_module(module) == spec
    assert not module.training


def test_ids_are_distinct_and_readable():
    a = RNNSpec(3, 4, nonlinearity="relu", bidirectional=True)
    b = RNNSpec(3, 4, bidirectional=True)
    assert a.id != b.id and "relu" in a.id and "bi" in a.id


def test_float64_module_is_refused():
    with pytest.raises(ExportError, match="float32"):
        RNNSpec.from_module(torch.nn.RNN(2, 3).double())


def test_opset_range():
    top = max_supported_opset()
    assert top >= 17
    assert ExportOptions(opset=14).opset == 14
    assert ExportOptions(opset=top).opset == top
    for bad in (13, top + 1):
        with pytest.raises(ExportError, match="unsupported opset"):
            ExportOptions(opset=bad)
