"""TensorProto files (`input_0.pb`, `output_1.pb`, ...) as in ONNX test vectors."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["write_tensors", "read_tensors"]


def write_tensors(folder: Path, prefix: str, tensors: dict[str, np.ndarray]) -> None:
    """`<prefix>_<k>.pb` in dict order; each TensorProto carries its name. Written atomically
    into a real folder: a symbolic link planted in the output is replaced, never followed."""
    from exporter.files import atomic_write, real_folder

    real_folder(folder)
    for i, (name, array) in enumerate(tensors.items()):
        proto = numpy_helper.from_array(np.ascontiguousarray(array), name)
        atomic_write(folder / f"{prefix}_{i}.pb", proto.SerializeToString())


def _index(path: Path) -> int:
    try:
        return int(path.stem.split("_", 1)[1])
    except ValueError:
        raise ValueError(f"{path.name}: expected <prefix>_<number>.pb") from None


def read_tensors(folder: Path, prefix: str, names: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Name → array, in file-number order.

    A tensor without a name takes the graph's name at its position (`names`, the graph's
    inputs or outputs in order), as onnx's backend test runner matches them; onnx's own
    shipped test data is like that. Two tensors with one name, or an unnamed tensor past the
    graph's names, raise ValueError: a folder that cannot be matched is never half-judged."""
    out: dict[str, np.ndarray] = {}
    files = sorted(Path(folder).glob(f"{prefix}_*.pb"), key=_index)
    for k, path in enumerate(files):
        proto = onnx.TensorProto()
        try:
            proto.ParseFromString(path.read_bytes())
            array = numpy_helper.to_array(proto)
        except Exception as exc:
            raise ValueError(f"{path}: not a readable TensorProto ({exc})") from None
        name = proto.name
        if not name:
            if k >= len(names):
                raise ValueError(f"{path}: unnamed tensor at position {k}, and the graph has "
                                 f"only {len(names)} {prefix}s")
            name = names[k]
        if name in out:
            raise ValueError(f"{folder}: two {prefix} tensors named {name!r}")
        out[name] = array
    return out
