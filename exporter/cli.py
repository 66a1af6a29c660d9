"""Command-line front door: `python -m exporter export`.

The nn.RNN flags and the spec-building live here as functions so that
`python -m conformance check` takes exactly the same flags.
"""
from __future__ import annotations

import argparse
import os
import json
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from .errors import ExportError, Terminated, terminate_on_sigterm
from .cells import CELL_NAMES
from .spec import BATCH_LAYOUTS, DEFAULT_OPSET, INITIAL_STATES, NONLINEARITIES, RNNSpec

__all__ = ["OneLineParser", "add_rnn_arguments", "add_export_arguments", "resolve_rnn", "main",
           "run_cli", "load_module", "json_object", "example_tensor"]

# The seed model of this project's origin: nn.RNN(10, 20, 1) fed (5, 1, 10) and h0 (1, 1, 20).
SEED_DEFAULTS = {"input_size": 10, "hidden_size": 20}


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit 2), like every other bad input."""

    def error(self, message: str) -> "NoReturn":
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_rnn_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("nn.RNN / nn.LSTM / nn.GRU configuration (default: the seed model "
                             "nn.RNN(10, 20, 1))")
    g.add_argument("--cell", choices=CELL_NAMES,
                   help="rnn (nn.RNN, default), lstm (nn.LSTM) or gru (nn.GRU); a checkpoint "
                        "tells it by its weights' shapes")
    g.add_argument("--proj-size", type=int,
                   help="nn.LSTM's proj_size (needs --lowering scan: the ONNX LSTM op has no "
                        "projection)")
    g.add_argument("--input-size", type=int, help="features per time step (default 10)")
    g.add_argument("--hidden-size", type=int, help="hidden units per direction (default 20)")
    g.add_argument("--num-layers", type=int, help="stacked layers (default 1)")
    g.add_argument("--nonlinearity", choices=NONLINEARITIES, help="nn.RNN's: default tanh")
    g.add_argument("--no-bias", dest="bias", action="store_const", const=False,
                   help="the RNN has no bias terms")
    g.add_argument("--batch-first", action="store_const", const=True,
                   help="input/output are [batch, seq, feature]")
    g.add_argument("--dropout", type=float,
                   help="nn.RNN's dropout; inactive in the exported (eval-mode) graph")
    g.add_argument("--bidirectional", action="store_const", const=True,
                   help="both directions, outputs concatenated (nn.RNN bidirectional=True)")
    g.add_argument("--config", metavar="FILE.json",
                   help="nn.RNN keyword arguments as JSON; flags given as well override it")
    g.add_argument("--checkpoint", metavar="FILE",
                   help="a state_dict of nn.RNN, or of a module holding exactly one nn.RNN "
                        "(e.g. under 'rnn1.'); sizes are inferred from it and flags that "
                        "disagree with it are an error. Loaded with weights_only=True")
    g.add_argument("--seed", type=int, default=None,
                   help="without --checkpoint the weights are nn.RNN's own random init under "
                        "torch.manual_seed(SEED) (default 0); the seed is recorded in the file, "
                        "so `conformance check FILE` can rebuild them")


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset, 14 up to the newest both onnx and onnxruntime support "
                        f"(default {DEFAULT_OPSET})")
    p.add_argument("--initial-state", choices=INITIAL_STATES, default="input",
                   help="'input': the graph takes h_0; 'zeros': no h_0 input, torch's default "
                        "zero state (default input)")
    p.add_argument("--sequence-lens", action="store_true",
                   help="add the graph input sequence_lens [batch] (int32): per-sequence valid "
                        "lengths of a padded batch, computed as torch's pack_padded_sequence "
                        "(enforce_sorted=False) → RNN → pad_packed_sequence; each length must "
                        "be in 1..seq")
    p.add_argument("--lowering", choices=("rnn", "scan"), default=None,
                   help="'rnn': native ONNX RNN nodes; 'scan': hoisted input projections + a "
                        "Scan over the recurrence, same inputs and outputs, faster on "
                        "onnxruntime CPU for batched inputs (default: the target's choice — "
                        "native nodes unless the target computes them wrongly)")
    p.add_argument("--target", default="any", metavar="RUNTIME",
                   help="write the construction this runtime computes exactly: any (default: "
                        "exact on every runtime the suite knows), ort, openvino, tract, "
                        "onnx-reference (or a conformance runtime name), or none (exactly as "
                        "the other flags say); see README 'Targets'")
    p.add_argument("--batch-layout", choices=BATCH_LAYOUTS, default="transpose",
                   help="batch_first models: 'transpose' puts Transposes at the graph's edges "
                        "around sequence-major RNN nodes (runs everywhere, default); "
                        "'attribute' uses the RNN op's layout=1 instead (not every runtime "
                        "supports it: see docs/support.md)")
    p.add_argument("--external-data", action="store_true",
                   help="write the weights to <output>.data beside the model (ONNX external "
                        "data); done anyway when they exceed protobuf's 2 GiB limit")
    p.add_argument("--allow-nonfinite", action="store_true",
                   help="export NaN/±Inf weights instead of refusing them")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the self-check: by default the file is run on onnxruntime at two "
                        "shapes other than the example and compared with torch before it is "
                        "written, and refused if they disagree")


def add_module_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("whole module (any nn.Module using nn.RNNs, exported via torch.onnx)")
    g.add_argument("--module", metavar="PACKAGE.MODULE:CLASS",
                   help="an importable nn.Module class, e.g. models.composite:RNNClassifier; its "
                        "nn.RNNs become native RNN nodes, the rest is exported by torch.onnx")
    g.add_argument("--module-kwargs", metavar="JSON", default="{}",
                   help="constructor keyword arguments as a JSON object (default {})")
    g.add_argument("--example-shape", action="append", metavar="D0,D1,...[:DTYPE]",
                   help="one per forward argument, in order: the example input's shape and "
                        "dtype (float32 default; int64/int32 for token ids). Sizes other than "
                        "the feature sizes stay dynamic")
    g.add_argument("--input-names", metavar="A,B", help="ONNX input names (default: forward's "
                                                        "argument names)")
    g.add_argument("--output-names", metavar="A,B", help="ONNX output names")


_DTYPES = {"float32": "float32", "float": "float32", "int64": "int64", "long": "int64",
           "int32": "int32", "int": "int32"}


_EXAMPLE_LIMIT = 1 << 26   # elements of one example input (256 MiB of float32)


def example_tensor(text: str) -> Any:
    import math

    import torch

    shape_text, _, dtype_text = text.partition(":")
    dtype = _DTYPES.get(dtype_text or "float32")
    try:
        shape = [int(d) for d in shape_text.split(",")]
    except ValueError:
        shape = []
    if dtype is None or not shape or min(shape) < 1:
        raise ExportError(f"--example-shape must look like 5,1,10 or 4,7:int64, got {text!r}")
    if math.prod(shape) > _EXAMPLE_LIMIT:
        raise ExportError(f"--example-shape {text} has {math.prod(shape):,} elements; an "
                          f"example needs only small sizes (at most {_EXAMPLE_LIMIT:,}): the "
                          "exported sizes stay dynamic")
    if dtype == "float32":
        return torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    return torch.zeros(*shape, dtype=getattr(torch, dtype))


def load_module(target: str, kwargs: dict[str, Any], checkpoint: str | None = None,
                what: str = "--module") -> Any:
    """Build `package.module:Class(**kwargs)` in eval mode, with a checkpoint's weights
    (weights_only, strict); every failure is one ExportError line."""
    import importlib

    from .checkpoint import load_state_dict

    import torch

    path, _, cls_name = target.partition(":")
    if not path or not cls_name:
        raise ExportError(f"{what} must be package.module:Class, got {target!r}")
    try:
        cls = importlib.import_module(path)
        for part in cls_name.split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ExportError(f"cannot import {target}: {exc}") from None
    except (Exception, SystemExit) as exc:   # the module's own import-time code failed
        raise ExportError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ExportError(f"{target} is not an nn.Module class; refusing to call it")
    try:
        module = cls(**kwargs)
    except (Exception, SystemExit) as exc:   # sys.exit() in a constructor must not escape
        raise ExportError(f"cannot build {target}(**{kwargs}): "
                          f"{type(exc).__name__}: {exc}") from None
    if checkpoint:
        try:
            module.load_state_dict(load_state_dict(checkpoint), strict=True)
        except RuntimeError as exc:
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            raise ExportError(f"checkpoint {checkpoint} does not fit {target}: "
                              f"{' '.join(lines[1:3]) or lines[0]}") from None
    return module.eval()


def _load_module(args: argparse.Namespace) -> Any:
    return load_module(args.module, json_object(args.module_kwargs, "--module-kwargs"),
                       args.checkpoint)


def _module_source(spec: str) -> str | None:
    """The source file of --module's Python module (an input that -o must not overwrite)."""
    import sys

    module = sys.modules.get(spec.partition(":")[0])
    return getattr(module, "__file__", None)


