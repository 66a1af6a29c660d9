"""The C host: runtimes' C APIs driven by one C program of ours (conformance/c/).

`openvino-c` (OpenVINO's C API, libopenvino_c and its headers from the openvino wheel),
`tract-c` (tract's C interface: the tract wheel's shared library is that interface) and
`ort-c` (onnxruntime's C API; the wheel ships libonnxruntime.so but no header, so this one
needs $ORT_C_INCLUDE, a folder holding onnxruntime_c_api.h of the installed release).

The program is compiled with the system C compiler ($CC, else `cc`) on first use, into the
versions cache (conformance/versions.py: cache_root()/c-host/), one binary per backend and
per hash of its sources, flags and compiler; it then serves load/run requests over a pipe
(the protocol is at the top of conformance/c/host.c). Tensors cross it as raw little-endian
bytes, so a cell sees exactly what the runtime's C API returned.
"""
from __future__ import annotations

import glob
import hashlib
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .base import HELPER_DTYPES, HelperCrashed, Runtime, stop_helper

__all__ = ["OpenVINOC", "TractC", "OrtC", "SOURCES", "build"]

SOURCES = Path(__file__).resolve().parents[1] / "c"


def _package_dir(name: str) -> Path | None:
    """An installed package's folder, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _one(pattern: str) -> Path | None:
    found = sorted(glob.glob(pattern))
    return Path(found[0]) if found else None


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def build(backend: str, flags: list[str], log=None) -> Path:
    """The host binary for `backend` with these compile/link flags, built once into the cache
    (a unique temp file renamed into place, so concurrent workers never see half a binary)."""
    from ..versions import cache_root

    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler: install one (Debian: apt-get install gcc) or set $CC")
    sources = [SOURCES / "host.c", SOURCES / f"{backend}.c"]
    digest = hashlib.sha256()
    for part in [SOURCES / "host.h", *sources]:
        digest.update(part.read_bytes())
    compiler_id = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    digest.update("\0".join([cc, compiler_id, *flags]).encode())
    target = cache_root() / "c-host" / f"{backend}-{digest.hexdigest()[:16]}"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    cmd = [cc, "-O2", "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Wall", *map(str, sources),
           f"-I{SOURCES}", *flags, "-o", str(tmp)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"compiling the C host failed: {' '.join(cmd)}: "
                           + " ".join(done.stderr.split())[:800])
    os.replace(tmp, target)
    return target


class _CHost(Runtime):
    """One host process per adapter; the backend and its flags say which C API it drives."""

    backend = "?"
    device = "cpu"

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._version: str | None = None

    def flags(self) -> list[str] | str:
        """Compile and link flags for the backend, or why it cannot be built here."""
        raise NotImplementedError

    def available(self) -> str | None:
        if _compiler() is None:
            return "no C compiler found: install one (Debian: apt-get install gcc) or set $CC"
        flags = self.flags()
        if isinstance(flags, str):
            return flags
        try:
            self._binary = build(self.backend, flags)
            self._version = self._hello()
        except (RuntimeError, OSError) as exc:
            return f"the C host for {self.backend} does not start: {exc}"
        return None

    def _start(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen([str(self._binary)], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        return self._proc

    def _request(self, head: str, payload: bytes = b"") -> str:
        proc = self._start()
        try:
            proc.stdin.write(head.encode() + payload)
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = proc.stdout.readline().decode(errors="replace").rstrip("\n")
        if not line:
            code = proc.wait(5)
            raise HelperCrashed(f"the C host exited (code {code})")
        status, _, rest = line.partition(" ")
        if status != "ok":
            raise RuntimeError(rest or line)
        return rest

    def _hello(self) -> str:
        backend, _, version = self._request("hello\n").partition(" ")
        return self.normalise(version)

    def normalise(self, version: str) -> str:
        return version

    def version(self) -> str:
        return self._version or self._hello()

    def load(self, model_path: str) -> Any:
        import onnx

        # by the graph's own output names, in graph order (a runtime may know an output under
        # several names, or by position only)
        outputs = [o.name for o in onnx.load(model_path, load_external_data=False).graph.output]
        lines = [f"load {len(outputs)}", str(Path(model_path).resolve()), *outputs]
        if any("\n" in x for x in lines):
            raise RuntimeError("a model path or output name holds a newline")
        self._request("\n".join(lines) + "\n")
        return model_path

    def run(self, session: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        parts = [f"run {len(feeds)}\n".encode()]
        for name, value in feeds.items():
            value = np.ascontiguousarray(value)
            dtype = value.dtype.name
            if dtype not in HELPER_DTYPES:
                raise RuntimeError(f"input {name}: dtype {dtype} not supported by the C host")
            dims = " ".join(str(d) for d in value.shape)
            parts.append(f"{dtype} {value.ndim}{' ' + dims if dims else ''} {name}\n".encode())
            parts.append(value.astype(value.dtype.newbyteorder("<"), copy=False).tobytes())
        count = int(self._request(parts[0].decode(), b"".join(parts[1:])))
        return dict(self._read_tensor() for _ in range(count))

    def _read_tensor(self) -> tuple[str, np.ndarray]:
        head = self._proc.stdout.readline().decode().rstrip("\n").split(" ")
        dtype, rank = head[0], int(head[1])
        dims = [int(d) for d in head[2:2 + rank]]
        name = " ".join(head[2 + rank:])
        count = int(np.prod(dims, dtype=np.int64))
        raw = self._proc.stdout.read(count * np.dtype(HELPER_DTYPES[dtype]).itemsize)
        return name, np.frombuffer(raw, np.dtype(HELPER_DTYPES[dtype]).newbyteorder("<")) \
            .astype(HELPER_DTYPES[dtype]).reshape(dims)

    def provider(self, session: Any) -> str:
        return f"{self.backend} C API ({self.device})"

    def close(self) -> None:
        proc, self._proc = self._proc, None
        stop_helper(proc)


class OpenVINOC(_CHost):
    """OpenVINO's C API, CPU plugin, f32 asked for and checked (as the Python adapter)."""

    name = "openvino-c"
    backend = "openvino"

    def flags(self) -> list[str] | str:
        ov = _package_dir("openvino")
        if ov is None:
            return "openvino is not installed: pip install -e '.[openvino]' (or: pip install openvino)"
        lib = _one(str(ov / "libs" / "libopenvino_c.so*"))
        if lib is None or not (ov / "include" / "openvino" / "c" / "openvino.h").is_file():
            return f"the openvino wheel at {ov} has no C API (libs/libopenvino_c.so, include/openvino/c)"
        return [f"-I{ov / 'include'}", f"-L{lib.parent}", f"-l:{lib.name}",
                f"-Wl,-rpath,{lib.parent}"]

    def normalise(self, version: str) -> str:
        return version.split("-")[0]          # "2026.4.1-22982-…" → "2026.4.1", as openvino.py

    def options(self) -> dict[str, Any]:
        return {"inference_precision": "f32"}


