"""Which construction each runtime computes exactly: the exporter's `target`.

The conformance suite knows what each runtime gets wrong (conformance/divergences.toml); this
table turns that into export choices, each rule naming the divergence it avoids. A target is a
runtime family; `any` applies every rule (a file exact on all of them), `none` applies none
(the graph exactly as the options say: what the support table's first half judges).

Choices, per recurrent module:
    lowering     "rnn" (native RNN / LSTM / GRU nodes) or "scan" (MatMul + Scan)
    zero_state   "absent" (no initial_h: ONNX's zero state) or "explicit" (zeros computed from
                 the input's batch dimension, builder.explicit_zeros)
    flip         the scan lowering's time reversal: "slice" (Slice, step −1), "gather"
                 (Gather over (n−1) − Range(0, n, 1)) or "scan" (the Scan's own
                 scan_input_directions / scan_output_directions: no copy at all)
    batch_layout "transpose" or "attribute" (layout=1)
A target that is one runtime family also takes that family's PREFERENCES: a choice it
computes exactly and runs faster, measured (docs/perf/NOTES.md); a rule still wins over a
preference. An option the caller sets explicitly (lowering=, batch_layout="attribute") wins
over the target's choice; the file's metadata records what was chosen and why.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable

from .errors import ExportError

__all__ = ["Rule", "RULES", "Preference", "PREFERENCES", "FAMILIES", "TARGETS", "Construction",
           "construction", "target_name"]


@dataclass(frozen=True)
class Rule:
    targets: frozenset[str]     # the runtime families it applies to ("any" takes them all)
    when: str                   # relu | sequence_lens | zero_state | computed_lstm_state |
                                # layout1 | flip
    choose: str                 # what is used instead
    avoids: str                 # the divergence (conformance/divergences.toml) it avoids


RULES: tuple[Rule, ...] = (
    Rule(frozenset({"tract"}), "relu", "scan", "tract-activations-ignored"),
    Rule(frozenset({"onnx-reference"}), "relu", "scan", "onnx-reference-relu"),
    Rule(frozenset({"tract"}), "sequence_lens", "scan", "tract-sequence-lens-refused"),
    Rule(frozenset({"openvino"}), "sequence_lens", "scan", "openvino-sequence-lens-ignored"),
    Rule(frozenset({"onnx-reference"}), "sequence_lens", "scan",
         "onnx-reference-sequence-lens-ignored"),
    Rule(frozenset({"tract"}), "zero_state", "explicit", "tract-zero-state-symbolic-batch"),
    Rule(frozenset({"tract"}), "computed_lstm_state", "scan",
         "tract-computed-initial-state-batch"),
    Rule(frozenset({"ort"}), "layout1", "transpose", "onnxruntime-layout1-refused"),
    Rule(frozenset({"openvino"}), "layout1", "transpose", "openvino-layout1-ignored"),
    Rule(frozenset({"tract"}), "layout1", "transpose", "tract-bidirectional-layout1-refused"),
    Rule(frozenset({"tract"}), "flip", "gather", "tract-scan-reverse-slice-refused"),
)


@dataclass(frozen=True)
class Preference:
    targets: frozenset[str]     # the runtime families that take it (never "any" or "none")
    choice: str                 # the Construction field it sets: one of _PREFERABLE
    value: str
    because: str                # the measurement that decided it

    def __post_init__(self) -> None:
        if self.choice not in _PREFERABLE:      # construction() would never apply it
            raise ValueError(f"a preference can set {', '.join(_PREFERABLE)}, not "
                             f"{self.choice!r}")


_PREFERABLE = ("flip",)         # the choices construction() takes from PREFERENCES


PREFERENCES: tuple[Preference, ...] = (
    # onnxruntime and OpenVINO run the reverse direction in the Scan itself: bit-identical
    # results, no time-flip copies (GRU (32, 64, 1, 2, 256, 200), 1 thread, onnxruntime:
    # 67.3 ms with Gather flips, 62.4 with Slice, 60.9 with the Scan's directions; OpenVINO:
    # 0.79-1.06x the Slice flips' time over the bidirectional bench shapes). tract computes
    # them exactly too but no faster (GRU S4 1.14x its Gather flips). onnx.reference does not
    # implement them (onnx-reference-scan-directions-unimplemented): "any" keeps a flip.
    Preference(frozenset({"ort", "openvino"}), "flip", "scan",
               "perf: docs/perf/NOTES.md, scan directions"),
)

# runtime families; conformance runtime names map onto them (target_name)
FAMILIES = ("ort", "openvino", "tract", "onnx-reference")
TARGETS = ("any", "none", *FAMILIES)
_ALIASES = {"ort-cpu": "ort", "ort-cuda": "ort", "ort-cuda-tf32": "ort", "ort-node": "ort",
            "ort-web": "ort", "onnxruntime": "ort", "openvino-static": "openvino"}


def target_name(text: str) -> str:
    """A target, from its name or a conformance runtime's ("ort-cpu" → "ort")."""
    name = _ALIASES.get(text, text)
    if name not in TARGETS:
        raise ExportError(f"unknown target {text!r}: use one of {', '.join(TARGETS)} (or a "
                          "conformance runtime name such as ort-cpu)")
    return name


