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

__all__ = ["VERSIONED", "pinned", "base_of", "split_name", "cache_root", "site_for",
           "ensure_installed", "version_problem", "NPM_PACKAGES", "EXPORTER_PACKAGES", "split_exporter",
           "exporter_sites", "ensure_exporter", "same_release"]

# runtime → the package its adapter imports (the adapters that can take @VERSION): from PyPI,
# or from npm for the Node.js harness (NPM_PACKAGES)
VERSIONED = {"ort-cpu": "onnxruntime", "ort-node": "onnxruntime-node"}
NPM_PACKAGES = frozenset({"onnxruntime-node"})


def pinned(name: str) -> bool:
    """Whether a runtime name asks for a pinned release ("ort-cpu@1.22.1"); a module:Class
    path never does, whatever characters it holds."""
    return "@" in name and ":" not in name


def base_of(name: str) -> str:
    """"ort-cpu@1.22.1" → "ort-cpu": what known divergences and tolerances match on."""
    return name.partition("@")[0] if pinned(name) else name


def split_name(name: str) -> tuple[str, str | None]:
    """"ort-cpu@1.22.1" → ("ort-cpu", "1.22.1"); a plain name → (name, None)."""
    if not pinned(name):
        return name, None
    base, _, version = name.partition("@")
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


def _installed_here(site: Path, package: str, version: str) -> bool:
    """Whether `site` holds `package` at `version` (its .dist-info folder, or for an npm
    package its node_modules/<package>/package.json, says so)."""
    if package in NPM_PACKAGES:
        import json
        try:
            meta = json.loads((site / "node_modules" / package / "package.json").read_text())
            return Version(meta["version"]) == Version(version)
        except (OSError, ValueError, KeyError, InvalidVersion):
            return False
    for info in site.glob(f"{package}-*.dist-info"):
        if same_release(info.name[len(package) + 1:-len(".dist-info")], version):
            return True
    return False


def same_release(found: str | None, wanted: str) -> bool:
    """Whether `found` is the release asked for as `wanted`, as pip's == reads it: "2.13.0"
    matches torch's "2.13.0+cpu" (no local label asked for), "2.13.0+cpu" only itself."""
    try:
        f, w = Version(found or ""), Version(wanted)
    except InvalidVersion:
        return False
    return f == w if w.local else f.public == w.public


def version_problem(name: str, imported: str | None) -> str | None:
    """Why a runtime started as `name` is not the release it claims, if it is not: a pinned
    `ort-cpu@1.21.0` must import onnxruntime 1.21.0 (an incomplete cache folder, or a run in
    this process, would import the installed one instead)."""
    if not pinned(name):
        return None
    base, version = split_name(name)
    try:
        same = imported is not None and Version(imported) == Version(version)
    except InvalidVersion:
        same = False
    if same:
        return None
    return (f"{name} imported {VERSIONED[base]} {imported}, not {version}: a pinned version runs "
            f"only in an isolated worker from its cache folder {site_for(name)}; if that folder "
            "is incomplete, remove it to reinstall")


def ensure_installed(name: str, log=print) -> None:
    """Install a versioned runtime into the cache once (atomically: a folder that exists is
    complete — unless someone emptied it, which is refused here and again by the worker's
    version check)."""
    site = site_for(name)
    if site is None:
        return
    base, version = split_name(name)
    if site.is_dir():
        if not _installed_here(site, VERSIONED[base], version):
            raise ExportError(f"{name}: the cache folder {site} is incomplete (no "
                              f"{VERSIONED[base]} {version} .dist-info in it): remove it to "
                              "reinstall")
        return
    if VERSIONED[base] in NPM_PACKAGES:
        _install_npm(VERSIONED[base], version, site, log)
    else:
        _install(VERSIONED[base], version, site, log)


def _install_npm(package: str, version: str, site: Path, log=print) -> None:
    """npm-install `package@version` into `site/node_modules` atomically, for the Node.js
    harness (onnxruntime-node's CPU build ships in the package; its CUDA download skipped)."""
    import shutil

    spec = f"{package}@{version}"
    npm = shutil.which("npm")
    if npm is None:
        raise ExportError(f"cannot install {spec}: npm not found on PATH (Node.js >= 18)")
    site.parent.mkdir(parents=True, exist_ok=True)
    tmp = site.with_name(f".{site.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    (tmp / "package.json").write_text('{"private": true}\n')
    log(f"installing {spec} into {site} (once)")
    r = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-save", spec],
                       cwd=tmp, capture_output=True, text=True,
                       env={**os.environ, "ONNXRUNTIME_NODE_INSTALL_CUDA": "skip"})
    if r.returncode != 0 or not _installed_here(tmp, package, version):
        shutil.rmtree(tmp, ignore_errors=True)
        lines = [ln for ln in (r.stderr or r.stdout).splitlines()
                 if ln.strip() and "npm warn" not in ln.lower()]
        raise ExportError(f"cannot install {spec}: {lines[-1] if lines else 'npm failed'}")
    try:
        os.replace(tmp, site)
    except OSError:          # another run installed it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)


