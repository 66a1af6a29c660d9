"""pytest plugin (entry point `conformance`): one test item per runtime.

A test that takes the `conformance_runtime` fixture runs once per runtime — those named by
`--conformance-runtimes` (default: every runtime installed here), narrowed per test by
`@pytest.mark.conformance_runtimes("ort-cpu", "openvino")`:

    def test_my_model(conformance_runtime, tmp_path):
        model = MyModel().eval()
        exporter.export(model, example, tmp_path / "m.onnx")
        assert_conforms(model, tmp_path / "m.onnx", runtimes=[conformance_runtime])

A runtime that is not installed is a skipped item (named, with its reason), never a pass.
"""
from __future__ import annotations

from typing import Any

import pytest

__all__ = ["conformance_runtime"]


def pytest_addoption(parser: Any) -> None:
    parser.getgroup("conformance").addoption(
        "--conformance-runtimes", default="installed", metavar="A,B",
        help="runtimes a test taking `conformance_runtime` runs on (default: installed)")


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "conformance_runtimes(*names): the runtimes this "
                                       "test's conformance_runtime runs on")


def _names(config: Any, marker: Any) -> list[str]:
    from .runtimes import REGISTRY, installed, runtime_names

    if marker is not None:
        return runtime_names(",".join(marker.args))
    text = config.getoption("--conformance-runtimes")
    if text == "installed":
        return [n for n in REGISTRY if n not in ("ort-cuda-tf32", "openvino-static")]
    return runtime_names(text)


def pytest_generate_tests(metafunc: Any) -> None:
    if "conformance_runtime" in metafunc.fixturenames:
        names = _names(metafunc.config, metafunc.definition.get_closest_marker(
            "conformance_runtimes"))
        metafunc.parametrize("conformance_runtime", names, ids=names, indirect=True)


@pytest.fixture
def conformance_runtime(request: Any) -> str:
    """The runtime's name; skips (with the runtime's own reason) where it is unavailable."""
    from .runtimes import load_runtime

    name = request.param
    runtime = load_runtime(name)
    try:
        reason = runtime.available()
    finally:
        runtime.close()
    if reason:
        pytest.skip(f"{name} unavailable: {reason}")
    return name
