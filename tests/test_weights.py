from __future__ import annotations

import numpy as np
import pytest

from exporter import ExportError, RNNSpec, module_state
from exporter.weights import expected_shapes, pack_layers


def test_packing_shapes_and_values():
    spec = RNNSpec(3, 4, num_layers=2, bidirectional=True)
    state = module_state(spec.build_module(seed=0))
    layers = pack_layers(state, spec)
    assert layers[0].W.shape == (2, 4, 3) and layers[1].W.shape == (2, 4, 8)
    assert layers[1].R.shape == (2, 4, 4) and layers[1].B.shape == (2, 8)
    np.testing.assert_array_equal(layers[1].W[1], state["weight_ih_l1_reverse"])
    np.testing.assert_array_equal(layers[0].B[1, :4], state["bias_ih_l0_reverse"])
    np.testing.assert_array_equal(layers[0].B[1, 4:], state["bias_hh_l0_reverse"])


def test_no_bias_packs_no_B():
    spec = RNNSpec(3, 4, bias=False)
    (layer,) = pack_layers(module_state(spec.build_module()), spec)
    assert layer.B is None


def test_expected_shapes_match_torch():
    spec = RNNSpec(5, 7, num_layers=3, bidirectional=True, bias=False)
    state = module_state(spec.build_module())
    assert {k: v.shape for k, v in state.items()} == expected_shapes(spec)


def test_missing_extra_and_misshaped_weights_are_refused():
    spec = RNNSpec(3, 4)
    state = module_state(spec.build_module())
    with pytest.raises(ExportError, match="missing.*bias_hh_l0"):
        pack_layers({k: v for k, v in state.items() if k != "bias_hh_l0"}, spec)
    with pytest.raises(ExportError, match="unexpected.*weight_ih_l1"):
        pack_layers({**state, "weight_ih_l1": state["weight_ih_l0"]}, spec)
    with pytest.raises(ExportError, match=r"weight_hh_l0 has shape \[4, 3\]"):
        pack_layers({**state, "weight_hh_l0": np.zeros((4, 3), np.float32)}, spec)
