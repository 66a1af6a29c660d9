"""Reports of a run: report.json (schema in docs/report-schema.md), junit.xml, report.md,
and a PNG heat map of statuses (runtime × model)."""
from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from exporter.files import atomic_write

from .runner import RunResult
from .statuses import FAILING, SEVERITY, STATUS, STATUSES, junit_counts

__all__ = ["SCHEMA_VERSION", "build_report", "write_reports", "STATUS_COLORS"]

SCHEMA_VERSION = 1
STATUS_COLORS = {name: s.colour for name, s in STATUS.items()}
_SEVERITY = list(SEVERITY)      # worst first: a heat-map square takes its worst cell's colour


def build_report(result: RunResult, env: dict, meta: dict) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "tool": "conformance", **meta,
            "environment": env, "runtimes": result.runtimes, "summary": result.counts(),
            "seconds": round(result.seconds, 3), "cells": result.cells}


def _jsonable(x: Any) -> Any:
    """Strict JSON: non-finite floats become the strings "inf", "-inf", "nan"."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def _fmt(x: float | str | None) -> str:
    return "–" if x is None else f"{float(x):.1e}"


def _junit(report: dict) -> bytes:
    cells = report["cells"]
    counts = junit_counts([c["status"] for c in cells])
    suite = ET.Element("testsuite", name="conformance", tests=str(len(cells)),
                       **{k: str(v) for k, v in counts.items()}, time=str(report["seconds"]))
    for c in cells:
        tc = ET.SubElement(suite, "testcase", classname=f"conformance.{c['runtime']}",
                           name=c["case"], time=str(c["wall_s"] or 0))
        detail = (f"max_abs_err={_fmt(c['max_abs_err'])} max_rel_err={_fmt(c['max_rel_err'])} "
                  f"tolerance={c['tolerance']} {c['message']}").strip()
        kind = STATUS[c["status"]].junit
        if kind in ("failure", "error"):
            ET.SubElement(tc, kind, message=c["status"]).text = detail
        elif kind == "skipped":
            ET.SubElement(tc, "skipped", message=f"{c['status']}: {c['message']}"[:1000])
    return ET.tostring(suite, encoding="utf-8", xml_declaration=True)


def _markdown(report: dict) -> str:
    env, cells = report["environment"], report["cells"]
    lines = [f"# Conformance report: matrix `{report.get('matrix', '?')}`", "",
             f"torch {env['torch']}, onnx {env['onnx']}, onnxruntime {env.get('onnxruntime')}, "
             f"python {env['python']}; CPU: {env['cpu']}; "
             f"GPU: {', '.join(env.get('gpus') or []) or 'none'}"
             + (f" (driver {env['driver']}, CUDA {env['cuda']}, cuDNN {env['cudnn']})"
                if env.get("gpus") else ""), "",
             "## Summary", "", "| runtime | version | " + " | ".join(STATUSES) + " |",
             "|---|---|" + "---|" * len(STATUSES)]
    for rt, info in report["runtimes"].items():
        n = {s: sum(c["runtime"] == rt and c["status"] == s for c in cells) for s in STATUSES}
        lines.append(f"| {rt} | {info.get('version') or 'unavailable'} | "
                     + " | ".join(str(n[s]) for s in STATUSES) + " |")
    wrong = [c for c in cells if c["silently_wrong"]]
    known = sum(c["status"] == "xfail" for c in wrong)
    lines += ["", f"**Silently wrong results** (the runtime answered without complaint, and "
              f"the answer is wrong): {len(wrong)}"
              + (f", of which {known} are known divergences (xfail, listed below) and "
                 f"{len(wrong) - known} are not" if wrong else "")]
    gone = [(rt, info) for rt, info in report["runtimes"].items() if not info["available"]]
    if gone:
        lines += ["", "## Runtimes not run", ""]
    for rt, info in gone:
        if info.get("error"):
            lines += [f"- `{rt}` broken (every cell `error`): {info['error']}"]
        else:
            lines += [f"- `{rt}` unavailable: {info['reason']}"]
    lines += _placement_lines(report)
    notable = [c for c in cells if c["status"] not in ("pass", "unavailable")]
    if notable:
        lines += ["", "## Cells that are not a plain pass", "",
                  "| case | runtime | status | max abs err | vs f64 | torch f32 noise | note |",
                  "|---|---|---|---|---|---|---|"]
        for c in notable:
            note = (c["message"] or "").replace("|", "\\|")
            lines.append(f"| `{c['case']}` | {c['runtime']} | **{c['status']}**"
                         f"{' (silently wrong)' if c['silently_wrong'] else ''} | "
                         f"{_fmt(c['max_abs_err'])} | {_fmt(c['max_abs_err_f64'])} | "
                         f"{_fmt(c['torch_f32_err'])} | {note} |")
    located = [c for c in cells if c.get("status") in FAILING
               and (c.get("first_bad_step") is not None or c.get("diverged_at"))]
    if located:
        from .diagnose import sparkline
        lines += ["", "## Where failing cells diverge", "",
                  "| case | runtime | first bad step | error per step (log scale) | "
                  "first diverging module | repro |", "|---|---|---|---|---|---|"]
        for c in located:
            at = c.get("diverged_at") or {}
            module = (f"`{at['module']}` ({at.get('tensor')}"
                      + (", input already wrong" if at.get("where") == "input" else "")
                      + ")") if at.get("module") else "–"
            step = c.get("first_bad_step")
            if step is None and at.get("first_bad_step") is not None:
                step = f"{at['first_bad_step']} (in `{at['module']}`)"
            lines.append(f"| `{c['case']}` | {c['runtime']} | "
                         f"{'–' if step is None else step} | "
                         f"{sparkline(c.get('step_errors') or [])} | {module} | "
                         f"{at.get('repro') or '–'} |")
    lines += ["", "## Worst error per runtime (passing cells)", "",
              "| runtime | cells | worst max abs err | case |", "|---|---|---|---|"]
    for rt in report["runtimes"]:
        ok = [c for c in cells if c["runtime"] == rt and c["status"] == "pass"]
        if ok:
            w = max(ok, key=lambda c: c["max_abs_err"])
            lines.append(f"| {rt} | {len(ok)} | {_fmt(w['max_abs_err'])} | `{w['case']}` |")
    return "\n".join(lines) + "\n"


def placement_summary(cells: list[dict]) -> dict[str, dict[str, dict[str, int]]]:
    """runtime → op type → provider → nodes, each model's placement counted once."""
    seen: dict[tuple[str, str], dict] = {}
    for c in cells:
        if c.get("placement"):
            seen.setdefault((c["runtime"], c["model"]), c["placement"])
    out: dict[str, dict[str, dict[str, int]]] = {}
    for (rt, _), table in seen.items():
        for op, provs in table.items():
            for prov, n in provs.items():
                slot = out.setdefault(rt, {}).setdefault(op, {})
                slot[prov] = slot.get(prov, 0) + n
    return out


