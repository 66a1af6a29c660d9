"""Plots and Markdown for `python -m conformance bench` (regenerated, never typed)."""
from __future__ import annotations

from pathlib import Path

__all__ = ["write_plots", "markdown", "update_readme"]

README_BEGIN, README_END = "<!-- perf:begin -->", "<!-- perf:end -->"


def write_plots(result: dict, out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    sweep = result["rows"].get("seq_sweep", [])
    if sweep:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for threads in sorted({r["threads"] for r in sweep}):
            rows = [r for r in sweep if r["threads"] == threads]
            seqs = [r["seq"] for r in rows]
            for key, label, style in (("torch_s", "torch eager", "-"), ("rnn_s", "ORT, rnn lowering", "--"),
                                      ("scan_s", "ORT, scan lowering", ":")):
                ax.plot(seqs, [r[key] * 1e3 for r in rows], style, marker="o",
                        label=f"{label} ({threads} thr)")
        r0 = sweep[0]
        ax.set(xscale="log", yscale="log", xlabel="sequence length", ylabel="latency (ms)",
               title=f"nn.RNN I={r0['I']} H={r0['H']} batch={r0['batch']}: latency vs sequence length")
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        path = out / "latency_vs_seq.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    targets = result["rows"].get("targets", [])
    if targets:
        fig, ax = plt.subplots(figsize=(max(8, 0.55 * len(targets) + 2), 4.8))
        labels = [f"{r.get('cell', 'rnn')} {r['layers']}×{r['dirs']} B{r['batch']}\n"
                  f"H{r['H']} S{r['seq']} · {r['threads']}t" for r in targets]
        xs = range(len(targets))
        ax.bar([x - 0.2 for x in xs], [r["rnn_over_torch"] for r in targets], 0.4, label="rnn lowering")
        ax.bar([x + 0.2 for x in xs], [r["scan_over_torch"] for r in targets], 0.4, label="scan lowering")
        ax.scatter(list(xs), [r["target_s"] / r["torch_s"] for r in targets], marker="_", s=600,
                   color="black", label="target: max(0.5, 1.25·SGEMM floor) / torch")
        ax.scatter(list(xs), [r["best"]["s"] / r["torch_s"] for r in targets], marker="o", s=18,
                   color="red", zorder=3,
                   label="best setting (either lowering, all threads or one)")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xticks(list(xs), labels, fontsize=6, rotation=90)
        ax.set(ylabel="ORT time / torch eager time", title="onnxruntime CPU relative to torch eager (lower is faster)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / "ratio_to_torch.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _ms(s: float) -> str:
    return f"{s * 1e3:.3f}"


def _shape(r: dict) -> str:
    return f"{r['I']}, {r['H']}, {r['layers']}, {r['dirs']}, {r['batch']}, {r['seq']}"


def _setting(r: dict) -> str:
    """The fastest lowering and onnxruntime thread count of a row, e.g. 'scan, 1 thread'."""
    best = r["best"]
    n = best["intra_op_threads"]
    name = "rnn-op" if best["lowering"] == "rnn" else best["lowering"]
    return f"{name}, {n} thread{'s' if n > 1 else ''}"


def markdown(result: dict, command: str, image_prefix: str = "") -> str:
    env = result["environment"]
    rates = ", ".join(f"{float(v) / 1e9:.0f} GFLOP/s at {k} thread(s)"
                      for k, v in result["sgemm_flops"].items())
    lines = [f"Measured by `{command}` on {env['cpu']} ({env['machine']}), python {env['python']}, "
             f"torch {env['torch']}, onnxruntime {env['onnxruntime']}; each number the lowest of "
             f"{result.get('rounds', 1)} round(s)' medians of {result['repeats']} runs after "
             f"{result['warmup']} warm-up runs, each runner timed in a block of its own; SGEMM "
             f"rate {rates}. Ratios are onnxruntime time / torch eager time, measured side by "
             "side in one process (below 1: faster than torch). *Best setting*: the fastest "
             "lowering and onnxruntime intra-op thread count (all the row's threads, or one) — "
             "the thread setting this bench recommends for the shape; the target is "
             "max(0.5 × torch, 1.25 × the shape's SGEMM floor) and compares against it.", "",
             "| cell | shape (I, H, layers, dirs, batch, seq) | threads | torch ms | "
             "rnn-op ms (×torch) | scan ms (×torch) | best setting | SGEMM floor ms | target ms | "
             "best / target | rnn glue vs bare RNN node |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    targets = result["rows"].get("targets", [])
    for r in targets:
        glue = (f"{r['rnn_glue_overhead'] * 100:+.1f}%" if "rnn_glue_overhead" in r
                else "– (2 layers)" if r.get("cell", "rnn") == "rnn" else "–")
        ok = "✅" if r["best_over_target"] <= 1 else "❌"
        lines.append(f"| {r.get('cell', 'rnn')} | {_shape(r)} | "
                     f"{r['threads']} | {_ms(r['torch_s'])} | {_ms(r['rnn_s'])} ({r['rnn_over_torch']:.2f}) | "
                     f"{_ms(r['scan_s'])} ({r['scan_over_torch']:.2f}) | {_setting(r)} | "
                     f"{_ms(r['floor_s'])} | {_ms(r['target_s'])} | {ok} {r['best_over_target']:.2f} | {glue} |")
    misses = [r for r in targets if "profile" in r]
    if misses:
        lines += ["", "Where the time goes in each miss: onnxruntime's profile of the best setting, "
                      "ms per run (profiling adds a fixed cost per node, so it inflates small "
                      "nodes: read the shares). *Scan's own*: the Scan's span less its body's nodes.",
                  "", "| cell | shape | threads | setting | GEMM | recurrent op | elementwise | "
                      "copies | Scan's own | measured ms | target ms |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in misses:
            p = r["profile"]
            parts = " | ".join(f"{p[k]:.2f}" if k in p else "–" for k in
                               ("gemm", "recurrent op", "elementwise", "copies", "scan"))
            lines.append(f"| {r.get('cell', 'rnn')} | {_shape(r)} | {r['threads']} | "
                         f"{_setting(r)} | {parts} | {_ms(r['best']['s'])} | {_ms(r['target_s'])} |")
    for part, title in (("batch_sweep", "Batch sweep"), ("seq_sweep", "Sequence sweep")):
        rows = result["rows"].get(part, [])
        if not rows:
            continue
        lines += ["", f"{title} (I={rows[0]['I']}, H={rows[0]['H']}, 1 layer):", "",
                  "| batch | seq | threads | torch ms | rnn ×torch | scan ×torch |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['batch']} | {r['seq']} | {r['threads']} | {_ms(r['torch_s'])} | "
                  f"{r['rnn_over_torch']:.2f} | {r['scan_over_torch']:.2f} |" for r in rows]
    exports = [r for part in result["rows"].values() for r in part]
    if exports:
        worst = max(max(r["export_rnn_s"], r["export_scan_s"]) for r in exports)
        lines += ["", f"Export time of this exporter, worst over the grid: {worst * 1e3:.1f} ms "
                      "(independent of sequence length: the graph does not depend on it)."]
    if result.get("export"):
        lines += ["", "Export of nn.RNN(10, 20, num_layers=2, bidirectional=True, batch_first=True):", "",
                  "| example seq | this exporter ms | torch.onnx dynamo s (nodes) | torch.onnx legacy s |",
                  "|---|---|---|---|"]
        for r in result["export"]:
            legacy = f"{r['torch_legacy_s']:.2f}" if "torch_legacy_s" in r else "–"
            lines.append(f"| {r['seq']} | {r['ours_s'] * 1e3:.1f} | {r['torch_dynamo_s']:.2f} "
                         f"({r['torch_dynamo_nodes']}) | {legacy} |")
    if result.get("runtimes"):
        keys = [k for k in result["runtimes"][0] if k.endswith("_over_torch")]
        lines += ["", "Which runtime and lowering is fastest (time / torch eager; OpenVINO at its "
                      "f32 hint, one stream of `threads` threads; **bold** = fastest):", "",
                  "| cell | shape (I, H, layers, dirs, batch, seq) | threads | "
                  + " | ".join(k.removesuffix("_over_torch") for k in keys) + " |",
                  "|---|---|---|" + "---|" * len(keys)]
        for r in result["runtimes"]:
            best = min(r[k] for k in keys)
            cells = [f"**{r[k]:.2f}**" if r[k] == best else f"{r[k]:.2f}" for k in keys]
            lines.append(f"| {r.get('cell', 'rnn')} | {r['I']}, {r['H']}, {r['layers']}, "
                         f"{r['dirs']}, {r['batch']}, {r['seq']} | {r['threads']} | "
                         + " | ".join(cells) + " |")
    if result.get("streaming"):
        lines += ["", "Streaming: batch 1, one step per call with the state fed back "
                      "(I=64, H=128), per-call latency:", "",
                  "| cell | threads | torch µs/step | rnn-op µs (×torch) | "
                  "rnn-op with I/O binding µs (×torch) | scan µs (×torch) |",
                  "|---|---|---|---|---|---|"]
        for r in result["streaming"]:
            lines.append(f"| {r['cell']} | {r['threads']} | {r['torch_call_s'] * 1e6:.1f} | "
                         f"{r['rnn_call_s'] * 1e6:.1f} ({r['rnn_over_torch']:.2f}) | "
                         f"{r['rnn_iobinding_call_s'] * 1e6:.1f} "
                         f"({r['rnn_iobinding_over_torch']:.2f}) | "
                         f"{r['scan_call_s'] * 1e6:.1f} ({r['scan_over_torch']:.2f}) |")
    lines += ["", f"![ratio to torch]({image_prefix}ratio_to_torch.png)",
              f"![latency vs sequence length]({image_prefix}latency_vs_seq.png)"]
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, block: str) -> None:
    from .support import replace_block

    replace_block(readme, README_BEGIN, README_END, block)
