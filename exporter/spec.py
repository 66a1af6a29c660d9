"""Frozen, validated descriptions of an nn.RNN and of the export options."""
from __future__ import annotations

from typing import TYPE_CHECKING

import dataclasses
import os
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

from .cells import CELL_NAMES, CELLS, Cell
from .errors import ExportError

if TYPE_CHECKING:
    from .targets import Construction

__all__ = ["RNNSpec", "ExportOptions", "NONLINEARITIES", "INITIAL_STATES", "BATCH_LAYOUTS",
           "LOWERINGS",
           "DEFAULT_OPSET", "MIN_OPSET"]

NONLINEARITIES = ("tanh", "relu")
INITIAL_STATES = ("input", "zeros")
BATCH_LAYOUTS = ("transpose", "attribute")
LOWERINGS = ("rnn", "scan")
DEFAULT_OPSET = 17
MIN_OPSET = 14  # RNN-14 is the first version with the `layout` attribute we document.


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ExportError(f"{name} must be a positive integer, got {value!r}")
    return value


_LAYER_OVERHEAD = 64 << 10   # bytes per layer and direction beyond its weights


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable on Linux)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


@dataclass(frozen=True)
class RNNSpec:
    """Everything nn.RNN's constructor takes that changes the computation or the graph.

    Field names and defaults are nn.RNN's keyword arguments, so `RNNSpec(**kwargs)`
    and `nn.RNN(**spec.kwargs())` describe the same module.
    """

    input_size: int
    hidden_size: int
    num_layers: int = 1
    nonlinearity: str = "tanh"    # nn.RNN only
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    cell: str = "rnn"             # "rnn" | "lstm" | "gru": nn.RNN, nn.LSTM, nn.GRU
    proj_size: int = 0            # nn.LSTM only: h is projected to proj_size features

    def __post_init__(self) -> None:
        _positive_int("input_size", self.input_size)
        _positive_int("hidden_size", self.hidden_size)
        _positive_int("num_layers", self.num_layers)
        if self.cell not in CELL_NAMES:
            raise ExportError(f"cell must be one of {', '.join(CELL_NAMES)}, got {self.cell!r}")
        if not self.cell_info.has_nonlinearity and self.nonlinearity != "tanh":
            raise ExportError(f"nonlinearity is nn.RNN's argument; nn.{self.cell_info.torch_class} "
                              "has fixed activations")
        if isinstance(self.proj_size, bool) or not isinstance(self.proj_size, int) \
                or self.proj_size < 0:
            raise ExportError(f"proj_size must be a non-negative integer, got {self.proj_size!r}")
        if self.proj_size and not self.cell_info.has_proj:
            raise ExportError("proj_size is nn.LSTM's argument")
        if self.proj_size >= self.hidden_size:
            raise ExportError(f"proj_size must be smaller than hidden_size ({self.hidden_size}), "
                              f"got {self.proj_size}")
        if self.nonlinearity not in NONLINEARITIES:
            raise ExportError(f"nonlinearity must be one of {', '.join(NONLINEARITIES)}, "
                              f"got {self.nonlinearity!r}")
        for flag in ("bias", "batch_first", "bidirectional"):
            if not isinstance(getattr(self, flag), bool):
                raise ExportError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        d = self.dropout
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not math.isfinite(d) \
                or not 0.0 <= d < 1.0:
            raise ExportError(f"dropout must be a number in [0, 1), got {d!r}")

    @property
    def cell_info(self) -> Cell:
        return CELLS[self.cell]

    @property
    def state_size(self) -> int:
        """Features of h (and of each direction's output): proj_size when projected."""
        return self.proj_size or self.hidden_size

    def state_sizes(self) -> dict[str, int]:
        """The last dimension of each recurrent state, keyed as cells.py names them: h has
        state_size features (proj_size when projected), an LSTM's c always hidden_size."""
        sizes = {"h": self.state_size, "c": self.hidden_size}
        return {name: sizes[name] for name in self.cell_info.states}

    @property
    def layer_directions(self) -> int:
        """num_layers · num_directions: the first dimension of h_0 / h_n (and c_0 / c_n)."""
        return self.num_layers * self.num_directions

    def state_shape(self, state: str, batch: Any) -> list[Any]:
        """torch's [layers·dirs, batch, size] of state "h" or "c"."""
        return [self.layer_directions, batch, self.state_sizes()[state]]

    @property
    def seq_axis(self) -> int:
        """Where the sequence is in torch's input and output: 1 with batch_first, else 0."""
        return 1 if self.batch_first else 0

    @property
    def batch_axis(self) -> int:
        """Where the batch is in torch's input and output: 0 with batch_first, else 1."""
        return 0 if self.batch_first else 1

    def leading(self, batch: Any, seq: Any) -> list[Any]:
        """[seq, batch] or, batch_first, [batch, seq]: the two leading dims of input/output."""
        dims = [None, None]
        dims[self.seq_axis], dims[self.batch_axis] = seq, batch
        return dims

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> "RNNSpec":
        """Build from nn.RNN / nn.LSTM / nn.GRU keyword arguments plus `cell`; unknown or
        missing keys are errors."""
        if not isinstance(kwargs, Mapping):
            raise ExportError(f"nn.RNN arguments must be a mapping, got {type(kwargs).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k)[:80] for k in set(kwargs) - names)
        if unknown:
            raise ExportError(f"unknown nn.RNN argument(s): {', '.join(unknown)}")
        missing = [n for n in ("input_size", "hidden_size") if n not in kwargs]
        if missing:
            raise ExportError(f"missing nn.RNN argument(s): {', '.join(missing)}")
        return cls(**dict(kwargs))

    @classmethod
    def from_module(cls, module: Any) -> "RNNSpec":
        """Read the spec off an nn.RNN / nn.LSTM / nn.GRU instance (float32 only)."""
        import torch
        cell = next((c.name for c in CELLS.values()
                     if isinstance(module, getattr(torch.nn, c.torch_class))), None)
        if cell is None:
            raise ExportError(f"expected torch.nn.RNN, LSTM or GRU, got {type(module).__name__}")
        for name, param in module.named_parameters():
            if param.is_meta:
                raise ExportError(f"{name} is on the meta device (no data): load real weights "
                                  "first (e.g. module.to_empty(device='cpu') and a state_dict)")
            if param.dtype != torch.float32:
                raise ExportError(f"only float32 RNNs are supported; {name} is {param.dtype}")
        return cls(input_size=module.input_size, hidden_size=module.hidden_size,
                   num_layers=module.num_layers,
                   nonlinearity=getattr(module, "nonlinearity", "tanh") if cell == "rnn"
                   else "tanh",
                   bias=module.bias, batch_first=module.batch_first,
                   dropout=float(module.dropout), bidirectional=module.bidirectional,
                   cell=cell, proj_size=int(getattr(module, "proj_size", 0) or 0))

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def kwargs(self) -> dict[str, Any]:
        """The torch constructor's keyword arguments (nn.RNN, nn.LSTM or nn.GRU)."""
        out = dataclasses.asdict(self)
        out.pop("cell")
        if not self.cell_info.has_nonlinearity:
            out.pop("nonlinearity")
        if not self.cell_info.has_proj:
            out.pop("proj_size")
        return out

    def config(self) -> dict[str, Any]:
        """kwargs() plus the cell: everything from_kwargs needs."""
        return {"cell": self.cell, **self.kwargs()}

    def to_json(self) -> str:
        return json.dumps(self.config(), sort_keys=True)

    @property
    def id(self) -> str:
        """Deterministic, readable id: test id, report case id and artefact folder name."""
        parts = [f"i{self.input_size}h{self.hidden_size}", f"l{self.num_layers}",
                 self.nonlinearity if self.cell == "rnn" else self.cell,
                 "bi" if self.bidirectional else "uni", "bf" if self.batch_first else "sf"]
        if self.proj_size:
            parts.append(f"proj{self.proj_size}")
        if not self.bias:
            parts.append("nobias")
        if self.dropout:
            parts.append(f"drop{self.dropout:g}")
        return "-".join(parts)

    def parameter_count(self) -> int:
        """Closed form (no per-layer list: a spec may claim a billion layers before the size
        check refuses it)."""
        D, H, S, G = self.num_directions, self.hidden_size, self.state_size, self.cell_info.gates
        extra = (2 * G * H if self.bias else 0) + (S * H if self.proj_size else 0)
        first = G * H * (self.input_size + S) + extra
        later = G * H * (D * S + S) + extra
        return D * (first + (self.num_layers - 1) * later)

    def check_fits(self, copies: int = 3) -> None:
        """Refuse, before allocating, a model whose float32 weights (times the copies an
        export makes: torch's, the packed arrays, the ONNX tensors) exceed the memory
        available here."""
        # plus what each layer costs beyond its floats (graph nodes, names, torch Parameters)
        need = 4 * self.parameter_count() * copies + _LAYER_OVERHEAD * self.num_layers * \
            self.num_directions
        have = available_memory()
        if need > have:
            raise ExportError(f"this nn.RNN has {self.parameter_count():,} parameters; "
                              f"exporting it needs about {need / 2**30:,.1f} GiB and "
                              f"{have / 2**30:,.1f} GiB are available")

    def build_module(self, seed: int | None = None) -> Any:
        """A fresh nn.RNN of this spec in eval mode, seeded if `seed` is given."""
        import warnings

        import torch

        self.check_fits(copies=2)
        if seed is not None and not 0 <= seed < 2 ** 63:
            raise ExportError(f"seed must be in 0 .. 2**63-1, got {seed}")
        gen_state = None
        if seed is not None:
            gen_state = torch.random.get_rng_state()
            torch.manual_seed(seed)
        try:
            with warnings.catch_warnings():  # torch warns that 1-layer dropout does nothing
                warnings.filterwarnings("ignore", message="dropout option adds dropout")
                module = getattr(torch.nn, self.cell_info.torch_class)(**self.kwargs())
        finally:
            if gen_state is not None:
                torch.random.set_rng_state(gen_state)
        return module.eval()


@dataclass(frozen=True)
class ExportOptions:
    """How to write the graph; every front door takes these same options."""

    opset: int = DEFAULT_OPSET
    initial_state: str = "input"
    # batch_first models only: "transpose" = Transposes at the graph's edges around
    # sequence-major RNN nodes (runs everywhere); "attribute" = RNN nodes with layout=1.
    batch_layout: str = "transpose"
    # Adds the int32 graph input sequence_lens [batch]: PackedSequence semantics (see README).
    sequence_lens: bool = False
    # "rnn": native ONNX RNN nodes (the product's contract); "scan": MatMul + Scan (faster on
    # onnxruntime CPU for batched inputs), same graph inputs and outputs; None: the target's
    # choice (native nodes unless the target needs the scan lowering; exporter/targets.py).
    lowering: str | None = None
    # The runtime the file must be exact on (exporter/targets.py): "any" (default: exact on
    # every runtime the suite knows), "none" (exactly as the other options say), or a family
    # ("ort", "openvino", "tract", "onnx-reference").
    target: str = "any"
    # Weights that are NaN or ±Inf are refused (a diverged training run exports silently
    # otherwise); True writes them anyway.
    allow_nonfinite: bool = False
    # True: weights in "<file>.data" beside the model (ONNX external data); None: only when
    # they would not fit the 2 GiB protobuf limit; False: never.
    external_data: bool | None = None
    # Run the written graph on onnxruntime at two shapes other than the example and compare
    # with torch before writing it (exporter/verify.py); False skips that.
    verify: bool = True

    def __post_init__(self) -> None:
        from .opset import max_supported_opset

        if not isinstance(self.verify, bool):
            raise ExportError(f"verify must be true or false, got {self.verify!r}")
        if not isinstance(self.allow_nonfinite, bool):
            raise ExportError(f"allow_nonfinite must be true or false, got {self.allow_nonfinite!r}")
        if self.external_data not in (True, False, None):
            raise ExportError(f"external_data must be true, false or None, got {self.external_data!r}")
        if isinstance(self.opset, bool) or not isinstance(self.opset, int):
            raise ExportError(f"opset must be an integer, got {self.opset!r}")
        top = max_supported_opset()
        if not MIN_OPSET <= self.opset <= top:
            raise ExportError(f"unsupported opset {self.opset}: this installation supports "
                              f"{MIN_OPSET} to {top}")
        if self.initial_state not in INITIAL_STATES:
            raise ExportError(f"initial_state must be one of {', '.join(INITIAL_STATES)}, "
                              f"got {self.initial_state!r}")
        if not isinstance(self.sequence_lens, bool):
            raise ExportError(f"sequence_lens must be true or false, got {self.sequence_lens!r}")
        if self.batch_layout not in BATCH_LAYOUTS:
            raise ExportError(f"batch_layout must be one of {', '.join(BATCH_LAYOUTS)}, "
                              f"got {self.batch_layout!r}")
        if self.lowering is not None and self.lowering not in LOWERINGS:
            raise ExportError(f"lowering must be one of {', '.join(LOWERINGS)}, "
                              f"got {self.lowering!r}")
        from .targets import target_name
        if not isinstance(self.target, str):
            raise ExportError(f"target must be a string, got {self.target!r}")
        object.__setattr__(self, "target", target_name(self.target))
        if self.lowering == "scan" and self.batch_layout == "attribute":
            raise ExportError("batch_layout='attribute' is the RNN op's layout=1; the scan "
                              "lowering has no RNN op (use batch_layout='transpose')")

    @property
    def has_h0(self) -> bool:
        return self.initial_state == "input"

    def construction(self, spec: "RNNSpec", has_state: bool | None = None,
                     computed_state: bool = False) -> "Construction":
        """How the target builds `spec`'s module (`has_state`: whether the module is given an
        initial state, default this export's initial_state; `computed_state`: that state is
        computed in the graph, not a graph input)."""
        from .targets import construction

        if spec.proj_size and self.lowering == "rnn":
            raise ExportError("the ONNX LSTM op has no projection (proj_size); export with "
                              "lowering=\"scan\" (--lowering scan), which computes it exactly")
        return construction(
            self.target, relu=spec.cell == "rnn" and spec.nonlinearity == "relu",
            sequence_lens=self.sequence_lens,
            zero_state=not (self.has_h0 if has_state is None else has_state),
            batch_first=spec.batch_first,
            lowering=self.lowering or ("scan" if spec.proj_size else None),
            batch_layout=self.batch_layout,
            computed_lstm_state=computed_state and spec.cell_info.has_cell_state)