def _placement_lines(report: dict) -> list[str]:
    summary = placement_summary(report["cells"])
    if not summary:
        return []
    lines = ["", "## Placement (which provider ran each node, from the runtime's profile)", "",
             "| runtime | op type | provider: nodes, over all models |", "|---|---|---|"]
    for rt, ops in summary.items():
        for op, provs in sorted(ops.items()):
            lines.append(f"| {rt} | {op} | "
                         + ", ".join(f"{p}: {n}" for p, n in sorted(provs.items())) + " |")
    return lines


def _heatmap_rows(report: dict) -> tuple[list[str], list[str], dict]:
    """(row labels, runtimes, (row, runtime) → cells): the support table's feature rows
    (conformance/support.py) over the files written as asked, then one row of every such
    cell, and one row per exporter target the run also had (`run --targets`: the target
    chose those files' construction, so they are not counted in the feature rows); empty
    rows are dropped."""
    from .support import FEATURES, in_scope

    cells, runtimes = report["cells"], list(report["runtimes"])
    by_target: dict[str, list[dict]] = {}
    for c in cells:
        by_target.setdefault((c.get("labels") or {}).get("target") or "none", []).append(c)
    plain = by_target.pop("none", [])
    rows: dict[str, list[dict]] = {}
    for feature, pred in FEATURES.items():
        rows[feature] = [c for c in plain if c.get("labels") and pred(c["labels"])
                         and in_scope(feature, c["labels"])]
    rows["every cell"] = plain
    rows.update({f"every cell, --target {t}": v for t, v in by_target.items()})
    rows = {k: v for k, v in rows.items() if v}
    grid = {(r, rt): [c for c in v if c["runtime"] == rt] for r, v in rows.items()
            for rt in runtimes}
    return list(rows), runtimes, grid


