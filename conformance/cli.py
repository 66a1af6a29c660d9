"""`python -m conformance run|check|vectors|replay`: exit 0 all good, 1 a failing cell, 2 usage."""
from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path
from typing import Any, Sequence

from exporter.cli import OneLineParser, add_rnn_arguments, resolve_rnn, run_cli
from exporter.errors import ExportError

from .matrix import MATRIX_NAMES, load_matrix, select, shard, with_targets
from .runner import Prepared, execute, prepare_matrix, temp_workdir
from .check import DEFAULT_CHUNKS
from .runtimes import REGISTRY, installed, runtime_names

__all__ = ["main"]

# "installed": every registered runtime (ort-cuda-tf32 aside, a setting of ort-cuda) that is
# installed and usable here; name the others with --runtimes or --require.
DEFAULT_RUNTIMES = "installed"
# The CPU runtimes; a GPU machine's report adds the ort-cuda column (support --reports a b).
SUPPORT_RUNTIMES = ("ort-cpu,openvino,tract,ort-node,ort-web,onnx-reference,openvino-c,tract-c,"
                    "ort-web-chromium,ort-webgpu-chromium")


def _shard_arg(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected i/N, got {text!r}") from None
    if n < 1 or not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"expected i/N with 1 ≤ i ≤ N, got {text!r}")
    return i, n


