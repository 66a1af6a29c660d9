"""The runtime × feature support table, generated from conformance reports (never typed).

Features are predicates over a cell's config labels (data, below). A table cell summarises
every conformance cell of that runtime whose config has the feature: how many pass, and how
the others fail (silently wrong, refused, crashed), with the known divergences that explain it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from .statuses import STATUS
from .versions import pinned

__all__ = ["FEATURES", "support_rows", "support_markdown", "load_reports", "in_scope",
           "exporters_markdown", "replace_block"]

Labels = dict[str, Any]


def _cell(c: Labels) -> str:
    return c.get("cell", "rnn")


def _rnn(c: Labels) -> bool:
    return _cell(c) == "rnn"


FEATURES: dict[str, Callable[[Labels], bool]] = {
    "baseline (1 layer, tanh, bias, seq-first)": lambda c: _rnn(c) and (
        c.get("num_layers") == 1 and c.get("nonlinearity") == "tanh" and bool(c.get("bias"))
        and not c.get("bidirectional") and not c.get("batch_first")),
    "relu": lambda c: _rnn(c) and c.get("nonlinearity") == "relu",
    "no bias": lambda c: _rnn(c) and c.get("bias") is False,
    "bidirectional": lambda c: _rnn(c) and bool(c.get("bidirectional")),
    "multi-layer": lambda c: _rnn(c) and (c.get("num_layers") or 1) > 1,
    "batch_first (transposes)": lambda c: _rnn(c) and bool(c.get("batch_first"))
    and c.get("batch_layout", "transpose") == "transpose",
    "batch_first (layout=1 attribute)": lambda c: _rnn(c)
    and c.get("batch_layout") == "attribute",
    "zero initial state (no h_0)": lambda c: _rnn(c) and c.get("initial_state") == "zeros",
    "sequence_lens": lambda c: _rnn(c) and bool(c.get("sequence_lens")),
    "whole models (models/composite.py)": lambda c: bool(c.get("composite")),
    "scan lowering (--lowering scan)": lambda c: _rnn(c) and c.get("lowering") == "scan",
    "nn.LSTM (LSTM op)": lambda c: _cell(c) == "lstm" and c.get("lowering", "rnn") == "rnn",
    "nn.GRU (GRU op, linear_before_reset=1)": lambda c: _cell(c) == "gru"
    and c.get("lowering", "rnn") == "rnn",
    "nn.LSTM / nn.GRU: layout=1 attribute": lambda c: _cell(c) in ("lstm", "gru")
    and c.get("batch_layout") == "attribute",
    "nn.LSTM / nn.GRU: zero initial state": lambda c: _cell(c) in ("lstm", "gru")
    and c.get("initial_state") == "zeros" and c.get("lowering", "rnn") == "rnn",
    "nn.LSTM / nn.GRU: sequence_lens": lambda c: _cell(c) in ("lstm", "gru")
    and bool(c.get("sequence_lens")) and c.get("lowering", "rnn") == "rnn",
    "nn.LSTM / nn.GRU: scan lowering": lambda c: _cell(c) in ("lstm", "gru")
    and c.get("lowering") == "scan" and not c.get("proj_size"),
    "nn.LSTM proj_size (scan lowering only)": lambda c: bool(c.get("proj_size")),
}
_WHAT = {name: s.observed_as for name, s in STATUS.items() if s.observed_as}
# Rows isolate one feature: other rows look only at models that take h_0, handle batch_first by
# transposes and have no sequence_lens, so a runtime's trouble with layout=1, a missing h_0 or
# sequence_lens shows in its own row and nowhere else. The LSTM/GRU rows repeat that split.
_OWN_SCOPE = {"batch_first (layout=1 attribute)": "batch_layout",
              "zero initial state (no h_0)": "initial_state",
              "sequence_lens": "sequence_lens",
              "whole models (models/composite.py)": "composite",
              "scan lowering (--lowering scan)": "lowering",
              "nn.LSTM / nn.GRU: layout=1 attribute": "batch_layout",
              "nn.LSTM / nn.GRU: zero initial state": "initial_state",
              "nn.LSTM / nn.GRU: sequence_lens": "sequence_lens",
              "nn.LSTM / nn.GRU: scan lowering": "lowering",
              "nn.LSTM proj_size (scan lowering only)": "lowering"}


def in_scope(feature: str, labels: Labels) -> bool:
    own = _OWN_SCOPE.get(feature)
    if labels.get("composite"):
        return own == "composite"
    if labels.get("lowering", "rnn") != "rnn":
        return own == "lowering"
    return ((own == "batch_layout" or labels.get("batch_layout", "transpose") == "transpose")
            and (own == "initial_state" or labels.get("initial_state", "input") == "input")
            and (own == "sequence_lens" or not labels.get("sequence_lens")))


_CELL_KEYS = ("case", "runtime", "status", "observed")


def _load_report(path: Path) -> dict:
    """One report.json, checked for what the tables read: a report of this tool, or a one-line
    error naming what is wrong."""
    from exporter.errors import ExportError
    from exporter.files import read_text_capped

    try:
        report = json.loads(read_text_capped(path, "report", limit=1 << 30))
    except (ValueError, RecursionError) as exc:
        raise ExportError(f"report {path} is not JSON ({str(exc)[:200]})") from None
    cells = report.get("cells") if isinstance(report, dict) else None
    runtimes = report.get("runtimes") if isinstance(report, dict) else None
    if not isinstance(cells, list) or not isinstance(runtimes, dict) or not all(
            isinstance(c, dict) and all(k in c for k in _CELL_KEYS) for c in cells):
        raise ExportError(f"report {path} is not a conformance report.json (it needs "
                          f"'runtimes' and 'cells' with {', '.join(_CELL_KEYS)})")
    return report


def load_reports(paths: list[Path]) -> tuple[list[dict], list[dict]]:
    """(cells, reports) of several report.json files; later reports add runtimes."""
    reports = [_load_report(Path(p)) for p in paths]
    return [c for r in reports for c in r["cells"]], reports


def _summary(cells: list[dict]) -> str:
    if not cells:
        return "not covered"
    if all(c["status"] == "unavailable" for c in cells):
        return "unavailable"
    ran = [c for c in cells if c["status"] != "unavailable"]
    ok = [c for c in ran if c["observed"] == "pass"]
    parts = []
    if ok:
        worst = max(float(c["max_abs_err"]) for c in ok)
        parts.append(f"{'✅' if len(ok) == len(ran) else '◐'} {len(ok)}/{len(ran)} pass "
                     f"(max err {worst:.1e})")
    for observed in _WHAT:
        bad = [c for c in ran if c["observed"] == observed]
        if bad:
            ids = sorted({c["divergence"]["id"] for c in bad if c.get("divergence")})
            unknown = sum(1 for c in bad if not c.get("divergence"))
            mark = "❌" if observed == "fail" else "⛔"
            # cells no entry explains are never hidden behind the ids of those one does
            parts.append(f"{mark} {len(bad)} {_WHAT[observed]}"
                         + (f" [{', '.join(ids)}]" if ids else "")
                         + ("" if not unknown else " (no known divergence!)" if not ids
                            else f" ({unknown} of them with no known divergence!)"))
    return "<br>".join(parts)


def support_rows(cells: list[dict]) -> tuple[list[str], dict[str, dict[str, str]]]:
    runtimes = list(dict.fromkeys(c["runtime"] for c in cells))
    table = {feature: {rt: _summary([c for c in cells if c["runtime"] == rt
                                     and pred(c["labels"]) and in_scope(feature, c["labels"])])
                       for rt in runtimes}
             for feature, pred in FEATURES.items()}
    return runtimes, table


def _target(c: dict) -> str:
    return (c.get("labels") or {}).get("target") or "none"


def _as_asked(c: dict) -> dict:
    """A target file's cell, labelled with the lowering the case asked for."""
    labels = c["labels"]
    return {**c, "labels": {**labels, "lowering": labels.get("case_lowering",
                                                             labels.get("lowering"))}}


