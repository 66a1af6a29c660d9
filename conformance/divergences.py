"""Known runtime divergences (divergences.toml): strict expected failures with reasons.

An entry matches a cell by runtime, runtime version and the cell's *features*, which are read
from the model graph and the feeds (conformance/features.py), never from a file or case name:
renaming a file can never turn a fail into an xfail."""
from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Set
from dataclasses import dataclass
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from exporter.errors import ExportError

from .features import FEATURES
from .mistakes import MISTAKES, UNKNOWN

__all__ = ["Divergence", "load_divergences", "match", "STATUS_FOR_KIND", "DIVERGENCES_FILE"]

DIVERGENCES_FILE = Path(__file__).with_name("divergences.toml")
# The cell status each kind of divergence stands for.
STATUS_FOR_KIND = {"wrong-result": "fail", "refusal": "unsupported", "crash": "error",
                   "export-failure": "unexported"}
_FIELDS = ("id", "runtime", "versions", "features", "kind", "summary", "repro", "citation",
           "reviewed")
_OPTIONAL = ("unless", "exporters", "exporter_versions", "exporter_torch", "computes")


def _globs(value: str | list | tuple) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True)
class Divergence:
    """A reviewed entry. `runtime` and `kind` may each be one value or a list. It covers a cell
    whose features include every one of `features` and no complete set of `unless`."""

    id: str
    runtime: str | tuple[str, ...]
    versions: str
    features: frozenset[str]
    kind: str | tuple[str, ...]
    summary: str
    repro: str
    citation: str
    reviewed: str
    unless: tuple[frozenset[str], ...] = ()
    # whose files it is about (conformance/exporters.py): a runtime's divergence shows on any
    # exporter's file with the features; torch.onnx's own entries name theirs
    exporters: tuple[str, ...] = ("*",)
    # what the runtime computes instead (conformance/mistakes.py): a wrong result is xfail
    # only when this mistake explains it exactly; required for wrong-result entries
    computes: str = ""
    # PEP 440 range of the exporter's release (torch-dynamo: onnxscript's) the entry covers
    exporter_versions: str = ""
    # PEP 440 range of the torch release that wrote the file (torch.onnx's; labels.exporter_torch)
    exporter_torch: str = ""

    @property
    def kinds(self) -> tuple[str, ...]:
        return _globs(self.kind)

    @property
    def statuses(self) -> tuple[str, ...]:
        """The cell statuses this entry stands for."""
        return tuple(STATUS_FOR_KIND[k] for k in self.kinds)

    def applies(self, runtime: str, version: str | None, features: Set[str],
                exporter: str = "ours", exporter_version: str | None = None,
                exporter_torch: str | None = None) -> bool:
        base = exporter.partition("@")[0]        # torch-dynamo@onnxscript=0.7.0 is torch-dynamo
        if not any(fnmatch.fnmatchcase(base, pat) for pat in self.exporters):
            return False
        for spec, value in ((self.exporter_versions, exporter_version),
                            (self.exporter_torch, exporter_torch)):
            if spec and not _in_range(value, spec):
                return False
        if not any(fnmatch.fnmatchcase(runtime, pat) for pat in _globs(self.runtime)):
            return False
        if not self.features <= features or any(u <= features for u in self.unless):
            return False
        try:
            return version is not None and Version(version) in SpecifierSet(self.versions)
        except InvalidVersion:
            return False


def _in_range(value: str | None, spec: str) -> bool:
    """Whether a release (None: unknown) lies in a PEP 440 range."""
    try:
        return value is not None and Version(value) in SpecifierSet(spec)
    except InvalidVersion:
        return False


def _entry(raw: dict, where: str) -> Divergence:
    missing = [f for f in _FIELDS if f not in raw]
    extra = sorted(set(raw) - set(_FIELDS) - set(_OPTIONAL))
    if missing or extra:
        raise ExportError(f"{where}: missing {missing} / unknown {extra} fields")
    if not set(_globs(raw["kind"])) <= set(STATUS_FOR_KIND):
        raise ExportError(f"{where}: kind must be among {', '.join(STATUS_FOR_KIND)}")
    try:
        SpecifierSet(raw["versions"])
        SpecifierSet(raw.get("exporter_versions", ""))
        SpecifierSet(raw.get("exporter_torch", ""))
    except InvalidSpecifier:
        raise ExportError(f"{where}: bad version specifier {raw['versions']!r} / "
                          f"{raw.get('exporter_versions')!r} / "
                          f"{raw.get('exporter_torch')!r}") from None
    computes = raw.get("computes", "")
    if "wrong-result" in _globs(raw["kind"]) and computes not in (*MISTAKES, UNKNOWN):
        raise ExportError(f"{where}: a wrong-result entry says what the runtime computes "
                          f"instead: computes = one of {', '.join((*MISTAKES, UNKNOWN))}")
    if computes and "wrong-result" not in _globs(raw["kind"]):
        raise ExportError(f"{where}: computes applies to wrong-result entries only")
    features = raw["features"]
    unless = raw.get("unless", [])
    if not isinstance(features, list) or not features:
        raise ExportError(f"{where}: features must be a non-empty list")
    if not isinstance(unless, list) or not all(isinstance(u, list) and u for u in unless):
        raise ExportError(f"{where}: unless must be a list of non-empty feature lists")
    unknown = sorted(set(features).union(*unless) - FEATURES)
    if unknown:
        raise ExportError(f"{where}: unknown feature(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(FEATURES))}")
    return Divergence(**{**raw, "features": frozenset(features),
                         "runtime": raw["runtime"] if isinstance(raw["runtime"], str)
                         else tuple(raw["runtime"]),
                         "kind": raw["kind"] if isinstance(raw["kind"], str) else tuple(raw["kind"]),
                         "unless": tuple(frozenset(u) for u in unless),
                         "exporters": tuple(_globs(raw.get("exporters", ["*"])))})


def load_divergences(path: Path = DIVERGENCES_FILE) -> list[Divergence]:
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ExportError(f"cannot read known divergences {path}: {exc}") from None
    entries = [_entry(raw, f"{Path(path).name} entry {k + 1}")
               for k, raw in enumerate(data.get("divergence", []))]
    ids = [e.id for e in entries]
    if len(set(ids)) != len(ids):
        raise ExportError(f"{path}: duplicate divergence ids")
    return entries


def match(entries: list[Divergence], runtime: str, version: str | None,
          features: Set[str], exporter: str = "ours", exporter_version: str | None = None,
          exporter_torch: str | None = None) -> Divergence | None:
    """The first entry that applies to this cell, if any (so narrower entries go first)."""
    return next((e for e in entries if e.applies(runtime, version, features, exporter,
                                                 exporter_version, exporter_torch)), None)
