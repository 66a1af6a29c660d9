"""Runs one runtime adapter in its own process, so a crash or a hang costs one cell only.

Protocol over a Pipe (parent → child): ("run", model_path, feeds) or None to stop; feeds is a
dict of arrays, or a Stream (streaming.py) run chunk by chunk in the child.
Child → parent: ("hello", unavailable_reason, version, options, error) once, then per request
an Outcome. `unavailable_reason` is set only when the adapter itself says its runtime is not
installed or has no device here; any exception while starting or asking is `error`.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .runtimes.base import HelperCrashed
from .streaming import Stream

__all__ = ["Outcome", "Worker", "InProcess", "one_line"]


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:500]


@dataclass
class Outcome:
    kind: str                          # ok | unsupported | error
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    provider: str = ""
    seconds: float = 0.0
    message: str = ""
    placement: dict[str, dict[str, int]] | None = None
    log: str = ""                      # what the runtime printed meanwhile (isolated runs)


class _Host:
    """The adapter plus a one-model session cache; used in the child or in-process."""

    def __init__(self, name: str) -> None:
        from .runtimes import load_runtime
        self.name = name
        self.runtime = load_runtime(name)
        self._path: str | None = None
        self._session: Any = None

    def hello(self) -> "Hello":
        try:
            reason = self.runtime.available()
            if reason:
                return reason, None, {}, None
            version = self.runtime.version()
            from .versions import version_problem
            problem = version_problem(self.name, version)
            if problem:   # never judge one release under another's name
                return None, version, {}, problem
            return None, version, self.runtime.options(), None
        except Exception as exc:   # a broken adapter or installation is an error, not absence
            return None, None, {}, f"{self.runtime.name} failed to start: {one_line(exc)}"

    def run(self, model_path: str, feeds: Mapping[str, np.ndarray]) -> Outcome:
        if model_path != self._path:
            self._path, self._session = None, None
            try:
                self._session = self.runtime.load(model_path)
            except HelperCrashed as exc:         # a crash, not a refusal
                return Outcome("error", message=f"crash: {exc}")
            except Exception as exc:
                return Outcome("unsupported", message=one_line(exc))
            self._path = model_path
        start = time.perf_counter()
        try:
            if isinstance(feeds, Stream):     # chunk by chunk, states fed back (streaming.py)
                outputs = feeds.run(lambda chunk: self.runtime.run(self._session, chunk))
            else:
                outputs = self.runtime.run(self._session, feeds)
        except HelperCrashed as exc:
            return Outcome("error", message=f"crash: {exc}")
        except Exception as exc:
            return Outcome("error", message=one_line(exc))
        seconds = time.perf_counter() - start
        provider = self.runtime.provider(self._session)
        placement = self.runtime.placement(self._session)
        problem = self.runtime.placement_problem(self._session)
        if problem:   # it ran, but not (only) where this runtime promises: never a pass
            return Outcome("unsupported", outputs, provider, seconds, problem, placement)
        return Outcome("ok", outputs, provider, seconds, placement=placement)


def _serve(conn: Any, name: str, log_path: str | None = None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent handles Ctrl-C
    from exporter.errors import Terminated, terminate_on_sigterm
    terminate_on_sigterm()    # SIGTERM to the process group: unwind, releasing the session's files
    try:
        _serve_requests(conn, name, log_path)
    except (Terminated, EOFError, BrokenPipeError):
        return


def _serve_requests(conn: Any, name: str, log_path: str | None) -> None:
    from .versions import site_for
    site = site_for(name)
    if site is not None:      # a pinned runtime version: its install goes first on the path
        import sys
        sys.path.insert(0, str(site))
    if log_path:   # everything the runtime prints (C++ loggers, Rust panics) goes to the cell
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    try:
        host = _Host(name)
    except Exception as exc:
        conn.send(("hello", None, None, {}, f"{name} adapter failed to load: {one_line(exc)}"))
        return
    conn.send(("hello", *host.hello()))
    while True:
        msg = conn.recv()
        if msg is None:
            return
        _, model_path, feeds = msg
        conn.send(host.run(model_path, feeds))


# (unavailable reason, version, options, error): exactly one of reason / error, or neither.
Hello = tuple[str | None, str | None, dict, str | None]


class Worker:
    """A child process hosting runtime `name`; restarted after a crash or a timeout.

    `timeout` bounds one cell; `start_timeout` bounds the child's start and its first answer
    (importing a runtime can be slow, and is not a cell)."""

    def __init__(self, name: str, timeout: float = 120.0, start_timeout: float = 120.0) -> None:
        self.name, self.timeout, self.start_timeout = name, timeout, start_timeout
        self._proc: Any = None
        self._conn: Any = None
        self._closed = False        # close() ran: no child is started again
        self.hello: Hello | None = None
        fd, self._log = tempfile.mkstemp(prefix="conformance-worker-", suffix=".log")
        os.close(fd)

    _LOG_TAIL = 4000

    def _log_since(self, offset: int) -> str:
        """What the child wrote to its log from `offset` on (4000 characters at most: the
        first and the last 2000)."""
        try:
            with open(self._log, "rb") as fh:
                fh.seek(offset)
                text = fh.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""
        if len(text) <= self._LOG_TAIL:
            return text
        # the head says what happened (a panic message), the tail where it ended
        return text[:self._LOG_TAIL // 2] + "\n…\n" + text[-self._LOG_TAIL // 2:]

    def _log_size(self) -> int:
        try:
            return os.path.getsize(self._log)
        except OSError:
            return 0

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, self.name, self._log), daemon=True,
                                 name=f"conformance-{self.name}")
        self._proc.start()
        child.close()
        self._conn = parent
        if not parent.poll(self.start_timeout):
            self._kill()
            raise TimeoutError(f"{self.name} worker did not start within "
                               f"{self.start_timeout:g}s")
        try:
            _, reason, version, options, error = parent.recv()
        except EOFError:
            proc = self._proc
            self._kill()
            raise RuntimeError(f"{self.name} worker died while starting "
                               f"(exit code {proc.exitcode})") from None
        self.hello = (reason, version, options, error)

    def describe(self) -> Hello:
        """(unavailable reason, version, options, error), starting the child if needed."""
        if self.hello is None:
            try:
                self._start()
            except (TimeoutError, RuntimeError) as exc:
                return None, None, {}, f"worker failed: {exc}"
        return self.hello

    def run(self, model_path: str, feeds: Mapping[str, np.ndarray]) -> Outcome:
        if self._closed:            # the run was stopped while this cell's thread went on
            return Outcome("error", message=f"the {self.name} worker was closed")
        if self._proc is None or not self._proc.is_alive():
            try:
                self._start()
            except (TimeoutError, RuntimeError) as exc:
                return Outcome("error", message=str(exc))
        start, offset = time.perf_counter(), self._log_size()
        try:
            self._conn.send(("run", model_path,
                             feeds if isinstance(feeds, Stream) else dict(feeds)))
            if not self._conn.poll(self.timeout):
                self._kill()
                outcome = Outcome("error", seconds=time.perf_counter() - start,
                                  message=f"timeout: no answer within {self.timeout:g}s")
            else:
                outcome = self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self._proc.join(5)
            code = self._proc.exitcode
            self._kill()
            how = f"signal {signal.Signals(-code).name}" if code and code < 0 else f"exit {code}"
            outcome = Outcome("error", seconds=time.perf_counter() - start,
                              message=f"crash: the {self.name} worker died ({how})")
        outcome.log = self._log_since(offset)
        return outcome

    def _kill(self) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if proc is not None and proc.is_alive():
            proc.kill()
            proc.join(5)
        if conn is not None:
            try:
                conn.close()
            except OSError:     # closed meanwhile by the thread whose cell it ran (SIGTERM)
                pass

    def close(self) -> None:
        self._closed = True
        if self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(None)
                self._proc.join(5)
            except (BrokenPipeError, OSError):
                pass
        self._kill()
        try:
            os.unlink(self._log)
        except OSError:
            pass


class InProcess:
    """Same interface as Worker without isolation (for pytest's parametrised smoke tests)."""

    def __init__(self, name: str, timeout: float = 0.0, start_timeout: float = 0.0) -> None:
        self.name = name
        try:
            self._host = _Host(name)
            self.hello: Hello = self._host.hello()
        except Exception as exc:
            self.hello = None, None, {}, f"{name} adapter failed to load: {one_line(exc)}"

    def describe(self) -> Hello:
        return self.hello

    def run(self, model_path: str, feeds: Mapping[str, np.ndarray]) -> Outcome:
        return self._host.run(model_path, feeds)

    def close(self) -> None:
        pass