def _seconds(text: str) -> float:
    """A positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runtimes", default=DEFAULT_RUNTIMES,
                   help=f"comma-separated: {', '.join(REGISTRY)}, or module:Class; "
                        "'installed' (the default) means every one of them that is installed "
                        "and usable here (ort-cuda only with a GPU)")
    p.add_argument("--require", action="append", default=[], metavar="RUNTIME",
                   help="fail (exit 1) if this runtime is unavailable; repeatable")
    p.add_argument("--allow-tf32", action="store_true",
                   help="run ort-cuda with TF32 matrix math (as ort-cuda-tf32, with its "
                        "own tolerance); default off for float32 comparisons")
    p.add_argument("--report-dir", type=Path, default=Path("conformance-report"),
                   help="where report.json, junit.xml, report.md, heatmap.png go "
                        "(default conformance-report)")
    p.add_argument("-j", "--jobs", type=int, default=1, help="parallel workers (default 1)")
    p.add_argument("--timeout", type=_seconds, default=120.0,
                   help="seconds one cell may take before it is an error (default 120)")
    p.add_argument("--start-timeout", type=_seconds, default=120.0,
                   help="seconds a runtime's worker may take to start and say whether it is "
                        "available; longer is an error for its every cell (default 120)")
    p.add_argument("--no-heatmap", action="store_true", help="skip the PNG heat map")
    p.add_argument("--in-process", action="store_true",
                   default=bool(os.environ.get("TORCH_RNN_CONFORMANCE_IN_PROCESS")),
                   help="run every runtime in this process instead of one isolated worker "
                        "each: no crash isolation and no --timeout, for debugging with pdb "
                        "(and the mutation tester); default from "
                        "$TORCH_RNN_CONFORMANCE_IN_PROCESS")


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m conformance",
                                description="Prove exported RNNs compute what torch computes, "
                                            "runtime by runtime.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="export and check a case matrix on runtimes")
    run.add_argument("--matrix", default="smoke",
                     help=f"{', '.join(MATRIX_NAMES)} or a TOML file (default smoke)")
    run.add_argument("--select", metavar="PATTERN", help="case-id glob, or substring")
    run.add_argument("--shard", type=_shard_arg, metavar="i/N", help="run shard i of N")
    run.add_argument("--targets", default="none", metavar="A,B",
                     help="export every case once per exporter target (exporter --target): "
                          "none (default: the files exactly as each case's options say — the "
                          "honest report on runtimes), any, ort, openvino, tract, "
                          "onnx-reference")
    run.add_argument("--vectors", type=Path, metavar="DIR",
                     help="also write every case as ONNX test vectors into DIR")
    run.add_argument("--exporters", default="ours", metavar="A,B",
                     help="who exports each case: ours (default), torch-dynamo "
                          "(torch.onnx.export(dynamo=True) with dynamic batch and sequence), "
                          "torch-legacy (the TorchScript exporter with dynamic_axes); pinned "
                          "releases: torch-dynamo@onnxscript=V, torch-dynamo|torch-legacy"
                          "@torch=V, torch-dynamo@torch=V@onnxscript=W (installed once into "
                          "the versions cache); torch's take seconds per model: combine with "
                          "the smoke matrix or --select")
    _add_common(run)
    run.set_defaults(func=_cmd_run)

    check = sub.add_parser("check", help="check an already exported model against torch")
    check.add_argument("model", type=Path,
                       help="the .onnx file: a whole model (this exporter's files name their "
                            "module and inputs; give --checkpoint with its weights), or a bare "
                            "recurrent module (inputs input[, h_0][, sequence_lens]; outputs "
                            "output, h_n), whose file says its own nn.RNN arguments (and seed, "
                            "for random weights): flags are then optional, and flags that "
                            "disagree with it are an error")
    check.add_argument("--inputs", default="1x1,3x9,2x64", metavar="BxS,...",
                       help="(batch)x(seq) input cases (default 1x1,3x9,2x64)")
    check.add_argument("--lengths", default="unsorted,mixed", metavar="PATTERN,...",
                       help="for models with a sequence_lens input: length patterns per input "
                            "case, of unsorted, full, ones, mixed (default unsorted,mixed)")
    whole = check.add_argument_group("whole models")
    whole.add_argument("--module", metavar="PACKAGE.MODULE:CLASS",
                       help="the module class (default: the one the file names)")
    whole.add_argument("--module-kwargs", metavar="JSON",
                       help="its constructor's keyword arguments (default: the file's)")
    whole.add_argument("--example-shape", action="append", metavar="D0,D1,...[:DTYPE]",
                       help="for a file another exporter wrote: one per graph input, in order "
                            "(inputs are matched by position)")
    whole.add_argument("--shapes", metavar="DIM=N,...;...",
                       help="sizes of the symbolic dims per case, e.g. "
                            "'batch=1,seq=1;batch=3,seq=40' (default: every batch/seq dim at "
                            "1, at the example, and larger)")
    whole.add_argument("--chunks", default=",".join(map(str, DEFAULT_CHUNKS)), metavar="N,...",
                       help="models with state inputs and outputs: also stream the longest "
                            "case in chunks of N steps, each chunk's states fed to the next "
                            f"(default {','.join(map(str, DEFAULT_CHUNKS))}; '' for none)")
    whole.add_argument("--no-diagnose", action="store_true",
                       help="skip locating a failure (the first diverging recurrent module "
                            "and step, and its repro folder under the report dir)")
    add_rnn_arguments(check)
    _add_common(check)
    check.set_defaults(func=_cmd_check)

    vec = sub.add_parser("vectors", help="write a matrix as ONNX test vectors, run nothing")
    vec.add_argument("--matrix", default="smoke",
                     help=f"{', '.join(MATRIX_NAMES)} or a TOML file (default smoke)")
    vec.add_argument("--select", metavar="PATTERN", help="case-id glob, or substring")
    vec.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    vec.set_defaults(func=_cmd_vectors)

    sup = sub.add_parser("support", help="regenerate the runtime × feature table (docs/support.md)",
                         description="Run the matrix on the runtimes (or read existing "
                                     "report.json files) and write the support table.")
    sup.add_argument("--matrix", default="default",
                     help=f"{', '.join(MATRIX_NAMES)} or a TOML file (default default)")
    sup.add_argument("--reports", type=Path, nargs="+", metavar="REPORT_JSON",
                     help="build the table from these reports instead of running")
    sup.add_argument("-o", "--output", type=Path, default=Path("docs/support.md"),
                     help="the Markdown table to write (default docs/support.md)")
    sup.add_argument("--allow-unavailable", action="store_true",
                     help="write the table even if a runtime was unavailable (its column then "
                          "says so); by default that is refused, so the tracked table is never "
                          "overwritten by a machine that lacks a runtime")
    _add_common(sup)
    sup.set_defaults(func=_cmd_support, runtimes=SUPPORT_RUNTIMES)
    for action in sup._actions:
        if action.dest == "runtimes":
            action.help = f"comma-separated (default {SUPPORT_RUNTIMES})"

    exp = sub.add_parser("exporters", help="judge torch.onnx's own files beside ours; write "
                                           "the table (docs/exporters.md)",
                         description="Run a matrix with --exporters ours,torch-dynamo,"
                                     "torch-legacy and write the exporter × module table.")
    exp.add_argument("--matrix", default="smoke",
                     help=f"{', '.join(MATRIX_NAMES)} or a TOML file (default smoke: torch.onnx "
                          "takes seconds per model)")
    exp.add_argument("-o", "--output", type=Path, default=Path("docs/exporters.md"),
                     help="the Markdown table to write (default docs/exporters.md)")
    exp.add_argument("--readme", type=Path,
                     help="also rewrite this file's exporters:begin/end block")
    exp.add_argument("--onnxscript", default="", metavar="V1,V2",
                     help="also judge torch-dynamo with these onnxscript releases, each "
                          "installed once into the versions cache (torch-dynamo@onnxscript=V)")
    exp.add_argument("--onnxscript-torch", default="", metavar="V",
                     help="export the --onnxscript releases with this torch release (installed "
                          "once into the versions cache): torch.onnx of torch ≥ 2.11 cannot "
                          "import onnxscript < 0.6, torch 2.10's imports them all")
    exp.add_argument("--torch", default="", metavar="V1,V2",
                     help="also judge torch-dynamo and torch-legacy exporting with these torch "
                          "releases, each installed once into the versions cache "
                          "(…@torch=V; the installed torch still computes the truth)")
    _add_common(exp)
    exp.set_defaults(func=_cmd_exporters, runtimes="ort-cpu")

    tr = sub.add_parser("torch-releases", help="write the torch releases this project was "
                                               "tested with (docs/versions.md's block)",
                        description="Render conformance/torch_releases.toml into the "
                                    "torch-releases:begin/end block of a Markdown file.")
    tr.add_argument("-o", "--output", type=Path, default=Path("docs/versions.md"),
                    help="the file whose block to rewrite (default docs/versions.md)")
    tr.set_defaults(func=_cmd_torch_releases)

    bench = sub.add_parser("bench", help="latency on onnxruntime CPU vs torch eager, per lowering",
                           description="Measure torch eager and each lowering on onnxruntime CPU "
                                       "side by side (ratios, SGEMM floor, export times); write "
                                       "JSON, PNG plots and a Markdown table.")
    bench.add_argument("--smoke", action="store_true", help="a tiny grid, for CI")
    bench.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    bench.add_argument("--runtimes", default="ort-cpu,openvino", metavar="A,B",
                       help="runtimes compared on the target shapes, each lowering: ort-cpu, "
                            "openvino (default ort-cpu,openvino; '' to skip)")
    bench.add_argument("--warmup", type=int, default=5,
                       help="untimed runs before each measurement (default 5)")
    bench.add_argument("--repeats", type=int, default=20, help="timed runs per number (default 20)")
    bench.add_argument("--export-seqs", default="5,25", metavar="S,...",
                       help="sequence lengths at which to time torch.onnx.export (default 5,25; "
                            "'' to skip: the default exporter takes minutes at 100+)")
    bench.add_argument("--no-legacy", action="store_true", help="skip the TorchScript exporter")
    bench.add_argument("--out", type=Path, default=Path("docs/perf"),
                       help="folder for bench.json, performance.md, *.png (default docs/perf)")
    bench.add_argument("--readme", type=Path, help="also rewrite this file's perf:begin/end block")
    bench.set_defaults(func=_cmd_bench)

    rep = sub.add_parser("replay", help="run ONNX test vectors (this tool's or onnx's layout)")
    rep.add_argument("vectors", type=Path,
                     help="a model folder (model.onnx + test_data_set_*/) or a folder of them; "
                          "tensors are matched by name, or by position where unnamed")
    _add_common(rep)
    rep.set_defaults(func=_cmd_replay)
    return p


def _report_dir(path: Path) -> None:
    """The report folder must be a folder we can write (checked before anything runs, so a
    long run never ends in a traceback over where to put its reports)."""
    import os

    from exporter.files import real_folder

    real_folder(path)
    if not os.access(path, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write reports into {path}: permission denied")


def _runtimes(args: argparse.Namespace) -> list[str]:
    if args.jobs < 1:
        raise ExportError("-j must be at least 1")
    if args.runtimes == "installed":
        args.runtimes = ",".join(installed()) or "ort-cpu"
    names = runtime_names(args.runtimes)
    required = runtime_names(",".join(args.require)) if args.require else []
    names += [r for r in required if r not in names]
    if args.allow_tf32:
        names = ["ort-cuda-tf32" if n == "ort-cuda" else n for n in names]
        args.require = ["ort-cuda-tf32" if r == "ort-cuda" else r for r in required]
    from .versions import ensure_installed
    for name in names:            # a pinned version: installed, and complete, before any work
        ensure_installed(name)
    _report_dir(args.report_dir)
    return list(dict.fromkeys(names))


def _execute(prepared: list[Prepared], args: argparse.Namespace, meta: dict,
             target: Any = None) -> int:
    from . import progress
    from .environment import environment
    from .report import build_report, write_reports

    runtimes = _runtimes(args)
    if not prepared:
        print("nothing was checked: no case selected; exit 1")
        return 1
    with progress.Live(len(prepared) * len(runtimes)) as bar:
        result = execute(prepared, runtimes, jobs=args.jobs, timeout=args.timeout,
                         start_timeout=args.start_timeout, on_cell=bar.advance,
                         isolate=not args.in_process)
    if target is not None and not getattr(args, "no_diagnose", False):   # a whole model: where did it diverge?
        from .diagnose import diagnose
        diagnose(result, prepared, target, args.report_dir, timeout=args.timeout)
    report = build_report(result, environment(), meta)
    files = write_reports(report, args.report_dir, heatmap=not args.no_heatmap)
    progress.summary(result, args.require, wall=time.perf_counter() - args.started)
    print(f"reports: {', '.join(str(f) for f in files)}")
    return 1 if result.failed(args.require) else 0


def _prepare(cases: list, workdir: Path, exporters: Sequence[str] = ("ours",)) -> list[Prepared]:
    """Export every model and compute torch's answers, with a progress bar of its own."""
    from . import progress

    with progress.Live(len(cases) * len(exporters), label="preparing  ") as bar:
        return prepare_matrix(cases, workdir, on_case=bar.step, exporters=exporters)


