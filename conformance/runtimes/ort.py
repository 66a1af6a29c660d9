"""onnxruntime on its CPU and CUDA execution providers, with placement evidence.

What onnxruntime guarantees, and what the CUDA adapter therefore relies on:

- `session.get_providers()` always lists CPUExecutionProvider after the providers asked for,
  even when only CUDA was asked for: its presence proves nothing either way.
- `session.disable_cpu_ep_fallback=1` makes session creation fail when any node would be
  assigned to the CPU provider. That is the strict mode, and it is tried first.
- onnxruntime's CUDA provider deliberately leaves small shape computations (Shape, Gather,
  Concat feeding a Reshape, ...) on the CPU. A model with such nodes (the scan lowering has
  them) is refused in strict mode although its compute would run on CUDA. So when the strict
  load is refused only for CPU placement, the model is loaded again with fallback allowed,
  and the cell is judged from onnxruntime's own profile: it can pass only if every recurrent
  compute node (RNN / LSTM / GRU, Scan, and the MatMul / Gemm doing the recurrence) ran on
  the requested provider. Otherwise the cell is `unsupported`, with a message that says the
  model ran (partly) on the CPU and which nodes did.

Every session profiles its first run (`enable_profiling`); each node event there names the
provider that ran it. That table, op type → provider → node count, is the cell's `placement`.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np

from exporter.cells import ONNX_OPS

from .base import Runtime

__all__ = ["OrtCpu", "OrtCuda", "OrtCudaTF32", "kernel_events", "placement_from_profile",
           "RECURRENT_OPS", "CPU_FALLBACK_REFUSAL"]

_INSTALL_GPU = "pip install onnxruntime-gpu (in place of onnxruntime) on a machine with CUDA"
# The op types that carry a recurrent model's arithmetic, after onnxruntime's own fusions
# (MatMul + Add inside a Scan body becomes FusedGemm on the CPU provider).
RECURRENT_OPS = frozenset({*ONNX_OPS, "Scan", "MatMul", "Gemm", "FusedGemm", "FusedMatMul"})
# onnxruntime's message when strict mode refuses a model for CPU placement alone.
CPU_FALLBACK_REFUSAL = "fallback to CPU EP has been explicitly disabled"


def kernel_events(events: list[dict]) -> Iterator[dict]:
    """The events of onnxruntime's profile that time one node's kernel, one per node run
    (a Scan body's nodes once per time step); their name is the node's + "_kernel_time"."""
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            yield e


def placement_from_profile(events: list[dict]) -> dict[str, dict[str, int]]:
    """op type → provider → number of distinct nodes, from onnxruntime's profile events.

    A Scan body's nodes appear once per time step: counted once per node name."""
    seen = set()
    for e in kernel_events(events):
        args = e.get("args") or {}
        if "op_name" in args and "provider" in args:
            seen.add((e["name"], args["op_name"], args["provider"]))
    table: dict[str, Counter] = {}
    for _, op, provider in seen:
        table.setdefault(op, Counter())[provider] += 1
    return {op: dict(sorted(c.items())) for op, c in sorted(table.items())}


@dataclass
class OrtSession:
    """An InferenceSession, how it was loaded, and the placement read from its first run."""

    session: Any
    profile_dir: str
    strict: bool                              # loaded with CPU fallback disabled
    placement: dict[str, dict[str, int]] | None = None
    notes: list[str] = field(default_factory=list)

    def collect_placement(self) -> dict[str, dict[str, int]]:
        if self.placement is None:
            path = self.session.end_profiling()
            try:
                with open(path, encoding="utf-8") as fh:
                    self.placement = placement_from_profile(json.load(fh))
            finally:
                shutil.rmtree(self.profile_dir, ignore_errors=True)
        return self.placement

    def __del__(self) -> None:
        shutil.rmtree(self.profile_dir, ignore_errors=True)


class OrtCpu(Runtime):
    name = "ort-cpu"
    provider_name = "CPUExecutionProvider"

    def available(self) -> str | None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            return (f"onnxruntime not importable ({type(exc).__name__}: {exc}): pip install "
                    "onnxruntime")
        if self.provider_name not in ort.get_available_providers():
            return f"onnxruntime {ort.__version__} has no {self.provider_name}"
        return None

    def version(self) -> str:
        import onnxruntime as ort
        return ort.__version__

    def provider_options(self) -> dict[str, str]:
        return {}

    def _session_options(self, strict: bool, profile_dir: str) -> Any:
        import onnxruntime as ort
        # Refusals are reported in the cell; keep onnxruntime's own copy off the console.
        ort.set_default_logger_severity(4)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(profile_dir, "ort")
        if strict:
            so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        return so

    def _open(self, model_path: str, strict: bool) -> OrtSession:
        import onnxruntime as ort
        profile_dir = tempfile.mkdtemp(prefix="conformance-ort-profile-")
        try:
            sess = ort.InferenceSession(model_path, self._session_options(strict, profile_dir),
                                        providers=[(self.provider_name,
                                                    self.provider_options())])
        except BaseException:
            shutil.rmtree(profile_dir, ignore_errors=True)
            raise
        got = sess.get_providers()
        # onnxruntime lists the CPU provider after any other: only the first one is checked.
        if got[0] != self.provider_name:
            raise RuntimeError(f"session runs on {got}, not {self.provider_name}")
        return OrtSession(sess, profile_dir, strict)

    def load(self, model_path: str) -> OrtSession:
        return self._open(model_path, strict=False)

    def run(self, session: OrtSession, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in session.session.get_outputs()]
        out = dict(zip(names, session.session.run(names, dict(feeds))))
        session.collect_placement()
        return out

    def provider(self, session: OrtSession) -> str:
        return ",".join(session.session.get_providers())

    def placement(self, session: OrtSession) -> dict[str, dict[str, int]] | None:
        return session.placement

    def placement_problem(self, session: OrtSession) -> str | None:
        """Why this session's run does not count as a run on this provider, if it does not."""
        elsewhere = {f"{op} on {prov}" for op, provs in (session.placement or {}).items()
                     if op in RECURRENT_OPS for prov in provs if prov != self.provider_name}
        if not elsewhere:
            return None
        return (f"ran partly on the CPU: {', '.join(sorted(elsewhere))} "
                f"(onnxruntime's {self.provider_name} took no kernel for them)")


class OrtCuda(OrtCpu):
    name = "ort-cuda"
    provider_name = "CUDAExecutionProvider"
    tf32 = False

    def available(self) -> str | None:
        try:
            import torch  # noqa: F401  loads the CUDA/cuDNN libraries onnxruntime-gpu links to
        except ImportError:
            pass
        reason = super().available()
        if reason:
            return f"{reason}: {_INSTALL_GPU}"
        try:
            self._probe()
        except Exception as exc:  # no device, driver or library: not usable here
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return f"{self.provider_name} cannot start a session: {first[:300]}"
        return None

    def probe_model(self) -> bytes:
        """One Relu: a node the CUDA provider takes, so a strict session must load."""
        from onnx import TensorProto, helper
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
        opsets = [helper.make_opsetid("", 17)]
        model = helper.make_model(graph, opset_imports=opsets,
                                  ir_version=helper.find_min_ir_version_for(opsets))
        return model.SerializeToString()

    def _probe(self) -> None:
        with tempfile.TemporaryDirectory(prefix="conformance-probe-") as tmp:
            path = os.path.join(tmp, "probe.onnx")
            with open(path, "wb") as fh:
                fh.write(self.probe_model())
            sess = self._open(path, strict=True)
            self.run(sess, {"x": np.ones(2, np.float32)})

    def provider_options(self) -> dict[str, str]:
        return {"use_tf32": "1" if self.tf32 else "0"}

    def load(self, model_path: str) -> OrtSession:
        """Strict first; if refused for CPU placement alone, again with fallback allowed."""
        try:
            return self._open(model_path, strict=True)
        except Exception as exc:
            if CPU_FALLBACK_REFUSAL not in str(exc):
                raise
        sess = self._open(model_path, strict=False)
        sess.notes.append("strict load refused for CPU placement; judged from the profile")
        return sess

    def provider(self, session: OrtSession) -> str:
        mode = "strict" if session.strict else "CPU fallback allowed: strict load refused"
        return f"{super().provider(session)} ({mode})"

    def options(self) -> dict[str, Any]:
        return {"use_tf32": self.tf32, "disable_cpu_ep_fallback": "first"}


class OrtCudaTF32(OrtCuda):
    """The CUDA provider with TF32 matrix math allowed (onnxruntime's use_tf32=1)."""

    name = "ort-cuda-tf32"
    tf32 = True
