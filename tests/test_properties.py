"""Property-based: random configs and shapes, exported and compared to torch."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter import RNNSpec, export

from .helpers import assert_close, feeds_for, make_inputs, ort_run, torch_outputs

specs = st.builds(RNNSpec, input_size=st.integers(1, 12), hidden_size=st.integers(1, 12),
                  num_layers=st.integers(1, 4), nonlinearity=st.sampled_from(["tanh", "relu"]),
                  bias=st.booleans(), batch_first=st.booleans(),
                  dropout=st.sampled_from([0.0, 0.2]), bidirectional=st.booleans())


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs, batch=st.integers(1, 5), seq=st.integers(1, 40),
       init=st.sampled_from(["input", "zeros"]), seed=st.integers(0, 2**16))
def test_random_configs_match_torch(spec, batch, seq, init, seed):
    module = spec.build_module(seed=seed)
    model = export(module, initial_state=init, target="none")
    assert sum(n.op_type == "RNN" for n in model.graph.node) == spec.num_layers
    x, h0 = make_inputs(spec, batch, seq, seed=seed)
    h0 = h0 if init == "input" else None
    assert_close(ort_run(model, feeds_for(x, h0)), torch_outputs(module, x, h0))
