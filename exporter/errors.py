"""The one error type users see: a bad input, told in one line."""
from __future__ import annotations

__all__ = ["ExportError"]


class ExportError(ValueError):
    """A problem with what the user asked for (config, checkpoint, option, path).

    The CLI prints its message as a single line and exits with code 2; the Python
    API lets it propagate. Anything else escaping the exporter is a bug.
    """
