"""Export torch.nn.RNN to ONNX graphs of native ONNX RNN ops."""
from __future__ import annotations

__version__ = "0.1.0"

from .api import export, export_spec, module_state  # noqa: E402
from .checkpoint import spec_from_checkpoint, spec_from_state  # noqa: E402
from .errors import ExportError  # noqa: E402
from .spec import ExportOptions, RNNSpec  # noqa: E402

__all__ = ["export", "export_spec", "module_state", "spec_from_checkpoint", "spec_from_state",
           "ExportError", "ExportOptions", "RNNSpec", "__version__"]