def _cmd_run(args: argparse.Namespace) -> int:
    targets = _targets(args)
    cases = select(with_targets(load_matrix(args.matrix), targets), args.select)
    if args.shard:
        cases = shard(cases, *args.shard)
    _runtimes(args)  # validate before the slow part
    if args.vectors:
        from exporter.files import real_folder
        real_folder(args.vectors)
    from .exporters import exporter_names
    exporters = exporter_names(getattr(args, "exporters", "ours"))
    with temp_workdir() as tmp:
        prepared = _prepare(cases, Path(tmp), exporters)
        if args.vectors:
            from .vectors import write_vectors
            write_vectors(prepared, args.vectors)
        meta = {"command": "run", "matrix": args.matrix, "select": args.select,
                "shard": "/".join(map(str, args.shard)) if args.shard else None,
                "exporters": exporters, "targets": targets}
        return _execute(prepared, args, meta)


def _targets(args: argparse.Namespace) -> list[str]:
    from exporter.targets import target_name

    names = [t.strip() for t in getattr(args, "targets", "none").split(",") if t.strip()]
    if not names:
        raise ExportError("--targets needs at least one target")
    return list(dict.fromkeys(target_name(t) for t in names))


def _input_cases(text: str) -> list[tuple[int, int]]:
    try:
        cases = [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",")]
    except ValueError:
        raise ExportError(f"--inputs must look like 1x1,3x9, got {text!r}") from None
    if not cases or any(len(c) != 2 or min(c) < 1 for c in cases):
        raise ExportError(f"--inputs must look like 1x1,3x9 with sizes ≥ 1, got {text!r}")
    return cases  # type: ignore[return-value]


