"""Runtime versions as a matrix axis: `--runtimes ort-cpu@1.22.1`.

A versioned runtime is installed once, with `pip install --no-deps --target`, into a cache
folder outside the repository, and its worker process puts that folder first on sys.path
before importing the runtime; everything else (numpy, onnx, protobuf) comes from the current
environment. Cells record the version actually imported.

Cache: $TORCH_RNN_ONNX_CACHE, else $XDG_CACHE_HOME/torch-rnn-onnx, else
~/.cache/torch-rnn-onnx; one folder per package and version under runtimes/.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from packaging.version import InvalidVersion, Version

from exporter.errors import ExportError

__all__ = ["VERSIONED", "split_name", "cache_root", "site_for", "ensure_installed"]

# runtime → the pip package its adapter imports (the adapters that can take @VERSION)
VERSIONED = {"ort-cpu": "onnxruntime"}


def split_name(name: str) -> tuple[str, str | None]:
    """"ort-cpu@1.22.1" → ("ort-cpu", "1.22.1"); a plain name → (name, None)."""
    base, sep, version = name.partition("@")
    if not sep:
        return name, None
    if base not in VERSIONED:
        raise ExportError(f"{base} takes no @VERSION; versioned runtimes: {', '.join(VERSIONED)}")
    try:
        Version(version)
    except InvalidVersion:
        raise ExportError(f"{name}: {version!r} is not a version") from None
    return base, version


def cache_root() -> Path:
    if os.environ.get("TORCH_RNN_ONNX_CACHE"):
        return Path(os.environ["TORCH_RNN_ONNX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "torch-rnn-onnx"


def site_for(name: str) -> Path | None:
    """The folder a versioned runtime's worker imports from (None for a plain name)."""
    base, version = split_name(name)
    if version is None:
        return None
    return cache_root() / "runtimes" / f"{VERSIONED[base]}-{version}"


def ensure_installed(name: str, log=print) -> None:
    """Install a versioned runtime into the cache once (atomically: a folder that exists is
    complete)."""
    site = site_for(name)
    if site is None or site.is_dir():
        return
    base, version = split_name(name)
    package = f"{VERSIONED[base]}=={version}"
    site.parent.mkdir(parents=True, exist_ok=True)
    tmp = site.with_name(f".{site.name}.{os.getpid()}.tmp")
    log(f"installing {package} into {site} (once)")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                        "--only-binary=:all:", "--target", str(tmp), package],
                       capture_output=True, text=True)
    if r.returncode != 0:
        lines = [ln for ln in (r.stderr or r.stdout).splitlines() if ln.strip()]
        raise ExportError(f"cannot install {package}: {lines[-1] if lines else 'pip failed'}")
    try:
        os.replace(tmp, site)
    except OSError:          # another run installed it meanwhile
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