def _table_lines(runtimes: list[str], table: dict, versions: dict) -> list[str]:
    lines = ["| feature | " + " | ".join(rt if pinned(rt) else f"{rt} {versions.get(rt, '')}"
                                         for rt in runtimes) + " |",
             "|---|" + "---|" * len(runtimes)]
    for feature, row in table.items():
        lines.append(f"| {feature} | " + " | ".join(row[rt] for rt in runtimes) + " |")
    return lines


# runtimes that refuse to fall back to the CPU: a pass means the graph ran on the device
_DEVICE_RUNTIMES = ("ort-webgpu-chromium",)


def _construction(labels: Labels) -> str:
    if labels.get("lowering") == "scan":
        return "Scan (scan lowering)"
    return {"rnn": "RNN node", "lstm": "LSTM node", "gru": "GRU node"}[labels.get("cell", "rnn")]


def _placement_lines(cells: list[dict]) -> list[str]:
    """| construction | runtime … | rows: how many files ran on the device, how many were
    refused (cells of plain recurrent models; whole models left out)."""
    runtimes = [rt for rt in dict.fromkeys(c["runtime"] for c in cells) if rt in _DEVICE_RUNTIMES]
    if not runtimes:
        return []
    rows: dict[str, dict[str, str]] = {}
    for construction in ("RNN node", "LSTM node", "GRU node", "Scan (scan lowering)"):
        row = {}
        for rt in runtimes:
            files: dict[str, set[str]] = {}
            for c in cells:
                labels = c.get("labels") or {}
                if c["runtime"] == rt and not labels.get("composite") \
                        and _construction(labels) == construction:
                    files.setdefault(c["model"], set()).add(c["observed"])
            ran = sum(1 for obs in files.values() if "pass" in obs)
            refused = sum(1 for obs in files.values() if obs == {"unsupported"})
            row[rt] = (f"{'✅' if ran and not refused else '⛔' if refused and not ran else '◐'} "
                       f"{ran} ran, {refused} refused (of {len(files)} files)") if files else "–"
        rows[construction] = row
    return ["| construction | " + " | ".join(runtimes) + " |", "|---|" + "---|" * len(runtimes),
            *(f"| {k} | " + " | ".join(v[rt] for rt in runtimes) + " |" for k, v in rows.items())]


