"""Runtime adapters, registered by name; each imported lazily, only when used."""
from __future__ import annotations

import importlib
from types import MappingProxyType

from exporter.errors import ExportError

from .base import Runtime

__all__ = ["REGISTRY", "Runtime", "load_runtime", "runtime_class", "runtime_names", "base_name",
           "installed"]

# name → "module:Class"; --runtimes also accepts a "module:Class" path directly.
REGISTRY = MappingProxyType({
    "ort-cpu": "conformance.runtimes.ort:OrtCpu",
    "ort-cuda": "conformance.runtimes.ort:OrtCuda",
    "ort-cuda-tf32": "conformance.runtimes.ort:OrtCudaTF32",
    "onnx-reference": "conformance.runtimes.reference:Reference",
    "openvino": "conformance.runtimes.openvino:OpenVINO",
    "openvino-static": "conformance.runtimes.openvino:OpenVINOStatic",
    "tract": "conformance.runtimes.tract:Tract",
    "ort-node": "conformance.runtimes.node:OrtNode",
    "ort-web": "conformance.runtimes.node:OrtWeb",
    "ort-web-chromium": "conformance.runtimes.node:OrtWebChromium",
    "ort-webgpu-chromium": "conformance.runtimes.node:OrtWebGpuChromium",
    "ort-webgpu-jsep-chromium": "conformance.runtimes.node:OrtWebGpuJsepChromium",
    "openvino-c": "conformance.runtimes.c:OpenVINOC",
    "tract-c": "conformance.runtimes.c:TractC",
    "ort-c": "conformance.runtimes.c:OrtC",
})


def runtime_names(text: str) -> list[str]:
    """Parse a comma-separated --runtimes list: registered names or module:Class paths."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ExportError("no runtime given")
    from ..versions import split_name

    for n in names:
        base, _ = split_name(n)
        if base not in REGISTRY and ":" not in base:
            raise ExportError(f"unknown runtime {n!r}; known: {', '.join(REGISTRY)} "
                              "(or module:Class, or ort-cpu@VERSION)")
        if base not in REGISTRY:
            runtime_class(base)   # a module:Class that does not resolve is a usage error
    if len(set(names)) != len(names):
        raise ExportError("a runtime is listed twice")
    return names


def base_name(name: str) -> str:
    """"ort-cpu@1.22.1" → "ort-cpu": what known divergences and tolerances match on."""
    from ..versions import base_of
    return base_of(name)


def runtime_class(name: str) -> type[Runtime]:
    """The adapter class for a registered name or a module:Class path; ExportError if none."""
    target = REGISTRY.get(base_name(name), name)
    module_name, _, cls_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ExportError(f"runtime {name!r}: cannot load {target}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Runtime)):
        raise ExportError(f"runtime {name!r}: {target} is not a conformance Runtime class")
    return cls


def load_runtime(name: str) -> Runtime:
    """Instantiate the adapter for `name` (imports only its own module)."""
    runtime = runtime_class(name)()
    if name not in REGISTRY:
        runtime.name = name
    return runtime


# settings of another runtime (ort-cuda, openvino, ort-webgpu-chromium), never picked by
# "installed": ort-webgpu-jsep-chromium is the default bundle's WebGPU, kept to show its bugs
_SETTINGS = ("ort-cuda-tf32", "openvino-static", "ort-webgpu-jsep-chromium")


def installed() -> list[str]:
    """The registered runtimes usable here (each adapter asked in this process)."""
    found = []
    for name in REGISTRY:
        if name in _SETTINGS:
            continue
        try:
            runtime = load_runtime(name)
            try:
                if runtime.available() is None:
                    found.append(name)
            finally:
                runtime.close()
        except Exception:    # a broken adapter is named explicitly to be judged an error
            pass
    return found