def _length_patterns(text: str) -> list[str]:
    from .truth import LENGTH_PATTERNS

    patterns = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in patterns if p not in LENGTH_PATTERNS]
    if not patterns or bad:
        raise ExportError(f"--lengths takes {', '.join(LENGTH_PATTERNS)}; got {text!r}")
    return patterns


def _file_config(model: Any, args: argparse.Namespace
                 ) -> tuple[dict[str, Any], int | None]:
    """What a file this exporter wrote says about itself (metadata_props): the nn.RNN
    arguments and, for random weights, their seed. Flags that disagree are a usage error."""
    import json

    from exporter.cli import given_flags

    props = {p.key: p.value for p in model.metadata_props}
    given = given_flags(args)
    try:
        config = json.loads(props["rnn_config"]) if "rnn_config" in props else {}
        seed = int(props["seed"]) if "seed" in props else None
    except (ValueError, TypeError):
        raise ExportError("the file's rnn_config/seed metadata is unreadable") from None
    if not isinstance(config, dict):
        raise ExportError("the file's rnn_config metadata is not a JSON object")
    clash = [f"--{k.replace('_', '-')} {given[k]!r} (the file says {config[k]!r})"
             for k in given if k in config and given[k] != config[k]]
    if args.seed is not None and seed is not None and args.seed != seed:
        clash.append(f"--seed {args.seed} (the file says {seed})")
    if clash:
        raise ExportError(f"flags disagree with the file's own metadata: {'; '.join(clash)}")
    return {**config, **given}, seed