def _export_module(args: argparse.Namespace) -> tuple[Any, Any]:
    from .api import export

    given = [f"--{k.replace('_', '-')}" for k in (*SPEC_FLAGS, "config")
             if getattr(args, k) is not None]
    if given or args.sequence_lens or args.initial_state != "input":
        bad = given + (["--sequence-lens"] if args.sequence_lens else []) + \
            (["--initial-state"] if args.initial_state != "input" else [])
        raise ExportError(f"{', '.join(bad)} describe an nn.RNN export; with --module the "
                          "module's own code and checkpoint say everything")
    if not args.example_shape:
        raise ExportError("--module needs --example-shape, once per forward argument")
    module = _load_module(args)
    names = lambda text: [n.strip() for n in text.split(",")] if text else None  # noqa: E731
    model = export(module, tuple(example_tensor(t) for t in args.example_shape), None,
                   opset=args.opset, batch_layout=args.batch_layout, target=args.target,
                   input_names=names(args.input_names), output_names=names(args.output_names),
                   allow_nonfinite=args.allow_nonfinite, lowering=args.lowering,
                   verify=not args.no_verify,
                   module_kwargs=json_object(args.module_kwargs, "--module-kwargs"))
    return model, module


def json_object(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ExportError(f"cannot read {what}: not JSON ({str(exc)[:200]})") from None
    if not isinstance(data, dict):
        raise ExportError(f"{what} must hold a JSON object")
    return data


def _load_config(path: str) -> dict[str, Any]:
    from .files import read_text_capped

    return json_object(read_text_capped(path, "config file"), f"config {path}")


SPEC_FLAGS = ("cell", "proj_size", "input_size", "hidden_size", "num_layers", "nonlinearity",
              "bias", "batch_first", "dropout", "bidirectional")


def given_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The nn.RNN arguments the user gave: --config, overridden by explicit flags."""
    given = _load_config(args.config) if args.config else {}
    given.update({k: getattr(args, k) for k in SPEC_FLAGS if getattr(args, k) is not None})
    return given


def resolve_rnn(args: argparse.Namespace, given: dict[str, Any] | None = None
                ) -> tuple[RNNSpec, dict]:
    """(spec, nn.RNN-keyed float32 weights) from --config, flags and --checkpoint; without a
    checkpoint the weights are nn.RNN's own random init under --seed."""
    from .reading import module_state
    from .checkpoint import spec_from_checkpoint

    given = given_flags(args) if given is None else given
    if args.checkpoint:
        return spec_from_checkpoint(args.checkpoint, **given)
    spec = RNNSpec.from_kwargs({**SEED_DEFAULTS, **given})
    return spec, module_state(spec.build_module(seed=args.seed))


def _shape(vi) -> str:
    dims = [d.dim_param or str(d.dim_value) for d in vi.type.tensor_type.shape.dim]
    return f"{vi.name}[{', '.join(dims)}]"


def _save_checkpoint(state: dict, path: str, inputs: list) -> None:
    """The exact weights of this export as a state_dict (torch.save, atomically): an nn.RNN's
    for a direct export, the whole module's with --module."""
    import numpy as np
    import torch

    from .files import atomic_write

    tensors = {k: torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else v.detach().clone()
               for k, v in state.items()}
    atomic_write(path, lambda tmp: torch.save(tensors, tmp), inputs)


def _export(args: argparse.Namespace) -> int:
    from .api import export_spec
    from .files import check_output
    from .graph import save_atomic

    inputs = [args.checkpoint, args.config]
    check_output(args.output, inputs)          # before the slow part
    if args.save_checkpoint:
        check_output(args.save_checkpoint, inputs + [args.output])
        if os.path.abspath(args.save_checkpoint) == os.path.abspath(args.output):
            raise ExportError("--save-checkpoint and -o name the same file")
    external = True if args.external_data else None
    if args.module:
        model, module = _export_module(args)
        inputs.append(_module_source(args.module))
        state = module.state_dict()
        what = args.module
    else:
        if args.checkpoint and args.seed is not None:
            raise ExportError("--seed sets random weights; with --checkpoint the weights are "
                              "the checkpoint's")
        if args.seed is None:
            args.seed = 0
        spec, state = resolve_rnn(args)
        model = export_spec(spec, state, None, opset=args.opset,
                            initial_state=args.initial_state, batch_layout=args.batch_layout,
                            target=args.target,
                            sequence_lens=args.sequence_lens, lowering=args.lowering,
                            allow_nonfinite=args.allow_nonfinite, verify=not args.no_verify)
        if not args.checkpoint:   # the weights are reproducible from the seed: say so
            from onnx import helper
            props = {p.key: p.value for p in model.metadata_props}
            helper.set_model_props(model, {**props, "weights": f"torch.manual_seed({args.seed})",
                                           "seed": str(args.seed)})
        what = f"nn.{spec.cell_info.torch_class} {spec.to_json()}"
    # the model first: a checkpoint is written only beside a model that was written
    save_atomic(model, args.output, inputs=inputs, external_data=external)
    if args.save_checkpoint:
        _save_checkpoint(state, args.save_checkpoint, inputs + [args.output])
    size = Path(args.output).stat().st_size
    g = model.graph
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    data = Path(f"{args.output}.data")
    if external and data.is_file():
        size += data.stat().st_size
    print(f"wrote {args.output} ({size:,} bytes{', weights in ' + str(data) if external else ''}"
          f"): {what}")
    print(f"  opset {opset}, {len(g.node)} nodes "
          f"({', '.join(n.op_type for n in g.node)})")
    print(f"  inputs:  {', '.join(_shape(v) for v in g.input)}")
    print(f"  outputs: {', '.join(_shape(v) for v in g.output)}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m exporter",
                                description="Export torch.nn.RNN to ONNX with native RNN ops.")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="export an nn.RNN (default: the seed model)",
                       description="Export an nn.RNN to ONNX: one RNN node per layer, dynamic "
                                   "'batch' and 'seq' dimensions, inputs input[, h_0], outputs "
                                   "output, h_n with torch's shapes.")
    e.add_argument("-o", "--output", default="rnn.onnx", help="output file (default rnn.onnx)")
    e.add_argument("--save-checkpoint", metavar="FILE.pt",
                   help="also save the exported weights as an nn.RNN state_dict, for "
                        "`conformance check` or your own tests")
    add_rnn_arguments(e)
    add_export_arguments(e)
    add_module_arguments(e)
    e.set_defaults(func=_export)
    return p


def run_cli(func: Callable[[argparse.Namespace], int], args: argparse.Namespace,
            prog: str, errors: tuple[type[BaseException], ...] = (ExportError,)) -> int:
    """Run a command; a user error becomes one line on stderr and exit code 2.

    Python warnings raised meanwhile (torch's, onnx's) are held back: after an error only the
    one line is printed; after success each distinct warning is one line on stderr. A closed
    stdout (`| head -1`) ends the command quietly."""
    import os
    import warnings

    terminate_on_sigterm()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            rc = func(args)
            sys.stdout.flush()
        except errors as exc:
            print(f"{prog}: error: {_one_line(str(exc))}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
        except Terminated:
            print(f"{prog}: terminated", file=sys.stderr)
            return 143
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
    try:
        for text in dict.fromkeys(_one_line(str(w.message)) for w in caught):
            print(f"{prog}: warning: {text}", file=sys.stderr)
    except BrokenPipeError:
        pass
    return rc


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return (lines[0] if lines else "")[:1000]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_cli(args.func, args, "exporter")
