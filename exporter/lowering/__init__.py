"""Lowerings of one nn.RNN layer to ONNX nodes."""
