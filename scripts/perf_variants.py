"""Lowering variants side by side on onnxruntime CPU (issue #28), measured in one process:

    python scripts/perf_variants.py directions [--threads 1,2]   # bidirectional layers
    python scripts/perf_variants.py batch1 [--threads 1,2]       # the batch-1 LSTM
    python scripts/perf_variants.py floors [--threads 1,2]       # misses vs their floors

directions: each bidirectional bench target shape, per cell, the scan lowering with the two
directions as two recurrences in one Scan (today), and as one batched recurrence over a
[2, batch, ·] state (exporter/lowering/scan.py BATCHED_DIRECTIONS).
batch1: nn.LSTM (64, 128, 1, 1, 1, 100): the LSTM op (rnn lowering), the scan lowering with
each gate grouping, an input projection folded into the step ([x_t, h]·[W; R]ᵀ, built here),
onnxruntime session options, and the floors: a Scan whose body is only h·Rᵀ (the per-step
GEMV with the loop around it), the same 100 GEMVs as a torch loop, and as a numpy loop less
the loop's own cost (100 1×1 products): the GEMV alone.
floors: each nn.LSTM / nn.GRU row of docs/perf/bench.json that missed its target, measured
again in one timing with its floors: the time the shape's GEMMs alone take in torch (MKL),
less the cost of issuing the calls; on onnxruntime as the scan lowering stripped to its GEMMs
(projection Gemm + a Scan of h·R); as the scan lowering's own step with nothing around it (the
GEMMs and the cell's gate arithmetic: no per-step output, flips or Concat); and as that step
with the per-step output torch returns (an Identity per step, the Concat of two directions).

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
from conformance.bench import Shape, _case, _session, _timed
from exporter import export

BIDIRECTIONAL = [Shape(64, 128, 2, 2, 8, 100), Shape(32, 64, 1, 2, 256, 200)]


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
                models = {"separate": _scan_model(module, BATCHED_DIRECTIONS=off),
                          "batched": _scan_model(module, BATCHED_DIRECTIONS=on)}
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
            sess = _session(m, n, config=config, level=level)
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
        print(f"  floor: one GEMV [1, 128]·[128, 512] alone (numpy's BLAS): "
              f"{_numpy_gemv_us(warmup, repeats):.2f} µs per step", flush=True)


def _numpy_gemv_us(warmup: int, repeats: int) -> float:
    """µs per h·R of 100 in a numpy loop, less the loop's own cost (100 1×1 products)."""
    rng = np.random.default_rng(0)
    R, h = rng.random((128, 512), np.float32), rng.random((1, 128), np.float32)
    out, a, o1 = np.empty((1, 512), np.float32), np.ones((1, 1), np.float32), np.empty((1, 1),
                                                                                       np.float32)

    def gemvs(x: np.ndarray = h, w: np.ndarray = R, o: np.ndarray = out) -> None:
        for _ in range(100):
            np.dot(x, w, out=o)
    times = _timed({"gemv": gemvs, "loop": lambda: gemvs(a, a, o1)}, warmup, repeats * 5)
    return (times["gemv"] - times["loop"]) / 100 * 1e6


def _gemm_floor(row: dict) -> dict[str, Callable[[], Any]]:
    """The shape's GEMMs alone in torch (MKL), without anything between them: per layer and
    direction the hoisted projection [seq·batch, I_k + 1]·[I_k + 1, G·H] and seq recurrent
    products [batch, H]·[H, G·H] ("gemms"), and the cost of issuing as many calls, measured
    with 1×1 products ("calls"): the floor is gemms − calls."""
    import torch

    from exporter.cells import CELLS

    G, H, B, S = CELLS[row["cell"]].gates, row["H"], row["batch"], row["seq"]
    mats, i = [], row["I"]
    for _ in range(row["layers"]):
        for _ in range(row["dirs"]):
            mats.append((torch.randn(S * B, i + 1), torch.randn(i + 1, G * H),
                         torch.randn(B, H), torch.randn(H, G * H)))
        i = row["dirs"] * H
    outs = [(torch.empty(S * B, G * H), torch.empty(B, G * H)) for _ in mats]
    one, o1 = torch.ones(1, 1), torch.empty(1, 1)

    def gemms() -> None:
        for (x, w, h, r), (xo, ho) in zip(mats, outs):
            torch.mm(x, w, out=xo)
            for _ in range(S):
                torch.mm(h, r, out=ho)

    def calls() -> None:
        for _ in mats:
            torch.mm(one, one, out=o1)
            for _ in range(S):
                torch.mm(one, one, out=o1)
    return {"gemms": gemms, "calls": calls}


