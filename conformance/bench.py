"""`python -m conformance bench`: latency of the exported model on onnxruntime CPU next to torch
eager, measured side by side in one process, with the machine's SGEMM floor and export times.

Every number is a median of --repeats timed runs after warm-up, at a fixed thread count
(torch.set_num_threads and onnxruntime's intra/inter-op threads), reported with the result.
Each runtime runs the file exported for it (`target="ort"`, `"openvino"`), as a user who
deploys there would export it.
No timing is asserted anywhere: the command prints ratios and writes JSON and plots.
"""
from __future__ import annotations

import json
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["Shape", "GRID", "run_bench"]


@dataclass(frozen=True)
class Shape:
    I: int
    H: int
    layers: int
    dirs: int
    batch: int
    seq: int
    cell: str = "rnn"

    @property
    def label(self) -> str:
        cell = "" if self.cell == "rnn" else f"{self.cell.upper()} "
        return f"{cell}I{self.I} H{self.H} L{self.layers} D{self.dirs} B{self.batch} S{self.seq}"

    def flops(self) -> float:
        """Multiply-adds ×2 of every layer's input projection and recurrence, for each of the
        cell's gate GEMMs (1 for nn.RNN, 4 for nn.LSTM, 3 for nn.GRU)."""
        from exporter.cells import CELLS

        total, i = 0.0, self.I
        for _ in range(self.layers):
            total += 2.0 * self.dirs * self.seq * self.batch * (i + self.H) * self.H
            i = self.dirs * self.H
        return total * CELLS[self.cell].gates


# The grid, as data: the speed issue's four shapes, a sequence sweep and a batch sweep.
_TARGETS = [(64, 128, 1, 1, 1, 100), (64, 128, 2, 2, 8, 100), (256, 512, 1, 1, 64, 50),
            (32, 64, 1, 2, 256, 200)]
GRID = {
    "targets": [Shape(*t, cell=c) for c in ("rnn", "lstm", "gru") for t in _TARGETS],
    "seq_sweep": [Shape(64, 128, 1, 1, 8, s) for s in (1, 4, 16, 64, 256, 1024)],
    "batch_sweep": [Shape(64, 128, 1, 1, b, 100) for b in (1, 8, 64, 256)],
}
SMOKE = {"targets": [Shape(8, 16, 1, 2, 2, 10), Shape(8, 16, 1, 2, 2, 10, cell="lstm"),
                     Shape(8, 16, 1, 1, 2, 10, cell="gru")], "seq_sweep": [Shape(8, 16, 1, 1, 2, s) for s in (1, 8)],
         "batch_sweep": [Shape(8, 16, 1, 1, b, 8) for b in (1, 4)]}