def _rnn_check(args: argparse.Namespace, model: Any) -> list[Prepared]:
    from .check import rnn_cases
    from exporter.signature import graph_inputs

    names = [i.name for i in graph_inputs(model.graph)]
    config, file_seed = _file_config(model, args)
    if names[:1] != ["input"] or not set(names) <= {"input", "h_0", "c_0", "sequence_lens"}:
        raise ExportError(f"model inputs are {names}; expected input[, h_0[, c_0]]"
                          "[, sequence_lens]")
    if args.checkpoint and args.seed is not None:
        raise ExportError("--seed rebuilds random weights; with --checkpoint the weights are "
                          "the checkpoint's")
    if not args.checkpoint:
        args.seed = args.seed if args.seed is not None else file_seed
        if args.seed is None:
            raise ExportError("check needs the weights the model was exported from: "
                              "--checkpoint FILE (e.g. from `exporter export --save-checkpoint`), "
                              "or --seed N for a file exported from random weights")
    spec, state = resolve_rnn(args, config)
    patterns = _length_patterns(args.lengths) if "sequence_lens" in names else [None]
    return rnn_cases(args.model, model, spec, state, _input_cases(args.inputs), patterns)


def _whole_check(args: argparse.Namespace, model: Any) -> tuple[list[Prepared], Any]:
    from exporter.cli import SPEC_FLAGS, example_tensor, json_object

    from .check import model_cases, parse_chunks, parse_shapes, whole_model

    rnn_flags = [f"--{k.replace('_', '-')}" for k in (*SPEC_FLAGS, "config", "seed")
                 if getattr(args, k) is not None]
    if rnn_flags:
        raise ExportError(f"{', '.join(rnn_flags)} describe a bare nn.RNN file; this is a whole "
                          "model: its module and --checkpoint say everything")
    if not args.checkpoint:
        raise ExportError("check needs the weights the model was exported from: --checkpoint "
                          "FILE (`exporter export --module … --save-checkpoint FILE` writes it)")
    examples = [example_tensor(t) for t in args.example_shape] if args.example_shape else None
    kwargs = json_object(args.module_kwargs, "--module-kwargs") if args.module_kwargs else None
    target = whole_model(args.model, model, module_path=args.module, module_kwargs=kwargs,
                         checkpoint=args.checkpoint, examples=examples)
    skipped: list[str] = []
    prepared = model_cases(target, model,
                           shapes=parse_shapes(args.shapes) if args.shapes else None,
                           chunks=parse_chunks(args.chunks), skipped=skipped)
    for line in skipped:
        print(f"not checked at {line}")
    return prepared, target