def _ort_scan_floor(row: dict) -> tuple[bytes, dict]:
    """The scan lowering stripped to its GEMMs, as an onnxruntime model and its feeds: per
    layer and direction the hoisted projection (one Gemm, [seq·batch, I_k + 1]·[I_k + 1, G·H])
    and a Scan whose step is only h ← (xw_t + h·R)[:, :H] ([batch, H]·[H, G·H]: all gates in
    one product, then a Slice back to h): the GEMMs and the loop with no gate arithmetic."""
    from exporter.cells import CELLS

    f32, rng = TensorProto.FLOAT, np.random.default_rng(0)
    G, H, B, S = CELLS[row["cell"]].gates, row["H"], row["batch"], row["seq"]
    vi = helper.make_tensor_value_info
    c = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
         (("zero", [0]), ("Hs", [H]), ("one", [1]), ("shape3", [S, B, G * H]))]
    body = helper.make_graph(
        [helper.make_node("MatMul", ["h", "R"], ["hr"]), helper.make_node("Add", ["hr", "xw_t"], ["pre"]),
         helper.make_node("Slice", ["pre", "zero", "Hs", "one"], ["h_new"])],
        "step", [vi("h", f32, [B, H]), vi("xw_t", f32, [B, G * H])], [vi("h_new", f32, [B, H])],
        initializer=[numpy_helper.from_array(rng.standard_normal((H, G * H)).astype(np.float32)
                                             * 0.01, "R")] + c[:3])
    nodes, inputs, outputs, inits, feeds, i = [], [], [], list(c), {}, row["I"]
    for k in range(row["layers"]):
        for d in range(row["dirs"]):
            t = f"{k}_{d}"
            inits.append(numpy_helper.from_array(
                rng.standard_normal((i + 1, G * H)).astype(np.float32) * 0.1, f"W{t}"))
            inputs += [vi(f"x{t}", f32, [S * B, i + 1]), vi(f"h{t}", f32, [B, H])]
            feeds[f"x{t}"] = rng.standard_normal((S * B, i + 1)).astype(np.float32)
            feeds[f"h{t}"] = np.zeros((B, H), np.float32)
            nodes += [helper.make_node("Gemm", [f"x{t}", f"W{t}"], [f"xw{t}"]),
                      helper.make_node("Reshape", [f"xw{t}", "shape3"], [f"xw3{t}"]),
                      helper.make_node("Scan", [f"h{t}", f"xw3{t}"], [f"hT{t}"], body=body,
                                       num_scan_inputs=1)]
            outputs.append(vi(f"hT{t}", f32, [B, H]))
        i = row["dirs"] * H
    g = helper.make_graph(nodes, "floor", inputs, outputs, initializer=inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString(), feeds


def _ort_step_floor(row: dict, outputs: bool = False) -> tuple[bytes, dict]:
    """The scan lowering stripped to its GEMMs and the cell's gate arithmetic, as an
    onnxruntime model and its feeds: per layer the hoisted projections (one Gemm per direction
    and gate group, x fed already padded and flat) and one Scan stepping every direction with
    the lowering's own step (exporter/lowering/scan.py _STEPS: a fused Gemm per gate group,
    then the elementwise update, which plain ONNX cannot fuse further on onnxruntime's CPU
    provider) and nothing else: no time flip, no padding of x, no zero-state plumbing.
    `outputs`: also the per-step output torch returns (an Identity per direction and step —
    a state listed twice as a body output is computed wrong by onnxruntime — and, for two
    directions, the Concat into [seq, batch, 2H]). Without outputs: what any plain-ONNX
    lowering of the cell runs at least; with them, what one returning torch's `output` does."""
    from exporter import RNNSpec
    from exporter.lowering.builder import GraphBuilder
    from exporter.weights import LayerWeights

    spec = RNNSpec(row["I"], row["H"], row["layers"], bidirectional=row["dirs"] == 2,
                   cell=row["cell"])
    cell, groups, H, B, S, D = (spec.cell_info, scan.GROUPS[row["cell"]], row["H"],
                                row["batch"], row["seq"], row["dirs"])
    G, rng, f32 = cell.gates, np.random.default_rng(0), TensorProto.FLOAT
    b, inputs, graph_outputs, feeds, i = GraphBuilder(), [], [], {}, row["I"]

    def vi(name: str, dims: list) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, f32, dims)

    def fed(base: str, dims: list) -> str:
        name = b.fresh(base)
        inputs.append(vi(name, dims))
        feeds[name] = (rng.standard_normal(dims, np.float32) if base == "x"
                       else np.zeros(dims, np.float32))
        return name
    for k in range(row["layers"]):
        x = fed("x", [S * B, i + 1])                                    # [seq·batch, I_k + 1]
        w = LayerWeights(W=rng.standard_normal((D, G * H, i + 1), np.float32) * 0.1,
                         R=rng.standard_normal((D, G * H, H), np.float32) * 0.1,
                         B=rng.standard_normal((D, 2 * G * H), np.float32) * 0.1)
        xws, starts = [], []
        for d in range(D):
            for g in groups:
                W_g = b.initializer("W", w.W[d][scan._rows(g, H)])      # [|g|·H, I_k + 1]
                shape = b.const(f"shape_{len(g)}", np.array([S, B, len(g) * H], np.int64))
                xws.append(b.op("Reshape", [b.op("Gemm", [x, W_g], transB=1), shape]))
            starts += [fed(f"{s}0", [B, H]) for s in cell.states]
        sub = b.child()
        st = [{s: sub.fresh(s) for s in cell.states} for _ in range(D)]
        xw = [[sub.fresh("xw") for _ in groups] for _ in range(D)]
        new = [scan._STEPS[cell.name](sub, xw[d], st[d], scan._direction_weights(b, w, d, k, spec),
                                      spec) for d in range(D)]
        ys = [sub.op("Identity", [n["h"]]) for n in new] if outputs else []
        body = helper.make_graph(
            sub.nodes, sub.fresh("step"),
            [vi(st[d][s], [B, H]) for d in range(D) for s in cell.states]
            + [vi(n, [B, len(g) * H]) for d in range(D) for n, g in zip(xw[d], groups)],
            [vi(new[d][s], [B, H]) for d in range(D) for s in cell.states]
            + [vi(y, [B, H]) for y in ys], initializer=sub.initializers)
        finals = [b.fresh(f"{s}T") for _ in range(D) for s in cell.states]
        ys_out = [b.fresh("y") for _ in ys]
        b.node("Scan", starts + xws, finals + ys_out, body=body, num_scan_inputs=len(xws))
        graph_outputs += [vi(f, [B, H]) for f in finals]
        if outputs:
            y = ys_out[0] if D == 1 else b.op("Concat", ys_out, axis=2)
            graph_outputs.append(vi(y, [S, B, D * H]))
        i = D * H
    g = helper.make_graph(b.nodes, "step_floor", inputs, graph_outputs,
                          initializer=b.initializers)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString(), feeds


