# onnxruntime-web 1.30.0, default bundle (`import * as ort from 'onnxruntime-web'`) with
# executionProviders ['webgpu'] (JSEP): where an LSTM's Y_h and Y_c both feed further nodes,
# the node reading Y_c gets Y_h's values. No error is raised. The native WebGPU provider
# (`onnxruntime-web/webgpu`), WebAssembly, and onnxruntime CPU are exact on the same file.
#
# Writes model.onnx (LSTM → Add(Y_h, Y_h) → h2, Add(Y_c, Y_c) → c2) and test_data_set_0/ with
# onnxruntime CPU's answer, the ONNX test-vector layout. Replay it in a real browser with
#   python -m conformance replay docs/findings/ort-web-jsep-lstm-cell-state \
#       --runtimes ort-webgpu-jsep-chromium,ort-webgpu-chromium,ort-web-chromium
# or open page.html (beside this file) from a static server next to onnxruntime-web's dist/.
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as T, helper, numpy_helper

here = Path(__file__).parent
rng = np.random.default_rng(0)
H, I = 3, 4
weights = [numpy_helper.from_array(rng.standard_normal((1, 4 * H, I)).astype(np.float32), "W"),
           numpy_helper.from_array(rng.standard_normal((1, 4 * H, H)).astype(np.float32), "R")]
nodes = [helper.make_node("LSTM", ["x", "W", "R"], ["Y", "Y_h", "Y_c"], hidden_size=H),
         helper.make_node("Add", ["Y_h", "Y_h"], ["h2"]),
         helper.make_node("Add", ["Y_c", "Y_c"], ["c2"])]
graph = helper.make_graph(
    nodes, "lstm_states_consumed", [helper.make_tensor_value_info("x", T.FLOAT, [5, 2, I])],
    [helper.make_tensor_value_info(n, T.FLOAT, [1, 2, H]) for n in ("h2", "c2")], weights)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
onnx.checker.check_model(model)
onnx.save(model, here / "model.onnx")

x = rng.standard_normal((5, 2, I)).astype(np.float32)
h2, c2 = ort.InferenceSession(str(here / "model.onnx"),
                              providers=["CPUExecutionProvider"]).run(None, {"x": x})
data = here / "test_data_set_0"
data.mkdir(exist_ok=True)
for name, value in [("input_0", ("x", x)), ("output_0", ("h2", h2)), ("output_1", ("c2", c2))]:
    (data / f"{name}.pb").write_bytes(numpy_helper.from_array(value[1], value[0]).SerializeToString())
(here / "x.bin").write_bytes(x.astype("<f4").tobytes())        # for page.html
print("c2 expected", c2.ravel()[:4], "— JSEP returns h2's values:", h2.ravel()[:4])