@dataclass(frozen=True)
class Construction:
    lowering: str = "rnn"
    zero_state: str = "absent"
    flip: str = "slice"
    batch_layout: str = "transpose"
    because: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (choice, divergence)

    def to_json(self) -> str:
        return json.dumps({"lowering": self.lowering, "zero_state": self.zero_state,
                           "flip": self.flip, "batch_layout": self.batch_layout,
                           "because": [list(b) for b in self.because]})


# which choice a rule's condition decides
_DECIDES = {"relu": "lowering", "sequence_lens": "lowering", "computed_lstm_state": "lowering",
            "zero_state": "zero_state", "layout1": "batch_layout"}


def _rules(target: str) -> Iterable[Rule]:
    if target == "none":
        return ()
    return [r for r in RULES if target == "any" or target in r.targets]


def construction(target: str, *, relu: bool, sequence_lens: bool, zero_state: bool,
                 batch_first: bool, lowering: str | None = None,
                 batch_layout: str = "transpose", computed_lstm_state: bool = False
                 ) -> Construction:
    """The construction `target` computes exactly for a recurrent module with these features
    (`computed_lstm_state`: an LSTM whose initial state the module computes in the graph
    rather than takes as an input). `lowering` None lets the target choose; a given lowering
    or batch_layout="attribute" is the caller's explicit wish and wins."""
    target = target_name(target)
    applies = {"relu": relu, "sequence_lens": sequence_lens, "zero_state": zero_state,
               "computed_lstm_state": computed_lstm_state,
               "layout1": batch_first and batch_layout == "attribute"}
    chosen = dict(lowering=lowering or "rnn", zero_state="absent", flip="slice",
                  batch_layout=batch_layout)
    preferred = {p.choice: p for p in PREFERENCES if target in p.targets}
    because: list[tuple[str, str]] = []
    for rule in _rules(target):
        if rule.when == "flip":
            continue                    # decided below, once the lowering is known
        if not applies[rule.when]:
            continue
        key = _DECIDES[rule.when]
        explicit = (key == "lowering" and lowering is not None) or key == "batch_layout"
        if explicit:                    # the caller asked for it: theirs, recorded
            continue
        chosen[key] = rule.choose
        because.append((f"{key}={rule.choose}", rule.avoids))
    if chosen["lowering"] == "scan":
        if "flip" in preferred:
            chosen["flip"] = preferred["flip"].value
            because.append((f"flip={chosen['flip']}", preferred["flip"].because))
        for rule in _rules(target):
            if rule.when == "flip":
                chosen["flip"] = rule.choose
                because.append((f"flip={rule.choose}", rule.avoids))
    return Construction(**chosen, because=tuple(dict.fromkeys(because)))
