"""sequence_lens: PackedSequence semantics through the ONNX RNN op's sequence_lens input."""
from __future__ import annotations

import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conformance.truth import LENGTH_PATTERNS, make_feeds, torch_truth
from exporter import RNNSpec, export
from models import PaddedSentenceClassifier

from .helpers import ATOL, RTOL, assert_close

AXES = list(itertools.product([1, 2, 3], ["tanh", "relu"], [True, False], [False, True],
                              [False, True], ["input", "zeros"]))


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("case", AXES, ids=[f"l{a}-{b}-bias{c}-bf{d}-bi{e}-{f}"
                                            for a, b, c, d, e, f in AXES])
def test_matches_torch_packed(case):
    layers, nl, bias, bf, bi, init = case
    spec = RNNSpec(3, 4, layers, nl, bias, bf, 0.0, bi)
    module = spec.build_module(seed=layers)
    model = export(module, initial_state=init, sequence_lens=True, target="none")
    sess = _session(model)
    for k, pattern in enumerate(LENGTH_PATTERNS):
        feeds = make_feeds(spec, 5, 9, init == "input", seed=k, lengths=pattern)
        want, _ = torch_truth(module, feeds)
        got = sess.run(["output", "h_n"], feeds)
        assert_close(got, [want["output"], want["h_n"]])


def test_structure_and_declared_input():
    spec = RNNSpec(3, 4, num_layers=3, bidirectional=True, batch_first=True)
    model = export(spec.build_module(seed=0), sequence_lens=True, target="none")
    onnx.checker.check_model(model, full_check=True)
    lens = next(i for i in model.graph.input if i.name == "sequence_lens")
    assert lens.type.tensor_type.elem_type == onnx.TensorProto.INT32
    assert [d.dim_param for d in lens.type.tensor_type.shape.dim] == ["batch"]
    rnns = [n for n in model.graph.node if n.op_type == "RNN"]
    assert len(rnns) == 3 and all(n.input[4] == "sequence_lens" for n in rnns)
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"TopK", "Gather", "GatherElements", "Loop", "Scan", "ReverseSequence"}
    props = {p.key: p.value for p in model.metadata_props}
    assert props["sequence_lens"] == "true"


def test_full_lengths_equal_the_unpacked_model():
    spec = RNNSpec(3, 4, num_layers=2, bidirectional=True)
    module = spec.build_module(seed=1)
    plain = _session(export(module, target="none"))
    packed = _session(export(module, sequence_lens=True, target="none"))
    feeds = make_feeds(spec, 4, 6, True, seed=2, lengths="full")
    a = plain.run(None, {k: v for k, v in feeds.items() if k != "sequence_lens"})
    b = packed.run(None, feeds)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_bad_lengths_at_run_time_on_onnxruntime_cpu():
    """The contract is 1 ≤ length ≤ seq; what onnxruntime does outside it, pinned here."""
    spec = RNNSpec(2, 3, bidirectional=True)
    module = spec.build_module(seed=0)
    sess = _session(export(module, sequence_lens=True, target="none"))
    feeds = make_feeds(spec, 3, 4, True, seed=0, lengths="unsorted")
    for lens, message in (([5, 4, 2], "Invalid value"), ([-1, 4, 2], "Invalid value"),
                          ([1, 2], "must have shape"), (np.array([1, 2, 3], np.int64), "int32")):
        bad = {**feeds, "sequence_lens": np.asarray(lens, np.asarray(lens).dtype
                                                    if isinstance(lens, np.ndarray) else np.int32)}
        with pytest.raises(Exception, match=message):
            sess.run(None, bad)
    # Length 0 (torch refuses it): onnxruntime CPU runs it, zero output and zero h_n.
    out, h_n = sess.run(None, {**feeds, "sequence_lens": np.array([0, 4, 2], np.int32)})
    assert not out[:, 0].any() and not h_n[:, 0].any()


def test_padded_sentence_classifier_example():
    """The models/ example: the exported RNN + the head reproduce the classifier's logits."""
    torch.manual_seed(0)
    clf = PaddedSentenceClassifier().eval()
    lengths = torch.tensor([7, 2, 5, 1, 7])
    tokens = torch.randint(1, 100, (5, 7))
    tokens[torch.arange(7)[None, :] >= lengths[:, None]] = 0
    with torch.no_grad():
        want = clf(tokens, lengths).numpy()
        x = clf.features(tokens).numpy()
    sess = _session(export(clf.rnn, sequence_lens=True, initial_state="zeros", target="none"))
    _, h_n = sess.run(None, {"input": x, "sequence_lens": lengths.numpy().astype(np.int32)})
    last = np.concatenate([h_n[-2], h_n[-1]], axis=-1)
    logits = last @ clf.head.weight.detach().numpy().T + clf.head.bias.detach().numpy()
    np.testing.assert_allclose(logits, want, atol=ATOL, rtol=RTOL)
