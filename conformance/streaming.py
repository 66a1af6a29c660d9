"""Streaming: a sequence run in chunks, each chunk's state outputs fed to the next chunk's
state inputs — how VAD, keyword-spotting and transducer models run in production. The same
loop runs torch (for the truth) and every runtime (in its worker), so both sides stream the
same way; only the first chunk's state inputs come from the case, the rest from the side's
own previous answer, so errors accumulate as they would in a deployment."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

__all__ = ["Stream", "split_chunks"]

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class Stream:
    chunks: tuple[Feeds, ...]                    # each chunk's feeds (all inputs)
    pairs: tuple[tuple[str, str], ...]           # (state input, state output)
    time_axes: Mapping[str, int]                 # per-step outputs: the axis chunks join on

    def run(self, run_once: Callable[[Feeds], Mapping[str, np.ndarray]]) -> Feeds:
        """Per-step outputs joined along their time axis; every other output (final states,
        per-sequence results) as the last chunk gave it."""
        answers: list[Mapping[str, np.ndarray]] = []
        for k, chunk in enumerate(self.chunks):
            feeds = dict(chunk)
            if k:
                feeds.update({i: np.asarray(answers[-1][o]) for i, o in self.pairs})
            answers.append(run_once(feeds))
        return {name: (np.concatenate([np.asarray(a[name]) for a in answers], axis=axis)
                       if (axis := self.time_axes.get(name)) is not None
                       else np.asarray(answers[-1][name]))
                for name in answers[-1]}


def split_chunks(feeds: Mapping[str, np.ndarray], seq_axes: Mapping[str, int],
                 size: int) -> tuple[Feeds, ...]:
    """`feeds` cut into chunks of `size` steps (the last one shorter) along each input's
    sequence axis; inputs without one (states, per-sequence values) go whole to every chunk."""
    steps = {v.shape[seq_axes[n]] for n, v in feeds.items() if n in seq_axes}
    if len(steps) != 1:
        raise ValueError(f"inputs disagree on the sequence length: {sorted(steps)}")
    total = steps.pop()
    return tuple({n: (np.ascontiguousarray(np.take(v, range(start, min(start + size, total)),
                                                   axis=seq_axes[n]))
                      if n in seq_axes else v) for n, v in feeds.items()}
                 for start in range(0, total, size))
