"""Targeted onnxruntime checks a torch-exported model cannot reach, run on a GPU machine.

    python scripts/gpu_checks.py --providers cpu,cuda --out checks.json

nn.RNN has one nonlinearity, so this exporter always writes the same activation for both
directions. The ONNX RNN op allows one per direction; onnxruntime's CUDA kernel reads only
`activations[0]` (onnxruntime/core/providers/cuda/rnn/rnn.h). These hand-built bidirectional
nodes, judged against an independent numpy reading of the op (tests/numpy_rnn.py), show what
each provider computes for mixed activations.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

try:
    import torch  # noqa: F401  (before onnxruntime: loads the CUDA libraries it links to)
except ImportError:
    pass

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from tests.numpy_rnn import rnn_op  # noqa: E402

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
CASES = [("Relu", "Tanh"), ("Tanh", "Relu"), ("Tanh", "Tanh"), ("Relu", "Relu")]
I, H, BATCH, SEQ = 5, 7, 3, 6


def mixed_model(acts: tuple[str, str], rng: np.random.Generator):
    W = rng.standard_normal((2, H, I)).astype(np.float32) * 0.5
    R = rng.standard_normal((2, H, H)).astype(np.float32) * 0.5
    B = rng.standard_normal((2, 2 * H)).astype(np.float32) * 0.5
    node = helper.make_node("RNN", ["X", "W", "R", "B", "", "h0"], ["Y", "Y_h"],
                            hidden_size=H, direction="bidirectional", activations=list(acts))
    graph = helper.make_graph(
        [node], "mixed",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [SEQ, BATCH, I]),
         helper.make_tensor_value_info("h0", TensorProto.FLOAT, [2, BATCH, H])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [SEQ, 2, BATCH, H]),
         helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [2, BATCH, H])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R"),
         numpy_helper.from_array(B, "B")])
    opsets = [helper.make_opsetid("", 17)]
    model = helper.make_model(graph, opset_imports=opsets,
                              ir_version=helper.find_min_ir_version_for(opsets))
    return model, (W, R, B)


def check(provider: str, acts: tuple[str, str]) -> dict:
    import onnxruntime as ort
    rng = np.random.default_rng(0)
    model, (W, R, B) = mixed_model(acts, rng)
    x = rng.standard_normal((SEQ, BATCH, I)).astype(np.float32)
    h0 = rng.standard_normal((2, BATCH, H)).astype(np.float32)
    want_y, want_h = rnn_op(x.astype(np.float64), W, R, B, h0.astype(np.float64), list(acts))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if provider != "CPUExecutionProvider":
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    row = {"provider": provider, "activations": list(acts)}
    try:
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=[provider])
        y, yh = sess.run(None, {"X": x, "h0": h0})
    except Exception as exc:
        return {**row, "status": "refused", "message": str(exc).splitlines()[0][:300]}
    err = {f"dir{d}": float(max(np.abs(y[:, d] - want_y[:, d]).max(),
                                np.abs(yh[d] - want_h[d]).max())) for d in range(2)}
    ok = max(err.values()) < 1e-4
    # What a provider that read only activations[0] would compute, for the diagnosis:
    first_y, _ = rnn_op(x.astype(np.float64), W, R, B, h0.astype(np.float64), [acts[0]] * 2)
    as_first = float(np.abs(y - first_y).max())
    return {**row, "status": "pass" if ok else "fail", "max_abs_err_per_direction": err,
            "max_abs_err_vs_first_activation_everywhere": as_first}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--providers", default="cpu,cuda")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    import onnxruntime as ort
    rows = [check(PROVIDERS[name], acts) for name in args.providers.split(",")
            for acts in CASES]
    for r in rows:
        print(json.dumps(r))
    args.out.write_text(json.dumps({"onnxruntime": ort.__version__, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
