"""Latency of the exported model on onnxruntime vs torch eager, side by side in one process.

    python scripts/gpu_bench.py --device cuda --out bench.json --md bench.md

On --device cuda: torch CUDA eager vs onnxruntime's CUDA provider, both with TF32 off (as the
float32 conformance runs) and both with TF32 on; onnxruntime measured twice: with numpy I/O
(host copies included, what `session.run` users get) and with I/O binding (device-resident
tensors, like torch). On --device cpu: torch CPU eager vs onnxruntime CPU (a dry run of the
script). Each number is the median of --repeats runs after --warmup runs.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402  (before onnxruntime: loads the CUDA libraries it links to)

from exporter import RNNSpec, export  # noqa: E402

# (input_size, hidden_size, layers, directions, batch, seq): the shapes of the speed issue
SHAPES = [(64, 128, 1, 1, 1, 100), (64, 128, 2, 2, 8, 100), (256, 512, 1, 1, 64, 50),
          (32, 64, 1, 2, 256, 200)]
SEQ_SWEEP = [(64, 128, 1, 1, 8, s) for s in (1, 4, 16, 64, 256, 1024)]
BATCH_SWEEP = [(64, 128, 1, 1, b, 100) for b in (1, 8, 64, 256)]


def _median(fn, warmup: int, repeats: int, sync) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _session(model_bytes: bytes, device: str, tf32: bool, tmp: Path):
    """A session made by the conformance adapter (strict CUDA first, fallback judged by the
    profile), warmed once so its placement is read; returns (InferenceSession, placement)."""
    from conformance.runtimes.ort import OrtCpu, OrtCuda, OrtCudaTF32
    path = tmp / "model.onnx"
    path.write_bytes(model_bytes)
    rt = (OrtCudaTF32() if tf32 else OrtCuda()) if device == "cuda" else OrtCpu()
    sess = rt.load(str(path))
    if device == "cpu":   # the adapter leaves threads to onnxruntime; one, like torch here
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        sess.placement = {}
    return rt, sess


def measure(shape, device: str, lowering: str, tf32: bool, warmup: int, repeats: int,
            tmp: Path) -> dict:
    I, H, L, D, B, S = shape
    spec = RNNSpec(I, H, num_layers=L, bidirectional=D == 2)
    module = spec.build_module(seed=0)
    t_export = time.perf_counter()
    model = export(module, lowering=lowering).SerializeToString()
    t_export = time.perf_counter() - t_export
    x = np.random.default_rng(0).standard_normal((S, B, I), dtype=np.float32)
    h0 = np.zeros((L * D, B, H), np.float32)
    dev = torch.device(device)
    module = module.to(dev)
    xt, ht = torch.from_numpy(x).to(dev), torch.from_numpy(h0).to(dev)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
    with torch.no_grad():
        t_torch = _median(lambda: module(xt, ht), warmup, repeats, sync)
        want = [t.cpu().numpy() for t in module(xt, ht)]
    feeds = {"input": x, "h_0": h0}
    rt, holder = _session(model, device, tf32, tmp)
    got = rt.run(holder, feeds)
    problem = rt.placement_problem(holder)
    sess = holder.session
    err = max(float(np.abs(got[k] - w).max()) for k, w in zip(("output", "h_n"), want))
    t_ort = _median(lambda: sess.run(None, feeds), warmup, repeats, lambda: None)
    row = {"shape": dict(zip("I H layers dirs batch seq".split(), shape)), "lowering": lowering,
           "tf32": tf32, "torch_s": t_torch, "ort_s": t_ort, "ort_over_torch": t_ort / t_torch,
           "export_s": t_export, "max_abs_err": err, "placement": holder.placement,
           "placement_problem": problem, "strict": holder.strict}
    if device == "cuda":
        binding = sess.io_binding()
        binding.bind_input("input", "cuda", 0, np.float32, list(x.shape), xt.data_ptr())
        binding.bind_input("h_0", "cuda", 0, np.float32, list(h0.shape), ht.data_ptr())
        binding.bind_output("output", "cuda")
        binding.bind_output("h_n", "cuda")
        t_bind = _median(lambda: sess.run_with_iobinding(binding), warmup, repeats, sync)
        row.update(ort_iobinding_s=t_bind, ort_iobinding_over_torch=t_bind / t_torch)
    return row


def _where(row: dict) -> str:
    from conformance.runtimes.ort import RECURRENT_OPS
    provs = {p for op, by in (row.get("placement") or {}).items() if op in RECURRENT_OPS
             for p in by}
    return ", ".join(sorted(p.replace("ExecutionProvider", "") for p in provs)) or "–"


def _markdown(result: dict) -> str:
    env = result["environment"]
    lines = [f"# onnxruntime vs torch eager on {result['device']}", "",
             f"{env['gpu'] or env['cpu']}; torch {env['torch']}, onnxruntime {env['onnxruntime']}; "
             f"median of {result['repeats']} runs after {result['warmup']} warm-up runs. "
             "Ratios below 1 mean onnxruntime is faster.", "",
             "| I | H | layers | dirs | batch | seq | lowering | TF32 | torch ms | ort ms | "
             "ort/torch | ort io-binding ms | io-binding/torch | recurrent nodes on |",
             "|" + "---|" * 14]
    for r in result["rows"]:
        s = r["shape"]
        lines.append(f"| {s['I']} | {s['H']} | {s['layers']} | {s['dirs']} | {s['batch']} | "
                     f"{s['seq']} | {r['lowering']} | {'on' if r['tf32'] else 'off'} | "
                     f"{r['torch_s'] * 1e3:.3f} | "
                     f"{r['ort_s'] * 1e3:.3f} | {r['ort_over_torch']:.2f} | "
                     + (f"{r['ort_iobinding_s'] * 1e3:.3f} | {r['ort_iobinding_over_torch']:.2f} |"
                        if "ort_iobinding_s" in r else "– | – |")
                     + f" {_where(r)} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--md", type=Path)
    p.add_argument("--quick", action="store_true", help="the four shapes only")
    p.add_argument("--lowerings", default="rnn,scan", help="comma-separated (default rnn,scan)")
    args = p.parse_args()
    import onnxruntime as ort
    if args.device == "cpu":
        torch.set_num_threads(1)
    grid = SHAPES if args.quick else SHAPES + SEQ_SWEEP + BATCH_SWEEP
    tf32s = [False, True] if args.device == "cuda" else [False]
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as tmp:
        for shape in grid:
            for lowering in args.lowerings.split(","):
                for tf32 in tf32s:
                    rows.append(measure(shape, args.device, lowering, tf32, args.warmup,
                                        args.repeats, Path(tmp)))
                    r = rows[-1]
                    print(f"{shape} {lowering} tf32={tf32}: torch {r['torch_s'] * 1e3:.3f} ms, "
                          f"ort {r['ort_s'] * 1e3:.3f} ms ({r['ort_over_torch']:.2f}x) "
                          f"err {r['max_abs_err']:.1e} on {_where(r)}", flush=True)
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else None
    result = {"device": args.device, "warmup": args.warmup, "repeats": args.repeats,
              "environment": {"torch": torch.__version__, "onnxruntime": ort.__version__,
                              "gpu": gpu, "cpu": platform.processor() or platform.machine(),
                              "cuda": torch.version.cuda},
              "rows": rows}
    args.out.write_text(json.dumps(result, indent=1))
    if args.md:
        args.md.write_text(_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
