"""Conformance cases as data: matrices from TOML, deterministic ids, seeds, shards."""
from __future__ import annotations

import fnmatch
import itertools
import tomllib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from exporter.errors import ExportError
from exporter.spec import RNNSpec
from models.presets import preset

from .truth import LENGTH_PATTERNS

__all__ = ["ModelCase", "CompositeCase", "InputCase", "Case", "load_matrix", "select", "shard", "MATRICES_FILE",
           "with_targets",
           "MATRIX_NAMES", "stable_seed"]

MATRICES_FILE = Path(__file__).with_name("matrices.toml")
MATRIX_NAMES = ("smoke", "default", "full")
_SPEC_FIELDS = ("input_size", "hidden_size", "num_layers", "nonlinearity", "bias",
                "batch_first", "dropout", "bidirectional", "cell", "proj_size")
_BLOCK_KEYS = {"presets", "composites", "initial_state", "opset", "batch_layout", "sequence_lens",
               "lengths", "lowering", "inputs", *_SPEC_FIELDS}


def stable_seed(text: str) -> int:
    """A seed that depends only on `text` (never on Python's hash randomisation)."""
    return zlib.crc32(text.encode())


class _Seeded:
    """Seeds derive from the id alone, so a case's weights and inputs never depend on the
    matrix it sits in or the order it runs in. Subclasses define `id`."""

    @property
    def seed(self) -> int:
        return stable_seed(self.id)


@dataclass(frozen=True)
class ModelCase(_Seeded):
    """One exported model: an nn.RNN config plus the export options."""

    spec: RNNSpec
    initial_state: str = "input"
    opset: int = 17
    batch_layout: str = "transpose"
    sequence_lens: bool = False
    lowering: str | None = "rnn"        # None: the target's choice
    # the exporter's target (exporter/targets.py): "none" writes exactly these options, the
    # files the first support table judges; a runtime family or "any" lets the target choose
    target: str = "none"

    @property
    def id(self) -> str:
        h0 = "h0in" if self.initial_state == "input" else "h0zero"
        layout = "-layout1" if self.batch_layout == "attribute" else ""
        lens = "-seqlens" if self.sequence_lens else ""
        lowering = "" if self.lowering in ("rnn", None) else f"-{self.lowering}"
        suffix = "" if self.opset == 17 else f"-op{self.opset}"
        target = "" if self.target == "none" else f"-for-{self.target}"
        return f"{self.spec.id}-{h0}{layout}{lens}{lowering}{suffix}{target}"

    def export_options(self) -> dict[str, Any]:
        return {"opset": self.opset, "initial_state": self.initial_state,
                "batch_layout": self.batch_layout, "sequence_lens": self.sequence_lens,
                "lowering": self.lowering, "target": self.target}


@dataclass(frozen=True)
class CompositeCase(_Seeded):
    """A whole model from models/composite.py (torch module as ground truth)."""

    name: str
    target: str = "none"

    @property
    def id(self) -> str:
        return f"composite-{self.name}" + ("" if self.target == "none" else f"-for-{self.target}")


@dataclass(frozen=True)
class InputCase:
    batch: int
    seq: int
    lengths: str | None = None   # a truth.LENGTH_PATTERNS name, for sequence_lens models

    @property
    def id(self) -> str:
        lens = f"-lens_{self.lengths}" if self.lengths else ""
        return f"b{self.batch}s{self.seq}{lens}"


@dataclass(frozen=True)
class Case(_Seeded):
    model: ModelCase | CompositeCase
    inputs: InputCase

    @property
    def id(self) -> str:
        return f"{self.model.id}--{self.inputs.id}"


def _specs(block: dict[str, Any]) -> list[RNNSpec]:
    if "presets" in block:
        return [preset(name) for name in block["presets"]]
    axes = {k: block.get(k, [v]) for k, v in
            {"input_size": 10, "hidden_size": 20, **{f: None for f in _SPEC_FIELDS[2:]}}.items()}
    axes = {k: v for k, v in axes.items() if v != [None]}
    names = list(axes)
    combos = [dict(zip(names, values)) for values in itertools.product(*axes.values())]
    # One block may cross cells: nonlinearity is nn.RNN's axis, proj_size nn.LSTM's.
    return [RNNSpec.from_kwargs(c) for c in combos
            if (c.get("cell", "rnn") == "rnn" or c.get("nonlinearity", "tanh") == "tanh")
            and (c.get("cell", "rnn") == "lstm" or not c.get("proj_size"))]