def _cmd_check(args: argparse.Namespace) -> int:
    from .check import is_whole_model, load_file

    model = load_file(args.model)
    meta = {"command": "check", "matrix": f"check {args.model}"}
    if args.module or is_whole_model(model):
        prepared, target = _whole_check(args, model)
        return _execute(prepared, args, meta, target)
    return _execute(_rnn_check(args, model), args, meta)


def _cmd_vectors(args: argparse.Namespace) -> int:
    from .vectors import write_vectors

    from exporter.files import real_folder

    cases = select(load_matrix(args.matrix), args.select)
    if not cases:
        raise ExportError("no cases selected")
    real_folder(args.output)        # before the slow part
    with temp_workdir() as tmp:
        folders = write_vectors(_prepare(cases, Path(tmp)), args.output)
    print(f"wrote {len(cases)} cases of {len(folders)} models to {args.output}")
    return 0


def _cmd_support(args: argparse.Namespace) -> int:
    from exporter.files import atomic_write

    from .support import load_reports, support_markdown

    from exporter.files import check_output

    check_output(args.output)   # before running: a table that cannot be written is a usage error
    if args.reports:
        missing = [str(p) for p in args.reports if not p.is_file()]
        if missing:
            raise ExportError(f"report not found: {', '.join(missing)}")
        load_reports(args.reports)  # readable reports, checked before anything is written
        rc = 0
    else:
        args.select, args.shard, args.vectors = None, None, None
        args.targets = "none,any"        # the honest table, and what --target gives
        rc = _cmd_run(args)
        args.reports = [args.report_dir / "report.json"]
    cells, reports = load_reports(args.reports)
    # how to rebuild the table from scratch, read off the reports it was built from
    matrices = sorted({str(r.get("matrix")) for r in reports})
    runtimes = ",".join(dict.fromkeys(rt for r in reports for rt in r["runtimes"]))
    command = (f"python -m conformance support --matrix {'/'.join(matrices)} "   # targets none,any
               f"--runtimes {runtimes}" + (f"   # merged from {len(reports)} reports"
                                           if len(reports) > 1 else ""))
    missing = sorted({rt for r in reports for rt, info in r["runtimes"].items()
                      if not info.get("available")})
    if missing and not args.allow_unavailable:
        print(f"not writing {args.output}: {', '.join(missing)} unavailable here (install "
              "them, drop them from --runtimes, or pass --allow-unavailable)")
        return 1
    md = support_markdown(cells, reports, command)
    from .support import TORCH_RELEASES_BLOCK, put_block, torch_releases_markdown
    if args.output.is_file() and TORCH_RELEASES_BLOCK[0] in args.output.read_text():
        # the versions page keeps its torch table
        md = put_block(md, *TORCH_RELEASES_BLOCK, torch_releases_markdown(), append=True)
    atomic_write(args.output, md.encode())
    print(f"wrote {args.output}")
    return rc


