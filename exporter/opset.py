"""The newest opset both the installed onnx and onnxruntime accept."""
from __future__ import annotations

import functools

__all__ = ["max_supported_opset"]


def _ort_accepts(opset: int) -> bool:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets,
                              ir_version=helper.find_min_ir_version_for(opsets))
    try:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception:  # onnxruntime refuses opsets newer than it knows
        return False
    return True


@functools.lru_cache(maxsize=None)
def max_supported_opset() -> int:
    """Probe onnxruntime downwards from onnx's newest opset (cached per process)."""
    import onnx

    top = onnx.defs.onnx_opset_version()
    for opset in range(top, 13, -1):
        if _ort_accepts(opset):
            return opset
    return 13
