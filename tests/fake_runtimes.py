"""Test doubles for the isolation machinery only: adapters that crash or hang on purpose.

Every other cell they serve is computed for real by onnxruntime's CPU provider, so a test can
prove the runner survives the bad cell and goes on producing real verdicts.
"""
from __future__ import annotations

import os
import signal
import time

from conformance.runtimes.ort import OrtCpu


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
