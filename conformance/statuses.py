"""The status vocabulary of a cell, written once: every table, report, colour and exit code
derives from this one table (runner, report's junit and heat map, progress, support).

Order is worst first: where several cells share one square of a heat map, the first status
in this table that any of them has is the square's colour.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

__all__ = ["Status", "STATUS", "STATUSES", "FAILING", "SEVERITY", "junit_counts"]


@dataclass(frozen=True)
class Status:
    name: str
    failing: bool          # makes the run red (exit 1)
    junit: str | None      # junit.xml element: failure | error | skipped | None (a pass)
    colour: str            # heat map (hex)
    style: str             # console (rich style)
    words: str             # what it means, for tables and legends
    observed_as: str = ""  # for a runtime's own result: how support tables word it


STATUS: Mapping[str, Status] = MappingProxyType({s.name: s for s in (
    Status("fail", True, "failure", "#d32f2f", "bold red", "a wrong result",
           "silently wrong"),
    Status("xpass", True, "failure", "#1565c0", "bold blue",
           "a known divergence no longer diverges: the entry must be narrowed or removed"),
    Status("error", True, "error", "#8e24aa", "magenta", "a crash, timeout or adapter error",
           "crash/error"),
    Status("unexported", True, "error", "#ef6c00", "dark_orange",
           "the exporter produced no file", "not exported"),
    Status("unsupported", True, "error", "#ffb300", "yellow", "the runtime refused the model",
           "refused"),
    Status("xfail", False, "skipped", "#9ccc65", "green4",
           "fails exactly as a reviewed known divergence says"),
    Status("unavailable", False, "skipped", "#bdbdbd", "dim",
           "the runtime is not installed or has no device here"),
    Status("pass", False, None, "#2e7d32", "green", "matches torch within tolerance"),
)})
SEVERITY = tuple(STATUS)                                   # worst first
# the order of report columns: pass first, then the failing ones, then the rest
STATUSES = ("pass", "fail", "error", "unsupported", "unexported", "unavailable", "xfail", "xpass")
assert set(STATUSES) == set(STATUS)
FAILING = frozenset(s.name for s in STATUS.values() if s.failing)


def junit_counts(statuses: list[str]) -> dict[str, int]:
    """junit.xml's testsuite counts: failures, errors, skipped."""
    kinds = [STATUS[s].junit for s in statuses]
    return {"failures": kinds.count("failure"), "errors": kinds.count("error"),
            "skipped": kinds.count("skipped")}