def _square_text(cells: list[dict]) -> str:
    if not cells:
        return ""
    n = {s: sum(c["status"] == s for c in cells) for s in STATUSES}
    if n["unavailable"] == len(cells):
        return "n/a"
    parts = [f"{n['pass']}/{len(cells) - n['unavailable']} pass"]
    parts += [f"{n[s]} {s}" for s in SEVERITY if STATUS[s].failing and n[s]]
    known = {s: STATUS[s].observed_as for s in SEVERITY if STATUS[s].observed_as}
    for observed, word in known.items():   # xfail squares say which kind of known failure
        k = sum(c["status"] == "xfail" and c.get("observed") == observed for c in cells)
        if k:
            parts.append(f"{k} xfail ({word})")
    return "\n".join(parts[:4])


def _heatmap(report: dict, path: Path) -> None:
    """Feature × runtime, coloured by the worst status, each square with its counts: the
    same rows as docs/support.md, readable at any matrix size."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    rows, runtimes, cells = _heatmap_rows(report)
    worst = [[min((_SEVERITY.index(c["status"]) for c in cells[(r, rt)]),
                  default=_SEVERITY.index("unavailable")) for rt in runtimes] for r in rows]
    cmap = ListedColormap([STATUS_COLORS[s] for s in _SEVERITY])
    fig, ax = plt.subplots(figsize=(3.2 + 1.45 * len(runtimes), 1.4 + 0.62 * len(rows)))
    ax.imshow(worst, cmap=cmap, vmin=-0.5, vmax=len(_SEVERITY) - 0.5, aspect="auto")
    for i, r in enumerate(rows):
        for j, rt in enumerate(runtimes):
            ax.text(j, i, _square_text(cells[(r, rt)]), ha="center", va="center", fontsize=7,
                    color="white" if _SEVERITY[worst[i][j]] in ("fail", "error", "xpass",
                                                               "pass") else "black")
    ax.set_xticks(range(len(runtimes)), runtimes, fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_title(f"conformance: {report.get('matrix', '?')} — worst status per feature and "
                 f"runtime, with counts", fontsize=9, pad=24)
    ax.legend(handles=[Patch(color=STATUS_COLORS[s], label=s) for s in _SEVERITY],
              loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=len(_SEVERITY), fontsize=7,
              frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def write_reports(report: dict, directory: Path, heatmap: bool = True) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    files = {"report.json": json.dumps(_jsonable(report), indent=1, allow_nan=False).encode(),
             "junit.xml": _junit(report), "report.md": _markdown(report).encode()}
    written = []
    for name, data in files.items():
        atomic_write(directory / name, data)
        written.append(directory / name)
    if heatmap:   # a unique temp name (O_EXCL): a planted symlink is never followed
        written.append(atomic_write(directory / "heatmap.png",
                                    lambda tmp: _heatmap(report, tmp)))
    return written


assert set(_SEVERITY) == set(STATUSES) == set(STATUS_COLORS) and FAILING <= set(STATUSES)
