"""Where a run happened: versions, providers, CPU and GPU, for every report."""
from __future__ import annotations

import platform
import subprocess
import sys
from typing import Any

__all__ = ["environment"]


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu() -> dict[str, Any]:
    info: dict[str, Any] = {"gpus": [], "driver": None, "cuda": None, "cudnn": None}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20)
        rows = [r.split(", ") for r in out.stdout.strip().splitlines() if r.strip()]
        info["gpus"] = [r[0] for r in rows]
        info["driver"] = rows[0][1] if rows and len(rows[0]) > 1 else None
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        import torch
        info["cuda"] = torch.version.cuda
        if torch.backends.cudnn.is_available():
            info["cudnn"] = torch.backends.cudnn.version()
    except Exception:  # torch without CUDA support, or CUDA broken: report what we have
        pass
    return info


def environment() -> dict[str, Any]:
    import numpy
    import onnx
    import torch

    env: dict[str, Any] = {
        "python": sys.version.split()[0], "platform": platform.platform(),
        "cpu": _cpu_name(), "torch": torch.__version__, "onnx": onnx.__version__,
        "numpy": numpy.__version__,
    }
    try:
        import onnxruntime as ort
        env["onnxruntime"] = ort.__version__
        env["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        env["onnxruntime"], env["onnxruntime_providers"] = None, []
    env.update(_gpu())
    return env