def support_markdown(cells: list[dict], reports: list[dict], command: str) -> str:
    targeted = [_as_asked(c) for c in cells if _target(c) == "any"]
    cells = [c for c in cells if _target(c) == "none"]
    runtimes, table = support_rows(cells)
    versions = {}
    for r in reports:
        for rt, info in r["runtimes"].items():
            versions.setdefault(rt, info.get("version") or "unavailable")
    env = reports[0]["environment"]
    lines = ["# Runtime support for exported nn.RNN, nn.LSTM and nn.GRU models", "",
             "Generated by `python -m conformance support` from a real conformance run; "
             "do not edit by hand. Regenerate with:", "", f"    {command}", "",
             f"Run on: {env['cpu']}; python {env['python']}, torch {env['torch']}, onnx {env['onnx']}."
             + (f" GPU: {', '.join(env['gpus'])}." if env.get("gpus") else ""), "",
             "Each cell covers every conformance case of that runtime whose model has the "
             "feature (the default matrix: all nn.RNN, nn.LSTM and nn.GRU argument combinations at "
             "several shapes, both lowerings, and whole models); "
             "the first rows look at RNN-op models that take h_0, handle batch_first by "
             "transposes and have no sequence_lens, so each row shows one feature's effect; the "
             "last rows cover their own kind of model. "
             "✅ all pass, with the worst error against torch float32; ◐ some pass; "
             "❌ silently wrong results (the dangerous kind); ⛔ refused at load, or crashed. "
             "Bracketed names are the reviewed entries of "
             "[conformance/divergences.toml](../conformance/divergences.toml).", "",
             *_table_lines(runtimes, table, versions)]
    if targeted:
        t_runtimes, t_table = support_rows(targeted)
        t_table = {f: row for f, row in t_table.items() if "layout=1" not in f}
        t_runtimes = [rt for rt in runtimes if rt in t_runtimes] + [
            rt for rt in t_runtimes if rt not in runtimes]
        lines += ["", "## What `--target any` (the exporter's default) gives each runtime", "",
                  "The same cases exported with `target=\"any\"`: per recurrent module, the "
                  "construction every runtime above computes exactly (exporter/targets.py: the "
                  "scan lowering where a runtime ignores or refuses the RNN op's activations or "
                  "sequence_lens, an explicit zero initial state, a time flip tract accepts). "
                  "Rows are the features the user exported; the layout=1 rows are left out (an "
                  "explicit deployment choice the target does not override).", "",
                  *_table_lines(t_runtimes, t_table, versions)]
    coverage = _placement_lines(cells)
    if coverage:
        lines += ["", "## Which recurrent nodes run on WebGPU", "",
                  "Per construction in the exported files, on the runtimes that refuse a CPU "
                  "fallback: files that ran (and passed) on the device, and files whose session "
                  "was refused because a node has no kernel there.", "", *coverage]
    divergences = {c["divergence"]["id"]: c["divergence"]
                   for c in (*cells, *targeted) if c.get("divergence")}
    if divergences:
        lines += ["", "## Known divergences behind these cells", ""]
        for did, d in sorted(divergences.items()):
            lines.append(f"- **{did}** ({d['kind'] if isinstance(d['kind'], str) else ' / '.join(d['kind'])}): "
                         f"{d.get('summary', '')} — {d['citation']}")
    return "\n".join(lines) + "\n"