class TractC(_CHost):
    name = "tract-c"
    backend = "tract"

    def flags(self) -> list[str] | str:
        pkg = _package_dir("tract")
        lib = _one(str(pkg / "tract*.so")) if pkg else None
        if lib is None:
            return "tract is not installed: pip install -e '.[tract]' (or: pip install tract)"
        return [f"-L{lib.parent}", f"-l:{lib.name}", f"-Wl,-rpath,{lib.parent}"]


class OrtC(_CHost):
    """onnxruntime's C API with the CPU provider (the wheel's libonnxruntime.so)."""

    name = "ort-c"
    backend = "onnxruntime"

    def flags(self) -> list[str] | str:
        pkg = _package_dir("onnxruntime")
        lib = _one(str(pkg / "capi" / "libonnxruntime.so*")) if pkg else None
        if lib is None:
            return "onnxruntime is not installed (its wheel ships libonnxruntime.so)"
        include = os.environ.get("ORT_C_INCLUDE")
        if not include or not (Path(include) / "onnxruntime_c_api.h").is_file():
            return ("onnxruntime's wheel ships no C header: set ORT_C_INCLUDE to a folder "
                    "holding onnxruntime_c_api.h of the installed release (from its "
                    "GitHub release archive, include/)")
        # the library's soname (libonnxruntime.so.1) is not in the wheel, only the versioned
        # file: a link of that name in the cache is what the loader finds
        from ..versions import cache_root

        tag = hashlib.sha256(str(lib.resolve()).encode()).hexdigest()[:12]
        links = cache_root() / "c-host" / f"onnxruntime-lib-{tag}"
        links.mkdir(parents=True, exist_ok=True)
        soname = links / "libonnxruntime.so.1"
        if not soname.exists():
            tmp = links / f".{os.getpid()}.tmp"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(lib)
            os.replace(tmp, soname)
        return [f"-I{include}", f"-L{links}", "-l:libonnxruntime.so.1", f"-Wl,-rpath,{links}"]