def _cmd_torch_releases(args: argparse.Namespace) -> int:
    from .support import TORCH_RELEASES_BLOCK, replace_block, torch_releases_markdown

    if not args.output.is_file():
        raise ExportError(f"{args.output}: not a file")
    replace_block(args.output, *TORCH_RELEASES_BLOCK, torch_releases_markdown(), append=True)
    print(f"wrote the torch releases block of {args.output}")
    return 0


def _cmd_exporters(args: argparse.Namespace) -> int:
    from exporter.files import atomic_write

    from .support import exporters_markdown, load_reports, replace_block

    args.select, args.shard, args.vectors = None, None, None
    releases = [v.strip() for v in args.onnxscript.split(",") if v.strip()]
    torches = [v.strip() for v in args.torch.split(",") if v.strip()]
    with_torch = f"@torch={args.onnxscript_torch}" if args.onnxscript_torch else ""
    args.exporters = ",".join(["ours", "torch-dynamo", "torch-legacy",
                               *(f"torch-dynamo{with_torch}@onnxscript={v}" for v in releases),
                               *(f"{e}@torch={v}" for v in torches
                                 for e in ("torch-dynamo", "torch-legacy"))])
    from .exporters import exporter_names
    from .versions import ensure_exporter
    for name in exporter_names(args.exporters):    # bad versions: one line, before any work
        ensure_exporter(name)
    rc = _cmd_run(args)
    cells, reports = load_reports([args.report_dir / "report.json"])
    command = (f"python -m conformance exporters --matrix {args.matrix} --runtimes {args.runtimes}"
               + (f" --onnxscript {','.join(releases)}" if releases else "")
               + (f" --onnxscript-torch {args.onnxscript_torch}" if with_torch else "")
               + (f" --torch {','.join(torches)}" if torches else ""))
    md = exporters_markdown(cells, reports, command)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.output, ("# Is torch.onnx's file right?\n\n" + md).encode())
    if args.readme:
        replace_block(args.readme, "<!-- exporters:begin -->", "<!-- exporters:end -->", md)
    print(f"wrote {args.output}")
    return rc


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ExportError(f"{what} must be comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise ExportError(f"{what} must be ≥ 1, got {text!r}")
    return values


def _cmd_bench(args: argparse.Namespace) -> int:
    from . import bench, bench_report

    from exporter.files import real_folder

    threads = _ints(args.threads, "--threads")
    if not threads or args.repeats < 1 or args.warmup < 0:
        raise ExportError("--threads needs a value, --repeats ≥ 1 and --warmup ≥ 0")
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    if set(runtimes) - {"ort-cpu", "openvino"}:
        raise ExportError(f"bench --runtimes takes ort-cpu and openvino, got {args.runtimes!r}")
    export_seqs = _ints(args.export_seqs, "--export-seqs")
    if args.readme and not args.readme.is_file():
        raise ExportError(f"--readme {args.readme} is not a file")
    real_folder(args.out)        # every argument checked before the minutes of measuring
    result = bench.run_bench(bench.SMOKE if args.smoke else bench.GRID, threads, args.warmup,
                             args.repeats, export_seqs, not args.no_legacy, print, runtimes)
    bench.write_json(result, args.out / "bench.json")
    bench_report.write_plots(result, args.out)
    command = f"python -m conformance bench{' --smoke' if args.smoke else ''} --threads {args.threads}"
    md = bench_report.markdown(result, command)
    (args.out / "performance.md").write_text("# Performance\n\n" + md)
    if args.readme:
        prefix = str(args.out.relative_to(args.readme.parent)) + "/" if not args.out.is_absolute() else ""
        bench_report.update_readme(args.readme, bench_report.markdown(result, command, prefix))
    print(f"wrote {args.out / 'bench.json'}, {args.out / 'performance.md'} and plots")
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from .vectors import read_vectors

    return _execute(read_vectors(args.vectors), args,
                    {"command": "replay", "matrix": f"vectors {args.vectors}"})


def main(argv: Sequence[str] | None = None) -> int:
    started = time.perf_counter()
    args = _parser().parse_args(argv)
    args.started = started
    return run_cli(args.func, args, "conformance")

