"""The one small interface every runtime adapter implements."""
from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from typing import Any, Mapping

import numpy as np

__all__ = ["Runtime", "HelperCrashed", "HELPER_DTYPES", "stop_helper"]


# the tensor dtypes the helper processes (the Node.js harness, the C host) exchange, by name
HELPER_DTYPES = {"float32": np.float32, "float64": np.float64, "int32": np.int32,
                 "int64": np.int64}


def stop_helper(proc: Any) -> None:
    """End an adapter's helper process: its pipes closed (it leaves when its stdin ends),
    killed if it has not left within 5 s."""
    if proc is None:
        return
    for stream in (proc.stdin, proc.stdout):
        try:
            stream.close()
        except OSError:
            pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class HelperCrashed(RuntimeError):
    """The adapter's helper process (the Node.js harness, the C host) died: a crash, judged
    as an error cell whether it happened while loading or running, as a worker's death is."""


class Runtime(ABC):
    """Lifecycle: available() → load(model) once per model → run(session, feeds) per input.

    Implementations import their runtime inside these methods, never at module import,
    so an absent optional runtime costs nothing and reports itself as unavailable.
    """

    name: str = "?"

    @abstractmethod
    def available(self) -> str | None:
        """None when usable here; otherwise the reason (and how to install it)."""

    @abstractmethod
    def version(self) -> str:
        """The runtime's version string, as matched by known-divergence version ranges."""

    @abstractmethod
    def load(self, model_path: str) -> Any:
        """Prepare a session; raising here means the runtime refuses the model (unsupported)."""

    @abstractmethod
    def run(self, session: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by graph output name; raising here is an error cell."""

    def provider(self, session: Any) -> str:
        """What actually executed the model (device or execution provider)."""
        return self.name

    def placement(self, session: Any) -> dict[str, dict[str, int]] | None:
        """Which provider ran which nodes (op type → provider → node count), if the runtime
        can tell; read after the session's first run."""
        return None

    def placement_problem(self, session: Any) -> str | None:
        """Why the run does not count as a run on this runtime's device, if it does not
        (e.g. the recurrent nodes ran on the CPU in a CUDA cell). None: it counts."""
        return None

    def close(self) -> None:
        """Release what available() or load() started (a helper process); idempotent."""

    def options(self) -> dict[str, Any]:
        """Settings that change numerics (precision, TF32...), recorded in every cell."""
        return {}