def _block_cases(block: dict[str, Any], where: str) -> list[Case]:
    unknown = set(block) - _BLOCK_KEYS
    if unknown:
        raise ExportError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    if "inputs" not in block:
        raise ExportError(f"{where}: a block needs 'inputs' ([[batch, seq], ...])")
    try:
        inputs = [InputCase(int(b), int(s)) for b, s in block["inputs"]]
    except (TypeError, ValueError):
        raise ExportError(f"{where}: inputs must be [[batch, seq], ...]") from None
    if any(i.batch < 1 or i.seq < 1 for i in inputs):
        raise ExportError(f"{where}: batch and seq must be ≥ 1")
    if "composites" in block:
        from models.composite import COMPOSITES
        unknown = set(block["composites"]) - set(COMPOSITES)
        if unknown or set(block) - {"composites", "inputs"}:
            raise ExportError(f"{where}: composites take only 'inputs'; known composites: "
                              f"{', '.join(COMPOSITES)}")
        return [Case(CompositeCase(n), i) for n in block["composites"] for i in inputs]
    models = {ModelCase(spec, init, opset, layout if spec.batch_first else "transpose", lens,
                        lowering)
              for spec in _specs(block)
              for init in block.get("initial_state", ["input"])
              for opset in block.get("opset", [17])
              for layout in block.get("batch_layout", ["transpose"])
              for lens in block.get("sequence_lens", [False])
              for lowering in block.get("lowering", ["rnn"])
              if not (lowering == "scan" and layout == "attribute")
              and not (spec.proj_size and lowering != "scan")}
    # batch_layout only changes batch_first models (the set drops the duplicates that makes),
    # and is a property of the RNN op: the scan lowering has no layout=1 variant; proj_size
    # has no ONNX LSTM attribute: the scan lowering alone computes it
    patterns = block.get("lengths", ["unsorted"])
    unknown = set(patterns) - set(LENGTH_PATTERNS)
    if unknown:
        raise ExportError(f"{where}: unknown lengths pattern(s) {', '.join(sorted(unknown))}")
    return [Case(m, InputCase(i.batch, i.seq, p) if m.sequence_lens else i)
            for m in models for i in inputs
            for p in (patterns if m.sequence_lens else [None])]


def with_targets(cases: list[Case], targets: list[str]) -> list[Case]:
    """Every case once per exporter target: "none" keeps the case as written; another target
    lets the exporter choose the construction (a native-node case's lowering becomes the
    target's choice; an explicit scan case stays scan; a layout=1 case, an explicit
    deployment choice, is left out)."""
    from dataclasses import replace

    out = []
    for target in targets:
        for case in cases:
            m = case.model
            if target == "none":
                out.append(case)
            elif isinstance(m, CompositeCase):
                out.append(replace(case, model=replace(m, target=target)))
            elif m.batch_layout != "attribute":
                out.append(replace(case, model=replace(
                    m, target=target, lowering=None if m.lowering == "rnn" else m.lowering)))
    return out


def load_matrix(name_or_file: str) -> list[Case]:
    """Cases of a named matrix in matrices.toml, or of the first matrix in a TOML file."""
    path, name = MATRICES_FILE, name_or_file
    if name_or_file not in MATRIX_NAMES:
        path = Path(name_or_file)
        if not path.is_file():
            raise ExportError(f"unknown matrix {name_or_file!r}: use {', '.join(MATRIX_NAMES)} "
                              "or a TOML file")
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ExportError(f"cannot read matrix file {path}: {exc}") from None
    if path != MATRICES_FILE:
        if len(data) != 1:
            raise ExportError(f"{path}: expected exactly one matrix (one [[name]] list of blocks)")
        name = next(iter(data))
    blocks = data.get(name)
    if not isinstance(blocks, list) or not blocks:
        raise ExportError(f"{path}: matrix {name!r} has no blocks")
    cases: dict[str, Case] = {}
    for k, block in enumerate(blocks):
        for case in _block_cases(block, f"{path.name}: {name} block {k + 1}"):
            cases.setdefault(case.id, case)       # blocks may overlap; a case runs once
    return sorted(cases.values(), key=lambda c: c.id)


def select(cases: Iterable[Case], pattern: str | None) -> list[Case]:
    """Keep cases whose id matches a glob (with * ? [) or contains the pattern."""
    if not pattern:
        return list(cases)
    if any(ch in pattern for ch in "*?["):
        return [c for c in cases if fnmatch.fnmatchcase(c.id, pattern)]
    return [c for c in cases if pattern in c.id]


def shard(cases: list[Case], index: int, count: int) -> list[Case]:
    """Shard `index` of `count` (1-based): round robin over the id-sorted cases."""
    if count < 1 or not 1 <= index <= count:
        raise ExportError(f"shard must be i/N with 1 ≤ i ≤ N, got {index}/{count}")
    ordered = sorted(cases, key=lambda c: c.id)
    return ordered[index - 1::count]
