from __future__ import annotations

import itertools

import pytest

from conformance.matrix import load_matrix, select, shard
from exporter import ExportError


def test_smoke_matrix_shape():
    cases = load_matrix("smoke")
    assert len(cases) >= 20
    ids = [c.id for c in cases]
    assert any("relu" in i for i in ids) and any("-bi-" in i for i in ids)
    assert any(c.inputs.seq >= 64 for c in cases) and any(c.inputs.seq == 1 for c in cases)
    assert any(c.inputs.batch == 1 for c in cases) and any(c.inputs.batch > 1 for c in cases)
    assert len(set(ids)) == len(ids)


def test_ids_and_seeds_are_deterministic():
    a, b = load_matrix("default"), load_matrix("default")
    assert [c.id for c in a] == [c.id for c in b]
    assert [c.seed for c in a] == [c.seed for c in b]


def test_default_matrix_covers_every_argument_combination():
    models = {c.model for c in load_matrix("default") if hasattr(c.model, "spec")}
    seen = {(m.spec.num_layers, m.spec.nonlinearity, m.spec.bias, m.spec.batch_first,
             m.spec.bidirectional, m.initial_state) for m in models}
    want = set(itertools.product([1, 2, 3], ["tanh", "relu"], [True, False], [False, True],
                                 [False, True], ["input", "zeros"]))
    assert want <= seen
    assert any(m.spec.dropout > 0 for m in models)


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shards_cover_every_case_exactly_once(n):
    cases = load_matrix("default")
    parts = [shard(cases, i, n) for i in range(1, n + 1)]
    ids = [c.id for part in parts for c in part]
    assert sorted(ids) == sorted(c.id for c in cases)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_bad_shard_and_select():
    cases = load_matrix("smoke")
    with pytest.raises(ExportError, match="shard"):
        shard(cases, 0, 2)
    with pytest.raises(ExportError, match="shard"):
        shard(cases, 3, 2)
    assert all("relu" in c.id for c in select(cases, "relu"))
    assert all(c.id.endswith("b1s1") for c in select(cases, "*--b1s1"))


def test_matrix_file(tmp_path):
    f = tmp_path / "m.toml"
    f.write_text('[[mine]]\nnum_layers = [1, 2]\nbidirectional = [true]\ninputs = [[2, 3]]\n')
    cases = load_matrix(str(f))
    assert len(cases) == 2 and all(c.model.spec.bidirectional for c in cases)
    f.write_text('[[mine]]\nnum_layerz = [1]\ninputs = [[2, 3]]\n')
    with pytest.raises(ExportError, match="unknown key"):
        load_matrix(str(f))
    with pytest.raises(ExportError, match="unknown matrix"):
        load_matrix("nope")
