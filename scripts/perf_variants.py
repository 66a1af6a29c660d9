"""Lowering variants side by side on onnxruntime CPU (issue #28), measured in one process:

    python scripts/perf_variants.py directions [--threads 1,2]   # bidirectional layers
    python scripts/perf_variants.py batch1 [--threads 1,2]       # the batch-1 LSTM

directions: each bidirectional bench target shape, per cell, the scan lowering with the two
directions as two recurrences in one Scan (today), and as one batched recurrence over a
[2, batch, ·] state (exporter/lowering/scan.py BATCHED_DIRECTIONS) with its projections
built either way (BATCHED_PROJECTION "broadcast" / "transpose").
batch1: nn.LSTM (64, 128, 1, 1, 1, 100): the LSTM op (rnn lowering), the scan lowering with
each gate grouping, an input projection folded into the step ([x_t, h]·[W; R]ᵀ, built here),
onnxruntime session options, and the floors: a Scan whose body is only h·Rᵀ (the per-step
GEMV with the loop around it), and the same 100 GEMVs as one torch loop.

Every variant timed in blocks, two rounds, lowest round median (conformance/bench.py
_timed); printed as ms and as a ratio to the first variant of its row. No assertion: the
numbers go to docs/perf/NOTES.md.
"""
from __future__ import annotations

import argparse
import contextlib
from typing import Any, Callable, Iterator

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import exporter.lowering.scan as scan
from conformance.bench import Shape, _case, _timed
from exporter import export

BIDIRECTIONAL = [Shape(64, 128, 2, 2, 8, 100), Shape(32, 64, 1, 2, 256, 200)]


def _session(model: bytes, threads: int, config: dict[str, str] | None = None,
             level: Any = None) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.log_severity_level = 3
    for k, v in (config or {}).items():
        so.add_session_config_entry(k, v)
    if level is not None:
        so.graph_optimization_level = level
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