def _median(fn: Callable[[], Any], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


ROUNDS = 2


def _timed(fns: dict[str, Callable[[], Any]], warmup: int, repeats: int,
           rounds: int = ROUNDS) -> dict[str, float]:
    """Each function timed in a block of its own (warm-up, then `repeats` runs), the blocks
    taken in turn for `rounds` rounds; per function the lowest of its round medians.
    Blocks, not alternating runs: torch's OpenMP workers and onnxruntime's thread pool both
    spin after their work, and alternating calls make each pay for the other's spinning
    (microsoft/onnxruntime#13808); rounds keep a slow spell of the machine off one number."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        for key, fn in fns.items():
            t = _median(fn, warmup, repeats)
            best[key] = min(best.get(key, t), t)
    return best


def target_s(torch_s: float, floor_s: float) -> float:
    """A shape's bench target: max(0.5 × torch eager, 1.25 × its SGEMM floor), in seconds."""
    return max(0.5 * torch_s, 1.25 * floor_s)


def sgemm_rate(threads: int, n: int = 1024) -> float:
    """FLOP/s of an n×n×n float32 matrix product in torch at this thread count."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2.0 * n ** 3 / _median(lambda: a @ b, 3, 10)


def _session(model_bytes: bytes, threads: int, profile: bool = False,
             config: dict[str, str] | None = None, level: Any = None) -> Any:
    """An onnxruntime CPU session at `threads` intra-op threads; `config`: session config
    entries, `level`: a graph optimisation level (scripts/perf_variants.py tries both)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.log_severity_level = 3
    for key, value in (config or {}).items():
        so.add_session_config_entry(key, value)
    if level is not None:
        so.graph_optimization_level = level
    if profile:
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tempfile.gettempdir()) / "rnn-bench-profile")
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def _bare_rnn(spec: Any, layers: list) -> bytes:
    """One RNN node and nothing else (inputs X, initial_h; outputs Y, Y_h): the glue baseline."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = layers[0]
    inits = [numpy_helper.from_array(w.W, "W"), numpy_helper.from_array(w.R, "R")]
    names = ["X", "W", "R"]
    if w.B is not None:
        inits.append(numpy_helper.from_array(w.B, "B"))
        names.append("B")
    names += [""] * (4 - len(names)) + ["", "initial_h"]
    node = helper.make_node("RNN", names, ["Y", "Y_h"], hidden_size=spec.hidden_size,
                            direction="bidirectional" if spec.bidirectional else "forward")
    D, H = spec.num_directions, spec.hidden_size
    vi = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)  # noqa: E731
    graph = helper.make_graph([node], "bare", [vi("X", ["s", "b", spec.input_size]),
                                               vi("initial_h", [D, "b", H])],
                              [vi("Y", ["s", D, "b", H]), vi("Y_h", [D, "b", H])], inits)
    opsets = [helper.make_opsetid("", 17)]
    model = helper.make_model(graph, opset_imports=opsets,
                              ir_version=helper.find_min_ir_version_for(opsets))
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _case(shape: Shape, threads: int) -> tuple[Any, Any, dict, Callable[[], None]]:
    """One bench shape: (spec, module with seed-0 weights, onnxruntime feeds, torch forward)."""
    import torch

    from exporter import RNNSpec

    torch.set_num_threads(threads)
    spec = RNNSpec(shape.I, shape.H, shape.layers, bidirectional=shape.dirs == 2,
                   cell=shape.cell)
    module = spec.build_module(seed=0)
    x = np.random.default_rng(0).standard_normal((shape.seq, shape.batch, shape.I), np.float32)
    h0 = np.zeros((shape.layers * shape.dirs, shape.batch, shape.H), np.float32)
    feeds = {"input": x, "h_0": h0, **({"c_0": h0} if shape.cell == "lstm" else {})}
    xt, ht = torch.from_numpy(x), torch.from_numpy(h0)
    hx = (ht, ht.clone()) if shape.cell == "lstm" else ht

    def no_grad_forward() -> None:
        with torch.no_grad():
            module(xt, hx)
    return spec, module, feeds, no_grad_forward


def _thread_settings(threads: int) -> list[int]:
    """onnxruntime intra-op thread counts tried on a machine share of `threads` threads: all of
    them, and one (a Scan of small per-step Gemms can lose more to thread hand-offs than it
    gains from the second core)."""
    return sorted({1, threads}, reverse=True)


def measure(shape: Shape, threads: int, warmup: int, repeats: int, rate: float) -> dict:
    """torch eager vs each lowering on onnxruntime CPU (and the bare RNN node) for one shape,
    at `threads` threads and, for onnxruntime, at each of _thread_settings(threads)."""
    from exporter import export
    from exporter.reading import module_state
    from exporter.weights import pack_layers

    spec, module, feeds, torch_forward = _case(shape, threads)
    row: dict[str, Any] = {**asdict(shape), "label": shape.label, "threads": threads,
                           "flops": shape.flops(), "floor_s": shape.flops() / rate}
    models: dict[str, bytes] = {}
    for lowering in ("rnn", "scan"):
        t0 = time.perf_counter()
        models[lowering] = export(module, lowering=lowering, target="ort").SerializeToString()
        row[f"export_{lowering}_s"] = time.perf_counter() - t0
    fns: dict[str, Callable[[], Any]] = {"torch": torch_forward}
    for n in _thread_settings(threads):
        for lowering, model in models.items():
            sess = _session(model, n)
            fns[_key(lowering, n, threads)] = lambda sess=sess: sess.run(None, feeds)
    if shape.layers == 1 and shape.cell == "rnn":
        bare = _session(_bare_rnn(spec, pack_layers(module_state(module), spec)), threads)
        bfeeds = {"X": feeds["input"], "initial_h": feeds["h_0"]}
        fns["bare_rnn"] = lambda: bare.run(None, bfeeds)
    row.update({f"{k}_s": t for k, t in _timed(fns, warmup, repeats).items()})
    for lowering in models:
        row[f"{lowering}_over_torch"] = row[f"{lowering}_s"] / row["torch_s"]
    if "bare_rnn_s" in row:
        row["rnn_glue_overhead"] = row["rnn_s"] / row["bare_rnn_s"] - 1
    settings = {(lowering, n): row[f"{_key(lowering, n, threads)}_s"]
                for n in _thread_settings(threads) for lowering in models}
    (best_lowering, best_n), best = min(settings.items(), key=lambda kv: kv[1])
    row["best"] = {"lowering": best_lowering, "intra_op_threads": best_n, "s": best}
    row["target_s"] = target_s(row["torch_s"], row["floor_s"])
    row["best_over_target"] = best / row["target_s"]
    if row["best_over_target"] > 1:      # a miss: where its time goes, for NOTES and the table
        row["profile"] = profile(models[best_lowering], best_n, feeds, warmup, repeats)
    return row


def _key(lowering: str, n: int, threads: int) -> str:
    """Row key of a lowering's time at n onnxruntime threads: 'scan' at the row's own thread
    count, 'scan_1t' at one thread on a larger share."""
    return lowering if n == threads else f"{lowering}_{n}t"


# onnxruntime op types by what they spend time on (profile categories)
_CATEGORY = {"Gemm": "gemm", "FusedGemm": "gemm", "MatMul": "gemm", "FusedMatMul": "gemm",
             "RNN": "recurrent op", "LSTM": "recurrent op", "GRU": "recurrent op",
             "Sigmoid": "elementwise", "Tanh": "elementwise", "Relu": "elementwise",
             "Mul": "elementwise", "Add": "elementwise", "Sub": "elementwise"}


def profile(model_bytes: bytes, threads: int, feeds: dict, warmup: int, runs: int) -> dict:
    """onnxruntime's own profile of one session, summed per category (ms per run): GEMMs, the
    recurrent ops' kernels, elementwise gate math, copies (Concat, Slice, Split, Identity,
    Pad, Transpose…), and the Scan's own cost (its span less its body's nodes). Profiling adds
    a fixed cost to every node, so small nodes look larger than they are: the shares, not the
    absolute numbers, are the finding."""
    import onnx

    from .runtimes.ort import kernel_events

    outer = {n.name for n in onnx.load_from_string(model_bytes).graph.node}
    sess = _session(model_bytes, threads, profile=True)
    for _ in range(warmup + runs):
        sess.run(None, feeds)
    path = Path(sess.end_profiling())
    try:
        events = json.loads(path.read_text())
    finally:
        path.unlink()
    starts = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    timed_from = starts[warmup] if len(starts) > warmup else 0     # skip the warm-up runs
    total: dict[str, float] = {}
    body = 0.0
    for e in kernel_events(events):
        if e["ts"] < timed_from:
            continue
        op, ms = e.get("args", {}).get("op_name", ""), e["dur"] / 1e3 / runs
        category = "scan" if op == "Scan" else _CATEGORY.get(op, "copies")
        total[category] = total.get(category, 0.0) + ms
        if e["name"].removesuffix("_kernel_time") not in outer:
            body += ms
    if "scan" in total:                          # the Scan's span includes its body's nodes
        total["scan"] = max(0.0, total["scan"] - body)
    return {k: round(v, 3) for k, v in sorted(total.items())}


def torch_export_times(seqs: list[int], legacy: bool) -> list[dict]:
    """torch.onnx.export of nn.RNN(10, 20, 2, bidirectional, batch_first) vs ours, per seq."""
    import io
    import warnings

    import torch

    from exporter import export
    from exporter.torch_onnx import _quiet

    m = torch.nn.RNN(10, 20, num_layers=2, bidirectional=True, batch_first=True).eval()
    rows = []
    for seq in seqs:
        x = torch.randn(2, seq, 10)
        t0 = time.perf_counter()
        export(m)
        ours = time.perf_counter() - t0
        row = {"seq": seq, "ours_s": ours}
        with _quiet():
            t0 = time.perf_counter()
            prog = torch.onnx.export(m, (x,), dynamo=True, verbose=False)
            row["torch_dynamo_s"] = time.perf_counter() - t0
            row["torch_dynamo_nodes"] = len(prog.model_proto.graph.node)
            if legacy:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t0 = time.perf_counter()
                    torch.onnx.export(m, (x,), io.BytesIO(), dynamo=False)
                    row["torch_legacy_s"] = time.perf_counter() - t0
        rows.append(row)
    return rows


def environment_line() -> dict:
    import onnxruntime
    import torch

    from .environment import _cpu_name
    return {"cpu": _cpu_name(), "machine": platform.machine(), "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}


def _openvino(model_bytes: bytes, threads: int) -> Any:
    """OpenVINO's CPU plugin at its f32 hint (as the conformance adapter), `threads` streams of
    inference threads; None when OpenVINO is not installed."""
    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    model = core.read_model(model_bytes, b"")
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                 "INFERENCE_NUM_THREADS": threads,
                                                 "NUM_STREAMS": 1})
    return compiled.create_infer_request()


def measure_runtimes(shape: Shape, threads: int, warmup: int, repeats: int,
                     runtimes: list[str]) -> dict:
    """Each runtime × lowering on one shape, beside torch: which runtime is fastest."""
    from exporter import export

    _, module, feeds, torch_forward = _case(shape, threads)
    fns: dict[str, Callable[[], Any]] = {"torch": torch_forward}
    for lowering in ("rnn", "scan"):
        for rt in runtimes:             # each runtime runs the file exported for it (--target)
            model = export(module, lowering=lowering, target=rt).SerializeToString()
            if rt == "ort-cpu":
                sess = _session(model, threads)
                fns[f"{rt}/{lowering}"] = lambda sess=sess: sess.run(None, feeds)
            elif rt == "openvino":
                req = _openvino(model, threads)
                if req is not None:
                    fns[f"{rt}/{lowering}"] = lambda req=req: req.infer(feeds)
            else:
                raise ValueError(f"bench runtimes: ort-cpu, openvino; got {rt}")
    times = _timed(fns, warmup, repeats)
    row: dict[str, Any] = {**asdict(shape), "label": shape.label, "threads": threads,
                           "torch_s": times.pop("torch")}
    row.update({f"{k}_over_torch": t / row["torch_s"] for k, t in times.items()})
    return row


def streaming(threads: int, warmup: int, repeats: int, cell: str = "rnn",
              steps: int = 100) -> dict:
    """Batch 1, one step per call with the state fed back (keyword spotting, online models):
    the per-call latency of onnxruntime (each lowering, and the rnn lowering with I/O
    binding) and of torch eager, timed like every other row (_timed)."""
    import torch

    from exporter import RNNSpec, export

    torch.set_num_threads(threads)
    spec = RNNSpec(64, 128, cell=cell)
    module = spec.build_module(seed=0)
    xs = np.random.default_rng(0).standard_normal((steps, 1, 1, 64), np.float32)
    lstm = cell == "lstm"

    def torch_stream() -> None:
        h = (torch.zeros(1, 1, 128), torch.zeros(1, 1, 128)) if lstm else torch.zeros(1, 1, 128)
        with torch.no_grad():
            for x in xs:
                _, h = module(torch.from_numpy(x), h)

    fns: dict[str, Callable[[], Any]] = {"torch": torch_stream}
    for lowering in ("rnn", "scan"):
        sess = _session(export(module, lowering=lowering, target="ort").SerializeToString(),
                        threads)
        names = [o.name for o in sess.get_outputs()]

        def ort_stream(sess: Any = sess, names: list = names) -> None:
            state = {"h_0": np.zeros((1, 1, 128), np.float32)}
            if lstm:
                state["c_0"] = np.zeros((1, 1, 128), np.float32)
            for x in xs:
                out = dict(zip(names, sess.run(names, {"input": x, **state})))
                state = {"h_0": out["h_n"], **({"c_0": out["c_n"]} if lstm else {})}

        fns[lowering] = ort_stream
        if lowering == "rnn":
            fns["rnn_iobinding"] = _bound_stream(sess, xs, lstm)
    times = _timed(fns, warmup, repeats)
    row: dict[str, Any] = {"cell": cell, "threads": threads, "steps": steps,
                           "torch_call_s": times.pop("torch") / steps}
    for key, t in times.items():
        row[f"{key}_call_s"] = t / steps
        row[f"{key}_over_torch"] = row[f"{key}_call_s"] / row["torch_call_s"]
    return row


def _bound_stream(sess: Any, xs: np.ndarray, lstm: bool) -> Callable[[], None]:
    """The streaming loop with onnxruntime's I/O binding: the state stays an OrtValue from one
    call to the next instead of a round trip through numpy."""
    import onnxruntime as ort

    def run() -> None:
        binding = sess.io_binding()
        state = {"h_0": ort.OrtValue.ortvalue_from_numpy(np.zeros((1, 1, 128), np.float32))}
        if lstm:
            state["c_0"] = ort.OrtValue.ortvalue_from_numpy(np.zeros((1, 1, 128), np.float32))
        for name in ("output", "h_n", "c_n")[:3 if lstm else 2]:
            binding.bind_output(name)
        for x in xs:
            binding.bind_cpu_input("input", x)
            for name, value in state.items():
                binding.bind_ortvalue_input(name, value)
            sess.run_with_iobinding(binding)
            outs = binding.get_outputs()                     # output, h_n[, c_n]
            state = {"h_0": outs[1], **({"c_0": outs[2]} if lstm else {})}
    return run


def run_bench(grid: dict[str, list[Shape]], threads: list[int], warmup: int, repeats: int,
              export_seqs: list[int], legacy: bool, progress: Callable[[str], None],
              runtimes: list[str] | None = None) -> dict:
    result: dict[str, Any] = {"environment": environment_line(), "warmup": warmup,
                              "rounds": ROUNDS,
                              "repeats": repeats, "sgemm_flops": {}, "rows": {},
                              "runtimes": [], "streaming": []}
    # Thrown away: a process's first timings run slow (the first row of one run measured
    # torch 1.8× and onnxruntime 1.4× their times for the same shape later in that run).
    measure(next(iter(grid.values()))[0], threads[0], warmup, repeats, rate=1.0)
    for t in threads:
        rate = sgemm_rate(t)
        result["sgemm_flops"][str(t)] = rate
        for part, shapes in grid.items():
            for shape in shapes:
                row = measure(shape, t, warmup, repeats, rate)
                result["rows"].setdefault(part, []).append(row)
                progress(f"{t} thread(s) {shape.label}: torch {row['torch_s'] * 1e3:.3f} ms, "
                         f"rnn {row['rnn_over_torch']:.2f}x, scan {row['scan_over_torch']:.2f}x")
        if runtimes:
            for shape in grid.get("targets", []):
                row = measure_runtimes(shape, t, warmup, repeats, runtimes)
                result["runtimes"].append(row)
                progress(f"{t} thread(s) {shape.label} by runtime: " + ", ".join(
                    f"{k.removesuffix('_over_torch')} {v:.2f}x" for k, v in row.items()
                    if k.endswith("_over_torch")))
        for cell in ("rnn", "lstm", "gru"):
            row = streaming(t, warmup, max(3, repeats // 4), cell)
            result["streaming"].append(row)
            progress(f"{t} thread(s) streaming {cell}: torch {row['torch_call_s'] * 1e6:.1f} us/step,"
                     f" rnn {row['rnn_over_torch']:.2f}x, scan {row['scan_over_torch']:.2f}x")
    result["export"] = torch_export_times(export_seqs, legacy) if export_seqs else []
    return result


def write_json(result: dict, path: Path) -> None:
    path.write_text(json.dumps(result, indent=1))