def _install(package: str, version: str, site: Path, log=print, deps: bool = False,
             keep: tuple[str, ...] | None = None) -> None:
    """pip-install `package==version` into `site` atomically (a temp folder renamed into
    place); `deps`: with its dependencies. `keep`: then keep only these distributions (their
    import folders and .dist-info): what must match the release, never the environment's
    numpy or onnx."""
    spec = f"{package}=={version}"
    site.parent.mkdir(parents=True, exist_ok=True)
    tmp = site.with_name(f".{site.name}.{os.getpid()}.tmp")
    log(f"installing {spec} into {site} (once)")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                        *([] if deps else ["--no-deps"]),
                        "--only-binary=:all:", "--target", str(tmp), spec],
                       capture_output=True, text=True)
    if r.returncode != 0:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
        lines = [ln for ln in (r.stderr or r.stdout).splitlines()
                 if ln.strip() and not ln.startswith("WARNING")]
        raise ExportError(f"cannot install {spec}: {lines[-1] if lines else 'pip failed'}")
    if keep is not None:
        import shutil
        for entry in tmp.iterdir():
            stem = entry.name.split("-")[0].lower().replace(".", "_")
            if stem not in keep:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    try:
        os.replace(tmp, site)
    except OSError:          # another run installed it meanwhile
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


# ---- exporters at pinned releases: `torch-dynamo@onnxscript=0.7.0`, `torch-legacy@torch=2.14.1`,
# `torch-dynamo@torch=2.10.0@onnxscript=0.5.7` (torch.onnx of torch ≥ 2.11 imports no onnxscript
# before 0.6; torch 2.10's imports them all)

# the torch.onnx exporter → the packages whose release can be pinned for it
EXPORTER_PACKAGES = {"torch-dynamo": ("onnxscript", "torch"), "torch-legacy": ("torch",)}
# what a pinned package is installed with: onnxscript with onnx_ir (the IR it is built on, at
# the release it asks for), nothing else; torch with all it depends on: PyPI's Linux wheel is
# a CUDA build whose torch._C links cuDNN and the other nvidia-* libraries even on the CPU
# (5.3-6.9 GB per release measured; the CPU wheel on a local index is about 1 GB)
_INSTALL = {"onnxscript": {"deps": True, "keep": ("onnxscript", "onnx_ir")},
            "torch": {"deps": True, "keep": None}}


def split_exporter(name: str) -> tuple[str, dict[str, str]]:
    """"torch-dynamo@onnxscript=0.7.0" → ("torch-dynamo", {"onnxscript": "0.7.0"}),
    "torch-dynamo@torch=2.10.0@onnxscript=0.5.7" → both pinned; a plain name → (name, {}).
    Bad strings are one-line errors."""
    base, *pins = name.split("@")
    allowed = ", ".join(f"{b}@{p}=VERSION" for b, ps in EXPORTER_PACKAGES.items() for p in ps)
    found: dict[str, str] = {}
    for pin in pins:
        package, eq, version = pin.partition("=")
        if (base not in EXPORTER_PACKAGES or package not in EXPORTER_PACKAGES[base] or not eq
                or package in found):
            raise ExportError(f"{name}: a pinned exporter is written {allowed} (each package "
                              "once, pins joined by @)")
        try:
            Version(version)
        except InvalidVersion:
            raise ExportError(f"{name}: {version!r} is not a version") from None
        found[package] = version
    return base, found


def exporter_sites(name: str) -> dict[str, Path]:
    """package → the cache folder a pinned exporter's export process imports it from (first on
    its path); empty for a plain name."""
    return {package: cache_root() / "exporters" / f"{package}-{version}"
            for package, version in split_exporter(name)[1].items()}


def ensure_exporter(name: str, log=print) -> None:
    """Install a pinned exporter's packages once into the cache (_INSTALL: what comes with
    each)."""
    pins = split_exporter(name)[1]
    for package, site in exporter_sites(name).items():
        version = pins[package]
        if site.is_dir():
            if not _installed_here(site, package, version):
                raise ExportError(f"{name}: the cache folder {site} is incomplete (no {package} "
                                  f"{version} .dist-info in it): remove it to reinstall")
            continue
        _install(package, version, site, log, **_INSTALL[package])