@contextlib.contextmanager
def _scan_settings(**values: Any) -> Iterator[None]:
    """Module-level lowering tables set for one export, then restored."""
    old = {k: getattr(scan, k) for k in values}
    for k, v in values.items():
        setattr(scan, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(scan, k, v)


def _scan_model(module: Any, **settings: Any) -> bytes:
    with _scan_settings(**settings):
        return export(module, lowering="scan").SerializeToString()


def _print_row(label: str, threads: int, times: dict[str, float]) -> None:
    first = next(iter(times.values()))
    cols = "  ".join(f"{k} {t * 1e3:.3f} ms ({t / first:.2f})" for k, t in times.items())
    print(f"{label} @{threads}t: {cols}", flush=True)


def directions(threads: list[int], warmup: int, repeats: int) -> None:
    for cell in ("rnn", "lstm", "gru"):
        for base in BIDIRECTIONAL:
            shape = Shape(base.I, base.H, base.layers, base.dirs, base.batch, base.seq, cell)
            for n in threads:
                _, module, feeds, torch_forward = _case(shape, n)
                on = dict(scan.BATCHED_DIRECTIONS, **{cell: True})
                off = dict(scan.BATCHED_DIRECTIONS, **{cell: False})
                models = {
                    "separate": _scan_model(module, BATCHED_DIRECTIONS=off),
                    "batched-broadcast": _scan_model(module, BATCHED_DIRECTIONS=on,
                                                     BATCHED_PROJECTION="broadcast"),
                    "batched-transpose": _scan_model(module, BATCHED_DIRECTIONS=on,
                                                     BATCHED_PROJECTION="transpose")}
                fns: dict[str, Callable[[], Any]] = {}
                for k, m in models.items():
                    sess = _session(m, n)
                    fns[k] = lambda sess=sess: sess.run(None, feeds)
                fns["torch"] = torch_forward
                _print_row(shape.label, n, _timed(fns, warmup, repeats))


def _folded_lstm(module: Any) -> bytes:
    """nn.LSTM (1 layer, 1 direction) as a Scan over x whose step is one Gemm of [x_t, h]
    [batch, I + H] with [W; R] (bias as C), then Split into i, o, f | c̃ as the scan lowering
    does; torch's gate order i, f, g, o is reordered to ONNX's i, o, f, c̃."""
    sd = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    H = module.hidden_size
    order = np.concatenate([np.arange(0, H), np.arange(3 * H, 4 * H), np.arange(H, 2 * H),
                            np.arange(2 * H, 3 * H)])                 # i, o, f, c̃ rows
    WR = np.concatenate([sd["weight_ih_l0"][order], sd["weight_hh_l0"][order]], axis=1).T
    bias = (sd["bias_ih_l0"] + sd["bias_hh_l0"])[order]
    body = [helper.make_node("Concat", ["x_t", "h"], ["xh"], axis=1),
            helper.make_node("Gemm", ["xh", "WR", "bias"], ["pre"]),            # [B, 4H]
            helper.make_node("Split", ["pre", "split_sizes"], ["pre_s", "pre_c"], axis=1),
            helper.make_node("Sigmoid", ["pre_s"], ["s"]),
            helper.make_node("Split", ["s", "split3"], ["i", "o", "f"], axis=1),
            helper.make_node("Tanh", ["pre_c"], ["c_hat"]),
            helper.make_node("Mul", ["f", "c"], ["fc"]),
            helper.make_node("Mul", ["i", "c_hat"], ["ic"]),
            helper.make_node("Add", ["fc", "ic"], ["c_new"]),
            helper.make_node("Tanh", ["c_new"], ["tc"]),
            helper.make_node("Mul", ["o", "tc"], ["h_new"]),
            helper.make_node("Identity", ["h_new"], ["y"])]
    f32 = TensorProto.FLOAT

    def vi(name: str, dims: list) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, f32, dims)
    inits = [numpy_helper.from_array(WR.astype(np.float32), "WR"),
             numpy_helper.from_array(bias.astype(np.float32), "bias"),
             numpy_helper.from_array(np.array([3 * H, H], np.int64), "split_sizes"),
             numpy_helper.from_array(np.array([H, H, H], np.int64), "split3")]
    g_body = helper.make_graph(body, "step", [vi("h", ["B", H]), vi("c", ["B", H]),
                                              vi("x_t", ["B", module.input_size])],
                               [vi("h_new", ["B", H]), vi("c_new", ["B", H]),
                                vi("y", ["B", H])], initializer=inits)
    nodes = [helper.make_node("Squeeze", ["h_0", "ax0"], ["h0"]),
             helper.make_node("Squeeze", ["c_0", "ax0"], ["c0"]),
             helper.make_node("Scan", ["h0", "c0", "input"], ["hT", "cT", "output"],
                              body=g_body, num_scan_inputs=1)]
    g = helper.make_graph(nodes, "folded", [vi("input", ["S", "B", module.input_size]),
                                            vi("h_0", [1, "B", H]), vi("c_0", [1, "B", H])],
                          [vi("output", ["S", "B", H]), vi("hT", ["B", H]), vi("cT", ["B", H])],
                          initializer=[numpy_helper.from_array(np.array([0], np.int64), "ax0")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _gemv_scan(H: int, G: int) -> bytes:
    """The floor of any scan lowering: a Scan whose step is only h ← (h·R)[:, :H] for a
    [H, G·H] R, i.e. the per-step GEMV and the loop around it."""
    f32 = TensorProto.FLOAT
    R = np.random.default_rng(0).standard_normal((H, G * H)).astype(np.float32) * 0.01
    body = [helper.make_node("MatMul", ["h", "R"], ["hr"]),
            helper.make_node("Slice", ["hr", "zero", "Hs", "one"], ["h_new"]),
            helper.make_node("Identity", ["h_new"], ["y"])]
    inits = [numpy_helper.from_array(R, "R"),
             numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([H], np.int64), "Hs"),
             numpy_helper.from_array(np.array([1], np.int64), "one")]
    vi = helper.make_tensor_value_info
    g_body = helper.make_graph(body, "step", [vi("h", f32, ["B", H]), vi("x_t", f32, ["B", 64])],
                               [vi("h_new", f32, ["B", H]), vi("y", f32, ["B", H])],
                               initializer=inits)
    nodes = [helper.make_node("Squeeze", ["h_0", "ax0"], ["h0"]),
             helper.make_node("Scan", ["h0", "input"], ["hT", "output"], body=g_body,
                              num_scan_inputs=1)]
    g = helper.make_graph(nodes, "gemv", [vi("input", f32, ["S", "B", 64]),
                                          vi("h_0", f32, [1, "B", H])],
                          [vi("output", f32, ["S", "B", H]), vi("hT", f32, ["B", H])],
                          initializer=[numpy_helper.from_array(np.array([0], np.int64), "ax0")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def batch1(threads: list[int], warmup: int, repeats: int) -> None:
    import onnxruntime as ort
    import torch

    shape = Shape(64, 128, 1, 1, 1, 100, "lstm")
    for n in threads:
        _, module, feeds, torch_forward = _case(shape, n)
        rnn = export(module, lowering="rnn").SerializeToString()
        variants: dict[str, tuple[bytes, dict, Any]] = {
            "lstm-op": (rnn, {}, None),
            "scan σ(iof)|tanh": (_scan_model(module), {}, None),
            "scan 1 gemm": (_scan_model(module, GROUPS=dict(scan.GROUPS, lstm=((0, 1, 2, 3),))),
                            {}, None),
            "scan 4 gemms": (_scan_model(module, GROUPS=dict(scan.GROUPS,
                                                             lstm=((0,), (1,), (2,), (3,)))),
                             {}, None),
            "scan folded": (_folded_lstm(module), {}, None),
            "lstm-op no-spin": (rnn, {"session.intra_op.allow_spinning": "0"}, None),
            "lstm-op daz": (rnn, {"session.set_denormal_as_zero": "1"}, None),
            "lstm-op basic-opt": (rnn, {}, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
            "scan no-spin": (_scan_model(module), {"session.intra_op.allow_spinning": "0"},
                             None),
            "floor: scan of h·R": (_gemv_scan(128, 4), {}, None),
        }
        fns: dict[str, Callable[[], Any]] = {}
        for k, (m, config, level) in variants.items():
            sess = _session(m, n, config, level)
            f = {i.name: feeds[i.name] if i.name in feeds else np.ones((1, 128), np.float32)
                 for i in sess.get_inputs()}
            fns[k] = lambda sess=sess, f=f: sess.run(None, f)
        torch.set_num_threads(n)
        R = torch.randn(128, 512)
        h = torch.randn(1, 128)

        def torch_gemvs() -> None:
            for _ in range(100):
                torch.mm(h, R)
        fns["floor: 100 torch h·R"] = torch_gemvs
        fns["torch"] = torch_forward
        _print_row(shape.label, n, _timed(fns, warmup, repeats))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("directions", "batch1"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=30)
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    {"directions": directions, "batch1": batch1}[a.what](threads, a.warmup, a.repeats)


if __name__ == "__main__":
    main()