def _median(values: list[float]) -> float | None:
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def exporters_markdown(cells: list[dict], reports: list[dict], command: str) -> str:
    """Exporter × cell: how the same cases fare when torch.onnx writes the file, with the
    files' structure beside the verdicts (from a `run --exporters …` report)."""
    runtimes = list(dict.fromkeys(c["runtime"] for c in cells))
    env = reports[0]["environment"]
    lines = [f"Generated by `{command}` (torch {env['torch']}, onnx {env['onnx']}, "
             f"runtimes: {', '.join(runtimes)}). Each row: every case of that cell in the "
             "matrix, exported by that exporter and run on those runtimes. Nodes and export "
             "time are medians per file; *dynamic* means the file keeps the sequence and batch "
             "symbolic on its input and its output.", "",
             "| exporter | module | cells | verdicts | nodes | recurrent ops | dynamic | export s |",
             "|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, str], list[dict]] = {}
    for c in cells:
        labels = c.get("labels") or {}
        if labels.get("composite"):
            continue
        groups.setdefault((c.get("exporter", "ours"), labels.get("cell", "rnn")), []).append(c)
    def releases(group: list[dict], label: str) -> list[str]:
        found = sorted({(c.get("labels") or {}).get(label) for c in group} - {None})
        # a pin ("2.14.1", on cells whose export failed) and the release the export process
        # imported ("2.14.1+cu130") are one release: keep the more precise name
        return [v for v in found if not any(o != v and o.split("+")[0] == v for o in found)]

    def release(exporter: str, group: list[dict]) -> str:
        """A torch.onnx row's releases beside its name: torch when pinned (the header names
        the installed one), onnxscript for torch-dynamo (pinned or installed)."""
        base = exporter.partition("@")[0]
        parts = ([f"torch {', '.join(releases(group, 'exporter_torch'))}"]
                 if "@torch=" in exporter else [])
        if releases(group, "onnxscript"):
            parts.append(f"onnxscript {', '.join(releases(group, 'onnxscript'))}")
        return f"{base} ({', '.join(parts)})" if parts else exporter

    def order(kv: tuple) -> tuple:
        (exporter, cell), group = kv
        from packaging.version import InvalidVersion, Version

        def oldest(label: str) -> Version:
            try:
                return min((Version(v) for v in releases(group, label)), default=Version("0"))
            except InvalidVersion:
                return Version("0")
        return (exporter != "ours", exporter.partition("@")[0], oldest("exporter_torch"),
                oldest("onnxscript"), cell)
    for (exporter, cell), group in sorted(groups.items(), key=order):
        files = {c["model"]: c["labels"] for c in group}
        dynamic = [lab.get("dynamic") for lab in files.values() if "dynamic" in lab]
        ops = sorted({o for lab in files.values() for o in lab.get("recurrent_ops", [])})
        nodes = _median([lab.get("nodes") for lab in files.values()])
        secs = _median([lab.get("export_s") for lab in files.values()])
        lines.append(f"| {release(exporter, group)} | nn.{cell.upper() if cell != 'rnn' else 'RNN'} | "
                     f"{len(group)} | {_summary(group)} | {nodes if nodes is not None else '–'} | "
                     f"{', '.join(ops) or ('unrolled' if dynamic else '–')} | "
                     + (("all" if all(dynamic) else "none" if not any(dynamic) else
                         f"{sum(map(bool, dynamic))}/{len(dynamic)}") if dynamic else
                        ("yes" if exporter == "ours" else "–"))
                     + f" | {f'{secs:.3f}' if secs is not None else '–'} |")
    divergences = {c["divergence"]["id"]: c["divergence"] for c in cells
                   if c.get("divergence") and c.get("exporter", "ours") != "ours"}
    if divergences:
        lines += ["", "Known divergences behind the torch.onnx rows:", ""]
        for did, d in sorted(divergences.items()):
            lines.append(f"- **{did}**: {d.get('summary', '')} — {d['citation']}")
    return "\n".join(lines) + "\n"


def put_block(text: str, begin: str, end: str, block: str, append: bool = False) -> str | None:
    """`text` with the part between two marker lines replaced by `block`; None where it has
    no such part, unless `append`: then the block is added at its end."""
    import re

    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        if not append:
            return None
        text = text.rstrip("\n") + f"\n\n{begin}\n{end}\n"
    return pattern.sub(lambda _: f"{begin}\n{block}{end}", text)


def replace_block(path: Path, begin: str, end: str, block: str, append: bool = False) -> None:
    """Rewrite the text between two marker lines of a file (a README's generated block),
    atomically; `append`: a file without the block gets it at its end."""
    from exporter.files import atomic_write

    text = put_block(path.read_text(), begin, end, block, append)
    if text is None:
        raise ValueError(f"{path} has no {begin} … {end} block")
    atomic_write(path, text.encode())


TORCH_RELEASES_BLOCK = ("<!-- torch-releases:begin -->", "<!-- torch-releases:end -->")


def torch_releases() -> list[dict]:
    """conformance/torch_releases.toml: the torch releases this project was run on."""
    import tomllib

    return tomllib.loads((Path(__file__).parent / "torch_releases.toml").read_text())["release"]


def torch_releases_markdown() -> str:
    """The torch releases table (docs/versions.md), from conformance/torch_releases.toml."""
    mark = {"pass": "✅ passed", "fail": "❌ failed"}
    lines = ["## torch releases", "",
             "The torch releases this project was run on (conformance/torch_releases.toml; "
             "`python -m conformance torch-releases` writes this block). pyproject.toml allows "
             "the passing ones; CI runs the pinned one in constraints.txt. Which files "
             "torch.onnx itself writes at each release: [docs/exporters.md](exporters.md) "
             "(`--exporters torch-dynamo@torch=V`).", "",
             "| torch | build | result | what ran | notes |", "|---|---|---|---|---|"]
    for r in torch_releases():
        lines.append(f"| {r['torch']} | {r['build']} | {mark[r['result']]} | {r['suite']} | "
                     f"{r['notes'] or '–'} |")
    return "\n".join(lines) + "\n"
