"""The scan lowering's three ways of running the reverse direction, side by side on
onnxruntime CPU: Slice with step −1 around the Scan (target "none"), Gather over
(n−1) − Range(0, n, 1) (targets "tract" / "any") and the Scan's own scan_input_directions /
scan_output_directions, no flip at all (target "ort").

    python scripts/flip_bench.py [--repeats 30] [--threads 1]

Prints, per bidirectional module and shape, the median time of each file and its ratio to
slice, measured interleaved in one process (rounds alternate the sessions, so a slow spell of
the machine hits all three)."""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
import torch

from exporter import export

CASES = [("nn.RNN(32, 64, bidirectional)", lambda: torch.nn.RNN(32, 64, bidirectional=True)),
         ("nn.LSTM(32, 64, 2 layers, bidirectional)",
          lambda: torch.nn.LSTM(32, 64, num_layers=2, bidirectional=True)),
         ("nn.GRU(32, 64, bidirectional)", lambda: torch.nn.GRU(32, 64, bidirectional=True))]
SHAPES = [(1, 100), (16, 100), (256, 200)]      # (batch, seq)


def _session(model, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    print("| module | batch × seq | slice ms | gather ms (/ slice) "
          "| scan directions ms (/ slice) |")
    print("|---|---|---|---|---|")
    for name, build in CASES:
        torch.manual_seed(0)
        module = build().eval()
        # the initial state is an input, so the three files differ in their flips alone
        sessions = {flip: _session(export(module, lowering="scan", target=target,
                                          verify=False), args.threads)
                    for flip, target in (("slice", "none"), ("gather", "tract"),
                                         ("scan", "ort"))}
        for batch, seq in SHAPES:
            rng = np.random.default_rng(0)
            feeds = {"input": rng.standard_normal((seq, batch, 32), dtype=np.float32)}
            states = ("h_0", "c_0") if isinstance(module, torch.nn.LSTM) else ("h_0",)
            for state in states:
                feeds[state] = rng.standard_normal(
                    (module.num_layers * 2, batch, 64), dtype=np.float32)
            times: dict[str, list[float]] = {f: [] for f in sessions}
            for _ in range(5):                                   # warm-up
                for s in sessions.values():
                    s.run(None, feeds)
            for _ in range(args.repeats):                         # interleaved rounds
                for flip, s in sessions.items():
                    start = time.perf_counter()
                    s.run(None, feeds)
                    times[flip].append(time.perf_counter() - start)
            med = {f: statistics.median(t) * 1e3 for f, t in times.items()}
            print(f"| {name} | {batch} × {seq} | {med['slice']:.3f} | "
                  + " | ".join(f"{med[f]:.3f} ({med[f] / med['slice']:.2f})"
                               for f in ("gather", "scan")) + " |")


if __name__ == "__main__":
    main()