def floors(threads: list[int], warmup: int, repeats: int) -> None:
    """Per nn.LSTM / nn.GRU target row of docs/perf/bench.json that missed, measured again side
    by side in one timing (the machine's speed drifts between runs): torch eager, the row's
    best setting (lowering and intra-op threads, the file exported for onnxruntime), and its
    floors: the shape's GEMMs alone in torch/MKL (less the calls' cost), on onnxruntime as the
    scan lowering stripped to its GEMMs, as the scan lowering's own step with nothing around
    it (GEMMs + the cell's gate arithmetic), and that step with the per-step output torch
    returns (_ort_step_floor). Each as a multiple of the row's target,
    max(0.5 × torch, 1.25 × the SGEMM floor at the rate measured just before the row)."""
    import json
    from pathlib import Path

    from conformance.bench import sgemm_rate, target_s

    bench = json.loads((Path(__file__).resolve().parents[1] / "docs/perf/bench.json").read_text())
    for row in bench["rows"]["targets"]:
        if row["cell"] == "rnn" or row["best_over_target"] <= 1 or row["threads"] not in threads:
            continue
        n, best = row["best"]["intra_op_threads"], row["best"]["lowering"]
        shape = Shape(row["I"], row["H"], row["layers"], row["dirs"], row["batch"], row["seq"],
                      row["cell"])
        _, module, feeds, torch_forward = _case(shape, row["threads"])
        rate = sgemm_rate(row["threads"])
        sess = _session(export(module, lowering=best, target="ort").SerializeToString(), n)
        fns: dict[str, Callable[[], Any]] = {"torch": torch_forward,
                                            best: lambda: sess.run(None, feeds)}
        fns.update(_gemm_floor(row))
        for key, (model, floor_feeds) in (
                ("ort GEMMs", _ort_scan_floor(row)), ("ort GEMMs + gates", _ort_step_floor(row)),
                ("ort GEMMs + gates + output", _ort_step_floor(row, outputs=True))):
            floor = _session(model, n)
            fns[key] = lambda floor=floor, floor_feeds=floor_feeds: floor.run(None, floor_feeds)
        t = _timed(fns, warmup, repeats)
        t["torch GEMMs"] = t.pop("gemms") - t.pop("calls")
        target = target_s(t["torch"], shape.flops() / rate)
        print(f"{row['label']} @{row['threads']}t: target {target * 1e3:.3f} ms (torch "
              f"{t.pop('torch') * 1e3:.3f}); " + "; ".join(
                  f"{k} {v * 1e3:.3f} ms = {v / target:.2f} × target"
                  + (f" ({n} thread(s))" if k == best else "") for k, v in t.items()),
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("directions", "batch1", "floors"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=30)
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    {"directions": directions, "batch1": batch1, "floors": floors}[a.what](threads, a.warmup,
                                                                            a.repeats)


if __name__ == "__main__":
    main()
