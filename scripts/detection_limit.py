"""The smallest relative weight error the verdicts catch, per default `check` input case.

    python scripts/detection_limit.py [--md docs/verdicts-detection.md]

For a model, every element of one weight tensor (W = weight_ih, R = weight_hh, B = biases) is
scaled by (1 + eps), the file is run on onnxruntime CPU, and the outputs are judged by the
runner's own compare() against torch float32. Printed: the smallest eps on a log grid (1e-7 ..
1e-1, 4 points per decade) that comes out `fail`, per input case of `conformance check`'s
default `--inputs 1x1,3x9,2x64`. Weights are torch's default init, inputs standard normal.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from onnx import numpy_helper  # noqa: E402

from conformance.compare import compare  # noqa: E402
from conformance.truth import make_feeds, torch_truth  # noqa: E402
from exporter import RNNSpec, export  # noqa: E402

MODELS = {"seed nn.RNN(10, 20)": RNNSpec(10, 20),
          "nn.RNN(64, 128, 2, bidirectional)": RNNSpec(64, 128, num_layers=2, bidirectional=True)}
INPUTS = [(1, 1), (3, 9), (2, 64)]
GRID = [10 ** (e / 4) for e in range(-28, -3)]


def _run(model, feeds):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def smallest_caught(spec: RNNSpec, tensor: str, batch: int, seq: int) -> float | None:
    module = spec.build_module(seed=0)
    model = export(module)
    feeds = make_feeds(spec, batch, seq, True, 99)
    f32, f64 = torch_truth(module, feeds)
    for eps in GRID:
        wrong = type(model)()
        wrong.CopyFrom(model)
        for t in wrong.graph.initializer:
            if t.name.startswith(f"{tensor}_l"):
                a = numpy_helper.to_array(t) * np.float32(1 + eps)
                t.CopyFrom(numpy_helper.from_array(a.astype(np.float32), t.name))
        if not compare("ort-cpu", _run(wrong, feeds), f32, f64).passed:
            return eps
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--md", type=Path)
    args = p.parse_args()
    lines = ["| model | weights scaled by (1 + eps) | " + " | ".join(f"{b}x{s}" for b, s in INPUTS)
             + " |", "|---|---|" + "---|" * len(INPUTS)]
    for label, spec in MODELS.items():
        for tensor in ("W", "R", "B"):
            found = [smallest_caught(spec, tensor, b, s) for b, s in INPUTS]
            lines.append(f"| {label} | {tensor} | "
                         + " | ".join("not caught" if e is None else f"{e:.1e}" for e in found)
                         + " |")
            print(lines[-1], flush=True)
    if args.md:
        args.md.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
