"""Case × runtime → cell: run each prepared case on each runtime, isolated, and judge it
(prepare.py readies the cases, judge.py decides each cell)."""
from __future__ import annotations

import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .divergences import Divergence, load_divergences
from .judge import judge_cell
from .prepare import Prepared, prepare_matrix
from .statuses import FAILING, STATUSES
from .worker import InProcess, Outcome, Worker

__all__ = ["Prepared", "RunResult", "prepare_matrix", "execute", "FAILING", "STATUSES"]


@dataclass
class RunResult:
    runtimes: dict[str, dict[str, Any]]
    cells: list[dict[str, Any]]
    seconds: float

    def counts(self) -> dict[str, int]:
        return {s: sum(c["status"] == s for c in self.cells) for s in STATUSES}

    def judged(self) -> int:
        """Cells that were actually checked (anything but unavailable)."""
        return sum(c["status"] != "unavailable" for c in self.cells)

    def failed(self, required: Iterable[str] = ()) -> bool:
        """A run is red on a failing cell, a missing required runtime, or when nothing at all
        was checked: a run that judged nothing proves nothing."""
        missing = [r for r in required if not self.runtimes.get(r, {}).get("available")]
        return (bool(missing) or any(c["status"] in FAILING for c in self.cells)
                or not self.judged())


class _Pool:
    """Per-thread runner processes, one per runtime, all closed at the end."""

    def __init__(self, factory: Callable[[str], Any]) -> None:
        self._factory, self._local, self._all = factory, threading.local(), []
        self._lock, self._closed = threading.Lock(), False

    def get(self, runtime: str) -> Any:
        hosts = self._local.__dict__.setdefault("hosts", {})
        if runtime not in hosts:
            # made and registered under the lock, so that close() sees every host: a thread
            # still running its group after a SIGTERM must not make one (its temporary log
            # file) once close() has gone through the list
            with self._lock:
                if self._closed:
                    raise RuntimeError("the run was stopped")
                hosts[runtime] = self._factory(runtime)
                self._all.append(hosts[runtime])
        return hosts[runtime]

    def close(self) -> None:
        with self._lock:
            self._closed = True
        for host in self._all:
            host.close()


def _describe(runtime: str, factory: Callable[[str], Any]) -> dict[str, Any]:
    host = factory(runtime)
    try:
        reason, version, options, error = host.describe()
    finally:
        host.close()
    return {"available": reason is None and error is None, "reason": reason, "error": error,
            "version": version, "options": options}


def execute(prepared: list[Prepared], runtimes: list[str], *, jobs: int = 1,
            timeout: float = 120.0, start_timeout: float = 120.0, isolate: bool = True,
            on_cell: Callable[[dict], None] | None = None,
            divergences: list[Divergence] | None = None) -> RunResult:
    """Run every prepared case on every runtime; cells come back in (case, runtime) order."""
    start = time.perf_counter()
    divergences = load_divergences() if divergences is None else divergences

    def factory(name: str) -> Any:
        return (Worker(name, timeout, start_timeout) if isolate
                else InProcess(name, timeout, start_timeout))

    from .versions import ensure_installed
    for rt in runtimes:
        ensure_installed(rt)        # pinned versions only; a plain name is a no-op
    infos = {rt: _describe(rt, factory) for rt in runtimes}
    # Cells are keyed by position, never by case id: ids come from files in replay, and two
    # sets claiming one id must still give two verdicts.
    by_path: dict[str, list[tuple[int, Prepared]]] = {}      # one file's cases, in order
    for k, p in enumerate(prepared):
        by_path.setdefault(p.model_path, []).append((k, p))
    groups = [(rt, items) for rt in runtimes for items in by_path.values()]
    pool = _Pool(factory)
    results: dict[tuple[int, str], dict] = {}

    def run_group(rt: str, items: list[tuple[int, Prepared]]) -> None:
        for k, p in items:
            outcome = None
            if infos[rt]["error"]:      # the adapter broke: every cell says so, never absent
                outcome = Outcome("error", message=infos[rt]["error"])
            elif infos[rt]["available"]:
                outcome = (Outcome("unexported" if p.unexported else "error", message=p.problem)
                           if p.problem else pool.get(rt).run(p.model_path, p.request()))
            cell = judge_cell(p, rt, infos[rt], outcome, divergences)
            results[(k, rt)] = cell
            if on_cell:
                on_cell(cell)

    ex = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        for fut in [ex.submit(run_group, rt, items) for rt, items in groups]:
            fut.result()
    except BaseException:   # Ctrl-C, SIGTERM, a bug: start no more cells, end the workers
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        pool.close()        # closes every worker, so cells still running end at once
        ex.shutdown(wait=True)
    cells = [results[(k, rt)] for k in range(len(prepared)) for rt in runtimes]
    return RunResult(infos, cells, time.perf_counter() - start)


def temp_workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="conformance-")
