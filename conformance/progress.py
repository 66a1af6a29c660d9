"""Live progress bar and the closing matrix table (rich)."""
from __future__ import annotations

import sys
from typing import Iterable

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .runner import RunResult
from .statuses import FAILING, STATUS, STATUSES

__all__ = ["Live", "summary"]

_STYLE = {name: s.style for name, s in STATUS.items()}
_err = Console(stderr=True)


def _console() -> Console:
    """Wide enough for the table when piped into a CI log."""
    return Console(width=None if sys.stdout.isatty() else 140)


class Live:
    """A progress bar on stderr that counts finished cells and failures."""

    def __init__(self, total: int, label: str = "conformance") -> None:
        self._progress = Progress(TextColumn(f"[bold]{label}"), BarColumn(),
                                  MofNCompleteColumn(), TextColumn("{task.fields[bad]}"),
                                  TimeElapsedColumn(), console=_err, transient=False)
        self._task = self._progress.add_task("cells", total=total, bad="")
        self._bad = 0

    def __enter__(self) -> "Live":
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def step(self, n: int = 1) -> None:
        self._progress.update(self._task, advance=n)

    def advance(self, cell: dict) -> None:
        if cell["status"] in FAILING:
            self._bad += 1
        self._progress.update(self._task, advance=1,
                              bad=f"[red]{self._bad} failing" if self._bad else "")


def summary(result: RunResult, required: Iterable[str] = (), wall: float | None = None
            ) -> None:
    out = _console()
    table = Table(title="conformance matrix")
    table.add_column("runtime")
    table.add_column("version")
    for s in STATUSES:
        table.add_column(s, justify="right", style=_STYLE[s])
    table.add_column("worst pass err", justify="right")
    for rt, info in result.runtimes.items():
        cells = [c for c in result.cells if c["runtime"] == rt]
        errs = [c["max_abs_err"] for c in cells if c["status"] == "pass"]
        table.add_row(rt, info.get("version") or "–",
                      *[str(sum(c["status"] == s for c in cells) or "") for s in STATUSES],
                      f"{max(errs):.1e}" if errs else "–")
    out.print(table)
    for rt, info in result.runtimes.items():
        if info.get("error"):
            out.print(f"[magenta]{rt} broken: {escape(str(info['error']))}[/]", highlight=False)
        elif not info["available"]:
            out.print(f"[dim]{rt} unavailable: {escape(str(info['reason']))}[/dim]",
                      highlight=False)
    bad = [c for c in result.cells if c["status"] in FAILING]
    for c in bad[:25]:
        flag = " [bold red](silently wrong)[/]" if c["silently_wrong"] else ""
        out.print(f"[{_STYLE[c['status']]}]{c['status']}[/]{flag} {escape(c['runtime'])} "
                  f"{escape(c['case'])}: {escape(c['message'] or '')} "
                  f"max_abs_err={c['max_abs_err']}", highlight=False)
    if len(bad) > 25:
        out.print(f"... and {len(bad) - 25} more failing cells (see report.md)")
    for r in required:
        if not result.runtimes.get(r, {}).get("available"):
            out.print(f"[bold red]required runtime {r} is unavailable[/]")
    if not result.judged():
        out.print("[bold red]nothing was checked: no cell was judged (every runtime "
                  "unavailable, or no case selected); exit 1[/]")
    counts = result.counts()
    took = (f" in {wall:.1f}s wall ({result.seconds:.1f}s running the runtimes)"
            if wall is not None else f" in {result.seconds:.1f}s")
    out.print(", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s]) + took,
              highlight=False)
