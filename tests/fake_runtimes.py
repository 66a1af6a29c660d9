"""Test doubles for the isolation machinery only: adapters that crash or hang on purpose.

Every other cell they serve is computed for real by onnxruntime's CPU provider, so a test can
prove the runner survives the bad cell and goes on producing real verdicts.
"""
from __future__ import annotations

import os
import signal
import time

from conformance.runtimes.ort import OrtCpu, OrtCuda


class CrashOnSeq1(OrtCpu):
    """Kills its own process with SIGSEGV when the sequence length is 1."""

    def run(self, session, feeds):
        if feeds["input"].shape[0] == 1:
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().run(session, feeds)


class HangOnSeq1(OrtCpu):
    """Never answers when the sequence length is 1."""

    def run(self, session, feeds):
        if feeds["input"].shape[0] == 1:
            time.sleep(3600)
        return super().run(session, feeds)


class BrokenStart(OrtCpu):
    """Its runtime cannot even be asked whether it is available."""

    def available(self):
        raise RuntimeError("simulated broken installation")


class SlowStart(OrtCpu):
    """Takes far longer to say whether it is available than any start-up timeout allows."""

    def available(self):
        time.sleep(3600)


class StandInAccelerator(OrtCuda):
    """The strict CUDA adapter with the CPU wheel's AzureExecutionProvider standing in for an
    accelerator: it takes no standard op, so every real node must land on the CPU provider.
    Everything else (strict load, fallback policy, profile-based placement) is the real code."""

    name = "stand-in-accelerator"
    provider_name = "AzureExecutionProvider"

    def provider_options(self):
        return {}

    def probe_model(self):
        """A model with no nodes (graph output = graph input): all a stand-in can take."""
        from onnx import TensorProto, helper
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
        graph = helper.make_graph([], "probe", [x], [x])
        opsets = [helper.make_opsetid("", 17)]
        return helper.make_model(graph, opset_imports=opsets,
                                 ir_version=helper.find_min_ir_version_for(opsets)
                                 ).SerializeToString()
