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


def test_projected_lstm_packs_weight_hr_unpermuted():
    """weight_hr [S, H] is not gate-blocked: packed as it is, per direction [dirs, S, H]."""
    spec = RNNSpec(4, 6, cell="lstm", proj_size=3, bidirectional=True, num_layers=2)
    state = module_state(spec.build_module(seed=2))
    assert expected_shapes(spec)["weight_hr_l1_reverse"] == (3, 6)
    layers = pack_layers(state, spec)
    for k, layer in enumerate(layers):
        assert layer.P.shape == (2, 3, 6) and layer.P.dtype == np.float32
        np.testing.assert_array_equal(layer.P[0], state[f"weight_hr_l{k}"])
        np.testing.assert_array_equal(layer.P[1], state[f"weight_hr_l{k}_reverse"])
    assert pack_layers(module_state(RNNSpec(4, 6, cell="lstm").build_module(seed=2)),
                       RNNSpec(4, 6, cell="lstm"))[0].P is None


def test_packing_casts_to_float32_and_refuses_nonfinite_by_default():
    spec = RNNSpec(3, 4)
    state = {k: v.astype(np.float64) for k, v in module_state(spec.build_module(seed=0)).items()}
    layer = pack_layers(state, spec)[0]
    assert layer.W.dtype == layer.R.dtype == layer.B.dtype == np.float32
    state["weight_hh_l0"][0, 0] = np.nan
    with pytest.raises(ExportError, match=r"^weight_hh_l0 has 1 NaN/±Inf value\(s\) of 16"):
        pack_layers(state, spec)
    assert np.isnan(pack_layers(state, spec, allow_nonfinite=True)[0].R).any()


def test_missing_and_extra_weights_are_named():
    spec = RNNSpec(3, 4)
    state = module_state(spec.build_module(seed=0))
    short = {k: v for k, v in state.items() if not k.startswith("bias")}
    with pytest.raises(ExportError) as info:
        pack_layers(short, spec)
    assert str(info.value) == ("RNN weights missing for i3h4-l1-tanh-uni-sf: bias_hh_l0, "
                               "bias_ih_l0")
    with pytest.raises(ExportError) as info:
        pack_layers({**state, "weight_ih_l1": state["weight_ih_l0"],
                     "weight_hh_l1": state["weight_hh_l0"]}, spec)
    assert str(info.value) == ("unexpected RNN weights for i3h4-l1-tanh-uni-sf: weight_hh_l1, "
                               "weight_ih_l1")
