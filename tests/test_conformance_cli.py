"""`python -m conformance` through a subprocess: exit codes, reports, check, vectors."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from conformance.cli import main
from exporter import export
from models import SeedRNN

from .helpers import ATOL, RTOL, ROOT, run_module


def conformance(*args: str, cwd: Path):
    return run_module("conformance", *args, cwd=cwd, timeout=600)


def test_smoke_run_with_reports(tmp_path):
    r = conformance("run", "--matrix", "smoke", "--runtimes", "ort-cpu,ort-cuda,onnx-reference",
                    "--report-dir", "rep", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    rep = tmp_path / "rep"
    report = json.loads((rep / "report.json").read_text())
    env = report["environment"]
    for key in ("python", "torch", "onnx", "onnxruntime", "onnxruntime_providers", "cpu", "gpus"):
        assert key in env
    by_rt: dict[str, set] = {}
    for c in report["cells"]:
        by_rt.setdefault(c["runtime"], set()).add(c["status"])
        for key in ("case", "runtime", "status", "max_abs_err", "max_rel_err"):
            assert key in c
    assert by_rt == {"ort-cpu": {"pass", "xfail"}, "ort-cuda": {"unavailable"},
                     "onnx-reference": {"pass", "xfail"}}
    refused = [c for c in report["cells"] if c["runtime"] == "ort-cpu" and c["status"] == "xfail"]
    assert refused and all("-layout1" in c["case"] and c["observed"] == "unsupported"
                           for c in refused)
    suite = ET.parse(rep / "junit.xml").getroot()
    assert int(suite.get("tests")) == len(report["cells"])
    assert len(suite.findall("testcase/skipped")) == report["summary"]["unavailable"] + \
        report["summary"]["xfail"]
    assert "| ort-cpu |" in (rep / "report.md").read_text()
    assert (rep / "heatmap.png").read_bytes()[:4] == b"\x89PNG"


def test_require_cuda_fails_without_cuda(tmp_path):
    r = conformance("run", "--select", "i10h20-l1-tanh-uni-sf-h0in--b1s1", "--runtimes", "ort-cpu",
                    "--require", "ort-cuda", "--report-dir", "rep", "--no-heatmap", cwd=tmp_path)
    assert r.returncode == 1
    assert "required runtime ort-cuda is unavailable" in r.stdout


def test_usage_errors_exit_2(tmp_path):
    one = ["run", "--select", "i10h20-l1-tanh-uni-sf-h0in--b1s1"]
    for args in (["run", "--runtimes", "nope"], ["run", "--matrix", "nope"],
                 ["run", "--shard", "3/2"], ["run", "--shard", "0/3"], ["run", "--shard", "1/0"],
                 ["run", "--shard", "x"], ["check", "missing.onnx", "--checkpoint", "x.pt"],
                 [*one, "--timeout", "0"], [*one, "--timeout", "-1"], [*one, "--timeout", "nan"],
                 [*one, "--timeout", "inf"], [*one, "--start-timeout", "0"], [*one, "-j", "0"],
                 [*one, "--runtimes", "pkg:Typo"], [*one, "--runtimes", "tests.fake_runtimes:Nope"],
                 [*one, "--runtimes", "os:system"], [*one, "--runtimes", "ort-cpu,ort-cpu"]):
        r = conformance(*args, cwd=ROOT)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, args


def test_a_run_that_judged_nothing_exits_1(tmp_path):
    """No case selected, or every runtime unavailable: nothing was checked, never green."""
    for args in (["--select", "no-such-case"],
                 ["--select", "i10h20-l1-tanh-uni-sf-h0in--b1s1", "--runtimes", "ort-cuda"]):
        r = conformance("run", *args, "--report-dir", "rep", "--no-heatmap", cwd=tmp_path)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert "nothing was checked" in r.stdout, args


def _seed_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    torch.manual_seed(0)      # the same weights whichever tests ran before in this process
    seed = SeedRNN().eval()
    ckpt = tmp_path / "seed.pt"
    torch.save(seed.state_dict(), ckpt)
    good = tmp_path / "good.onnx"
    export(seed.rnn1, f=good)
    model = onnx.load(good)
    for init in model.graph.initializer:
        if init.name == "W_l0":
            w = numpy_helper.to_array(init).copy()
            w[0, 3, 4] += 1e-3
            init.CopyFrom(numpy_helper.from_array(w, init.name))
    nudged = tmp_path / "nudged.onnx"
    onnx.save(model, nudged)
    return ckpt, good, nudged


def test_check_tells_right_from_nudged(tmp_path):
    ckpt, good, nudged = _seed_files(tmp_path)
    ok = conformance("check", str(good), "--checkpoint", str(ckpt), "--runtimes", "ort-cpu",
                     "--report-dir", "ok", "--no-heatmap", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = conformance("check", str(nudged), "--checkpoint", str(ckpt), "--runtimes",
                      "ort-cpu,onnx-reference", "--report-dir", "bad", "--no-heatmap",
                      cwd=tmp_path)
    assert bad.returncode == 1
    cells = json.loads((tmp_path / "bad" / "report.json").read_text())["cells"]
    assert {c["status"] for c in cells} == {"fail"}
    assert all(c["silently_wrong"] for c in cells)
    assert "silently wrong" in bad.stdout


def test_vectors_round_trip_and_replay(tmp_path):
    r = conformance("vectors", "--select", "i10h20-l2-relu-bi-sf-h0in--*", "-o", "vec", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "vec" / "i10h20-l2-relu-bi-sf-h0in"
    sets = sorted(folder.glob("test_data_set_*"))
    assert len(sets) == 3
    inp = onnx.TensorProto()
    inp.ParseFromString((sets[0] / "input_0.pb").read_bytes())
    assert inp.name == "input"
    import onnxruntime as ort
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    for data in sets:
        feeds = {}
        for k in range(2):
            t = onnx.TensorProto()
            t.ParseFromString((data / f"input_{k}.pb").read_bytes())
            feeds[t.name] = numpy_helper.to_array(t)
        want = onnx.TensorProto()
        want.ParseFromString((data / "output_0.pb").read_bytes())
        got = sess.run(["output"], feeds)[0]
        np.testing.assert_allclose(got, numpy_helper.to_array(want), atol=ATOL, rtol=RTOL)
    r = conformance("replay", "vec", "--runtimes", "ort-cpu,onnx-reference", "--report-dir",
                    "rep", "--no-heatmap", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    statuses = {c["runtime"]: c["status"] for c in
                json.loads((tmp_path / "rep" / "report.json").read_text())["cells"]}
    assert statuses == {"ort-cpu": "pass", "onnx-reference": "xfail"}


def test_bench_smoke_writes_json_plots_and_table(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- perf:begin -->\nOLD-BLOCK\n<!-- perf:end -->\ntail\n")
    r = conformance("bench", "--smoke", "--threads", "1", "--repeats", "2", "--warmup", "1",
                    "--export-seqs", "", "--out", "perf", "--readme", "README.md", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads((tmp_path / "perf" / "bench.json").read_text())
    row = result["rows"]["targets"][0]
    for key in ("torch_s", "rnn_s", "scan_s", "floor_s", "target_s", "rnn_over_torch",
                "scan_over_torch", "export_rnn_s", "export_scan_s", "threads"):
        assert key in row
    assert result["sgemm_flops"]["1"] > 0
    assert row["best"]["lowering"] in ("rnn", "scan") and row["best"]["intra_op_threads"] == 1
    assert row["best"]["s"] == min(row["rnn_s"], row["scan_s"])
    assert {r["cell"] for r in result["streaming"]} == {"rnn", "lstm", "gru"}
    assert all(r["rnn_call_s"] > 0 and r["torch_call_s"] > 0 and r["rnn_iobinding_call_s"] > 0
               for r in result["streaming"])
    assert {r["cell"] for r in result["runtimes"]} == {"rnn", "lstm", "gru"}
    assert "ort-cpu/scan_over_torch" in result["runtimes"][0]
    for png in ("ratio_to_torch.png", "latency_vs_seq.png"):
        assert (tmp_path / "perf" / png).read_bytes()[:4] == b"\x89PNG"
    text = readme.read_text()
    assert "OLD-BLOCK" not in text and "| cell | shape (I, H, layers" in text
    assert text.endswith("tail\n")
    assert "Streaming: batch 1" in text and "Which runtime and lowering is fastest" in text
    assert "| best setting |" in text and "with I/O binding" in text
    assert "perf/ratio_to_torch.png" in text


def test_bench_times_each_runner_in_blocks_round_after_round():
    """Blocks, not alternation (torch's and onnxruntime's spinning threads would tax each
    other's calls), and every round's block complete: warm-up plus repeats."""
    from conformance.bench import _timed

    calls: list[str] = []
    times = _timed({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                   warmup=1, repeats=3, rounds=2)
    assert calls == ["a"] * 4 + ["b"] * 4 + ["a"] * 4 + ["b"] * 4
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())


def test_bench_profile_sorts_real_onnxruntime_time_into_categories():
    """onnxruntime's own profile of both lowerings: the scan lowering's time lands in GEMMs,
    elementwise gate math, copies and the Scan's own part; the rnn lowering's in the
    recurrent op. No profile file is left behind."""
    import tempfile

    from conformance.bench import Shape, _case, profile

    before = set(Path(tempfile.gettempdir()).glob("rnn-bench-profile*"))
    _, module, feeds, _ = _case(Shape(8, 16, 1, 2, 4, 12, cell="lstm"), 1)
    scan = profile(export(module, lowering="scan").SerializeToString(), 1, feeds, 1, 3)
    assert {"gemm", "elementwise", "copies", "scan"} <= set(scan) and "recurrent op" not in scan
    assert all(v >= 0 for v in scan.values()) and scan["gemm"] > 0
    rnn = profile(export(module).SerializeToString(), 1, feeds, 1, 3)
    assert rnn["recurrent op"] > 0 and "scan" not in rnn
    assert set(Path(tempfile.gettempdir()).glob("rnn-bench-profile*")) == before


def test_check_reports_carry_the_lowering_read_from_the_graph(tmp_path):
    """A scan-lowered file checked by `check` is counted in the support table's scan rows:
    its cells say lowering "scan" (read from its graph), an RNN-op file "rnn"."""
    from exporter.cli import main as exporter_main

    for lowering in ("scan", "rnn"):
        model = tmp_path / f"{lowering}.onnx"
        assert exporter_main(["export", "--lowering", lowering, "-o", str(model)]) == 0
        rep = tmp_path / f"rep-{lowering}"
        assert main(["check", str(model), "--runtimes", "ort-cpu", "--inputs", "2x3",
                     "--report-dir", str(rep), "--no-heatmap"]) == 0
        cells = json.loads((rep / "report.json").read_text())["cells"]
        assert {c["labels"]["lowering"] for c in cells} == {lowering}


def test_preparation_progress_reaches_its_total(tmp_path):
    """torch.onnx exports that are skipped (layout=1 models are ours alone) or shared still
    count as steps, so the bar ends at len(cases) × len(exporters), not short of it."""
    from conformance.matrix import load_matrix, select
    from conformance.runner import prepare_matrix

    cases = select(load_matrix("smoke"), "*layout1*")
    assert cases
    steps: list[int] = []
    prepare_matrix(cases, tmp_path, on_case=steps.append, exporters=("ours", "torch-legacy"))
    assert sum(steps) == 2 * len(cases)


def test_support_running_its_own_matrix_exit_codes(tmp_path):
    """support without --reports runs the matrix itself: 0 and the table written when every
    column ran; 1 and nothing written when a column is unavailable (unless allowed); 1 with the
    table written when a cell fails or errs (the table shows it); 2 for a table it cannot write."""
    matrix = tmp_path / "tiny.toml"
    matrix.write_text('[[t]]\npresets = ["seed"]\ninputs = [[2, 3], [1, 1]]\n')
    out = tmp_path / "support.md"
    common = ["support", "--matrix", str(matrix), "--report-dir", str(tmp_path / "r"),
              "--no-heatmap"]
    assert main([*common, "--runtimes", "ort-cpu", "-o", str(out)]) == 0
    assert "ort-cpu" in out.read_text()
    out.unlink()
    assert main([*common, "--runtimes", "ort-cpu,ort-cuda", "-o", str(out)]) == 1
    assert not out.exists()
    assert main([*common, "--runtimes", "ort-cpu,ort-cuda", "-o", str(out),
                 "--allow-unavailable"]) == 0
    assert "unavailable" in out.read_text()
    out.unlink()
    assert main([*common, "--runtimes", "tests.fake_runtimes:CrashOnSeq1", "-o",
                 str(out)]) == 1            # its seq-1 cell is an error
    assert out.is_file()
    assert main([*common, "--runtimes", "ort-cpu", "-o", str(tmp_path)]) == 2


def test_in_process_runs_give_the_isolated_verdicts(tmp_path):
    from exporter.cli import main as exporter_main

    model = tmp_path / "m.onnx"
    assert exporter_main(["export", "-o", str(model)]) == 0
    cells = []
    for flag in ([], ["--in-process"]):
        rep = tmp_path / f"rep{len(flag)}"
        assert main(["check", str(model), "--runtimes", "ort-cpu,onnx-reference", "--inputs",
                     "2x3", "--report-dir", str(rep), "--no-heatmap", *flag]) == 0
        cells.append([(c["runtime"], c["status"], c["max_abs_err"])
                      for c in json.loads((rep / "report.json").read_text())["cells"]])
    assert cells[0] == cells[1]
