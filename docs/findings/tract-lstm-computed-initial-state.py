# tract 0.23.9: a bidirectional LSTM whose initial_h / initial_c are computed in the graph
# (ConstantOfShape or Expand of [2, batch, H] read from the input's Shape) fails to evaluate
# at batch >= 2 ("Evaluating #8 "Y" Scan", no cause); batch 1 works, and RNN works.
import numpy as np, onnx, tract
from onnx import helper, numpy_helper, TensorProto as T
H, I, D = 4, 3, 2
inits = [numpy_helper.from_array(np.random.randn(D, 4 * H, I).astype(np.float32), "W"),
         numpy_helper.from_array(np.random.randn(D, 4 * H, H).astype(np.float32), "R"),
         numpy_helper.from_array(np.array([D], np.int64), "d"),
         numpy_helper.from_array(np.array([H], np.int64), "h")]
nodes = [helper.make_node("Shape", ["X"], ["b"], start=1, end=2),
         helper.make_node("Concat", ["d", "b", "h"], ["shape"], axis=0),
         helper.make_node("ConstantOfShape", ["shape"], ["h0"],
                          value=numpy_helper.from_array(np.array([0], np.float32))),
         helper.make_node("LSTM", ["X", "W", "R", "", "", "h0", "h0"], ["Y", "Y_h"],
                          hidden_size=H, direction="bidirectional")]
g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", T.FLOAT, ["s", "b", I])],
                      [helper.make_tensor_value_info("Y_h", T.FLOAT, None)], initializer=inits)
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), "repro.onnx")
r = tract.onnx().load("repro.onnx").into_model().into_runnable()
for b in (1, 2):
    try:
        r.run([np.random.randn(5, b, I).astype(np.float32)]); print(b, "ok")
    except Exception as e:
        print(b, "error:", str(e).splitlines()[0])
