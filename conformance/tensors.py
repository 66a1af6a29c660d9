"""TensorProto files (`input_0.pb`, `output_1.pb`, ...) as in ONNX test vectors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["write_tensors", "read_tensors"]


def write_tensors(folder: Path, prefix: str, tensors: dict[str, np.ndarray]) -> None:
    """`<prefix>_<k>.pb` in dict order; each TensorProto carries its name."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, array) in enumerate(tensors.items()):
        proto = numpy_helper.from_array(np.ascontiguousarray(array), name)
        (folder / f"{prefix}_{i}.pb").write_bytes(proto.SerializeToString())


def read_tensors(folder: Path, prefix: str) -> dict[str, np.ndarray]:
    """Name → array, in file-number order."""
    out = {}
    files = sorted(Path(folder).glob(f"{prefix}_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
    for path in files:
        proto = onnx.TensorProto()
        proto.ParseFromString(path.read_bytes())
        out[proto.name] = numpy_helper.to_array(proto)
    return out
