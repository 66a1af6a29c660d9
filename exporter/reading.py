"""Reading a torch recurrent module for export: its spec, its weights as they are when its
forward runs, and what would run around it that a graph cannot hold (hooks, an instance-level
forward). The front doors (api.py, torch_onnx.py) read modules only through here.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ExportError
from .spec import RNNSpec

__all__ = ["module_state", "missing_weights", "exportable_spec", "refuse_hooks",
           "refuse_global_hooks"]


def module_state(module: Any) -> dict[str, np.ndarray]:
    """nn.RNN parameters as float32 numpy arrays keyed like its state_dict. A weight that is
    not a parameter but a plain tensor attribute — set by a wrapper in its forward, as
    awd-lstm's WeightDrop (DropConnect) does — is read from the attribute."""
    import torch

    state = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    for name in getattr(module, "_flat_weights_names", ()):
        value = module.__dict__.get(name)
        if name not in state and isinstance(value, torch.Tensor):
            state[name] = value.detach().cpu().numpy()
    return state


def missing_weights(module: Any) -> list[str]:
    """The recurrent module's weights that are neither parameters nor tensor attributes."""
    import torch

    params = dict(module.named_parameters(recurse=False))
    return [n for n in getattr(module, "_flat_weights_names", ())
            if n not in params and not isinstance(module.__dict__.get(n), torch.Tensor)]


def exportable_spec(module: Any, name: str = "the RNN") -> RNNSpec:
    """The spec of an nn.RNN about to be exported; refuses what the graph cannot express."""
    try:
        spec = RNNSpec.from_module(module)
    except ExportError as exc:
        raise ExportError(exc if name == "the RNN" else f"{name}: {exc}") from None
    if module.training and spec.dropout > 0:
        raise ExportError(f"{name} is in training mode with dropout={spec.dropout:g}; the "
                          "exported graph is the eval-mode computation: call model.eval() first")
    return spec


def refuse_hooks(module: Any, where: str) -> None:
    """A recurrent module is lowered from its weights, so whatever else would run around its
    call is refused by name: forward hooks and pre-hooks, and a forward set on the instance."""
    what = []
    if "forward" in vars(module):
        what.append("a forward replaced on the instance")
    for kind, hooks in (("forward hook", module._forward_hooks),
                        ("forward pre-hook", module._forward_pre_hooks)):
        what += [f"{kind} {getattr(h, '__qualname__', type(h).__name__)}"
                 for h in hooks.values()]
    if what:
        raise ExportError(f"{where} has {', '.join(what)}: the exported graph computes "
                          f"nn.{type(module).__name__}'s own forward from its "
                          "weights and would silently leave that out; remove it, or fold what "
                          "it does into the module around the RNN")


def refuse_global_hooks() -> None:
    """torch's global module hooks run around every module call, the recurrent ones too."""
    from torch.nn.modules import module as torch_module

    found = [getattr(h, "__qualname__", type(h).__name__) for d in (
        torch_module._global_forward_hooks, torch_module._global_forward_pre_hooks)
        for h in d.values()]
    if found:
        raise ExportError(f"global module forward hook(s) registered ({', '.join(found)}): they "
                          "would run around the recurrent modules in torch but not in the "
                          "exported graph; remove them before exporting")
