"""The one error type users see: a bad input, told in one line."""
from __future__ import annotations

__all__ = ["ExportError", "Terminated", "terminate_on_sigterm"]


class ExportError(ValueError):
    """A problem with what the user asked for (config, checkpoint, option, path).

    The CLI prints its message as a single line and exits with code 2; the Python
    API lets it propagate. Anything else escaping the exporter is a bug.
    """


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C (every `finally` and context manager runs, so
    work folders, worker logs and child processes are cleaned up), never caught as an error."""


def terminate_on_sigterm() -> None:
    """From now on SIGTERM raises Terminated in the main thread (a plain SIGTERM would end
    the process at once and leave its temporary files behind)."""
    import signal
    import threading

    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
