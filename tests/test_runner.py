"""The runner end to end with real torch and real runtimes (and crash/hang doubles)."""
from __future__ import annotations


import pytest

from conformance.divergences import Divergence
from conformance.matrix import load_matrix, select
from conformance.runner import execute, prepare_matrix

FAKES = "tests.fake_runtimes"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    cases = [c for c in select(load_matrix("smoke"), "i10h20-l1-") if not c.model.sequence_lens]
    return prepare_matrix(cases, tmp_path_factory.mktemp("models"))


def _by_case(result, runtime):
    return {c["case"]: c for c in result.cells if c["runtime"] == runtime}


def test_ort_cpu_passes_and_cells_record_everything(prepared):
    result = execute(prepared, ["ort-cpu"], isolate=False)
    assert {c["status"] for c in result.cells} == {"pass"}
    cell = result.cells[0]
    for key in ("case", "runtime", "status", "max_abs_err", "max_rel_err", "worst_index",
                "tolerance", "runtime_version", "provider", "wall_s", "max_abs_err_f64",
                "torch_f32_err"):
        assert cell[key] is not None, key
    assert cell["provider"] == "CPUExecutionProvider"


def test_cuda_absent_is_unavailable_never_pass(prepared):
    alone = execute(prepared[:2], ["ort-cuda"], isolate=False)
    assert {c["status"] for c in alone.cells} == {"unavailable"}
    assert "CUDAExecutionProvider" in alone.runtimes["ort-cuda"]["reason"]
    assert alone.failed() and not alone.judged()        # nothing was checked: red
    beside = execute(prepared[:2], ["ort-cpu", "ort-cuda"], isolate=False)
    assert not beside.failed() and beside.failed(["ort-cuda"])


def test_reference_relu_is_xfail_not_pass(prepared):
    result = execute(prepared, ["onnx-reference"], isolate=False)
    for case, cell in _by_case(result, "onnx-reference").items():
        if "relu" in case:
            assert cell["status"] == "xfail" and cell["observed"] == "unsupported"
            assert cell["divergence"]["id"] == "onnx-reference-relu"
        else:
            assert cell["status"] == "pass"


def _entry(kind: str, features: list[str], runtime: str = "ort-cpu") -> Divergence:
    return Divergence(id="t", runtime=runtime, versions=">=0", features=frozenset(features),
                      kind=kind, summary="test", repro="", citation="none", reviewed="today")


def test_known_divergence_that_passes_is_xpass(prepared):
    result = execute(prepared[:2], ["ort-cpu"], isolate=False,
                     divergences=[_entry("wrong-result", ["rnn-op"])])
    assert {c["status"] for c in result.cells} == {"xpass"}
    assert result.failed()


def test_known_divergence_of_another_kind_stays_failing(prepared):
    entry = _entry("wrong-result", ["rnn-activation-relu"], runtime="onnx-reference")
    result = execute(prepared, ["onnx-reference"], isolate=False, divergences=[entry])
    relu = [c for c in result.cells if "relu" in c["case"]]
    assert relu and all(c["status"] == "unsupported" for c in relu)
    assert "expects wrong-result, observed unsupported" in relu[0]["message"]


def test_version_range_limits_an_entry(prepared):
    entry = Divergence(id="old", runtime="onnx-reference", versions="<1.0",
                       features=frozenset({"rnn-activation-relu"}), kind="refusal", summary="",
                       repro="", citation="", reviewed="")
    result = execute(prepared, ["onnx-reference"], isolate=False, divergences=[entry])
    assert any(c["status"] == "unsupported" for c in result.cells)


def test_crash_becomes_error_and_run_goes_on(prepared):
    result = execute(prepared, [f"{FAKES}:CrashOnSeq1"], timeout=60)
    cells = result.cells
    crashed = [c for c in cells if c["labels"]["seq"] == 1]
    assert crashed and all(c["status"] == "error" and "SIGSEGV" in c["message"]
                           for c in crashed)
    rest = [c for c in cells if c["labels"]["seq"] != 1]
    assert rest and all(c["status"] == "pass" for c in rest)


def test_hang_becomes_timeout_error_and_run_goes_on(prepared):
    result = execute(prepared, [f"{FAKES}:HangOnSeq1"], timeout=4)
    hung = [c for c in result.cells if c["labels"]["seq"] == 1]
    assert hung and all(c["status"] == "error" and "timeout" in c["message"] for c in hung)
    assert all(c["status"] == "pass" for c in result.cells if c["labels"]["seq"] != 1)


def test_broken_adapter_is_an_error_never_unavailable(prepared):
    """`unavailable` means only "not installed / no device here", said by the adapter."""
    for isolate in (True, False):
        result = execute(prepared[:1], [f"{FAKES}:BrokenStart", "ort-cpu"], timeout=30,
                         isolate=isolate)
        statuses = {c["runtime"]: c for c in result.cells}
        assert statuses["ort-cpu"]["status"] == "pass"
        broken = statuses[f"{FAKES}:BrokenStart"]
        assert broken["status"] == "error", broken
        assert "simulated broken installation" in broken["message"]
        assert not result.runtimes[f"{FAKES}:BrokenStart"]["available"]
        assert result.failed()


def test_adapter_that_cannot_be_loaded_is_an_error(prepared):
    result = execute(prepared[:1], [f"{FAKES}:NoSuchAdapter"], timeout=30)
    (cell,) = result.cells
    assert cell["status"] == "error" and "NoSuchAdapter" in cell["message"]


def test_slow_worker_start_has_its_own_timeout(prepared):
    result = execute(prepared[:1], [f"{FAKES}:SlowStart"], timeout=60, start_timeout=2)
    (cell,) = result.cells
    assert cell["status"] == "error" and "did not start within 2s" in cell["message"]


def test_parallel_jobs_give_the_same_cells(prepared):
    one = execute(prepared, ["ort-cpu", "onnx-reference"], jobs=1)
    two = execute(prepared, ["ort-cpu", "onnx-reference"], jobs=3)
    strip = lambda cells: [(c["case"], c["runtime"], c["status"], c["max_abs_err"])  # noqa: E731
                           for c in cells]
    assert strip(one.cells) == strip(two.cells)


def test_a_stopped_run_makes_and_restarts_no_worker(tmp_path, monkeypatch):
    """After a SIGTERM the pool is closed while group threads may still be going: a new host
    (a Worker makes its temporary log file when made) is refused, and a closed worker starts
    no child again."""
    import tempfile

    from conformance.runner import _Pool
    from conformance.worker import Worker

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    pool = _Pool(lambda name: Worker(name))
    pool.get("ort-cpu")
    assert len(list(tmp_path.glob("conformance-worker-*.log"))) == 1
    pool.close()
    assert not list(tmp_path.glob("conformance-worker-*.log"))
    with pytest.raises(RuntimeError, match="stopped"):
        pool.get("onnx-reference")
    assert not list(tmp_path.glob("conformance-worker-*.log"))
    worker = Worker("ort-cpu")
    worker.close()
    outcome = worker.run("no-such.onnx", {})
    assert outcome.kind == "error" and "closed" in outcome.message and worker._proc is None
