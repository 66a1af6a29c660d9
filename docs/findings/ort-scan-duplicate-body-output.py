# onnxruntime 1.32 CPU: a Scan body that lists one tensor twice among its outputs (as the new
# loop state and as the per-step scan output: h_new, h_new) computes silently wrong results
# from the second step on; the same body with an Identity for the scan output is right.
# onnx.checker (full_check) accepts both; onnx.reference computes both right.
import numpy as np, onnx, onnxruntime as ort
from onnx import helper, TensorProto as T
from onnx.reference import ReferenceEvaluator
vi = lambda name, dims: helper.make_tensor_value_info(name, T.FLOAT, dims)


def model(duplicate: bool) -> onnx.ModelProto:
    nodes = [helper.make_node("Add", ["h", "x_t"], ["s"]), helper.make_node("Tanh", ["s"], ["h_new"])]
    if duplicate:
        outs = [vi("h_new", ["B", 2]), vi("h_new", ["B", 2])]
    else:
        nodes.append(helper.make_node("Identity", ["h_new"], ["y"]))
        outs = [vi("h_new", ["B", 2]), vi("y", ["B", 2])]
    body = helper.make_graph(nodes, "step", [vi("h", ["B", 2]), vi("x_t", ["B", 2])], outs)
    g = helper.make_graph(
        [helper.make_node("Scan", ["h0", "x"], ["hT", "ys"], body=body, num_scan_inputs=1)], "g",
        [vi("h0", ["B", 2]), vi("x", ["S", "B", 2])], [vi("hT", ["B", 2]), vi("ys", ["S", "B", 2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m, full_check=True)
    return m


rng = np.random.default_rng(0)
feeds = {"h0": rng.standard_normal((3, 2), np.float32), "x": rng.standard_normal((4, 3, 2), np.float32)}
for duplicate in (False, True):
    m = model(duplicate)
    got = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    want = ReferenceEvaluator(m).run(None, feeds)
    print("h_new, h_new" if duplicate else "h_new, Identity", "max |ort - reference| per output:",
          [float(np.abs(a - b).max()) for a, b in zip(got, want)])
