"""OpenVINO on the CPU, reading the ONNX file directly (the ``hfmagic[openvino]`` extra)."""

from __future__ import annotations

import importlib.util
import os
import sys

from hfmagic.backends import Backend

# bf16 is what OpenVINO picks on CPUs that have it, and it was 2.5x slower on MiniLM here
PRECISION_HINT = "f32"


def no_telemetry() -> None:
    """Keep OpenVINO's telemetry (Google Analytics, consent read from ~/intel) from loading: with
    ``openvino_telemetry`` unimportable, OpenVINO uses its own stub. It wrote ~/intel/ and forked a
    sender that kept the worker's pipe open. HFMAGIC_ALLOW_TELEMETRY=1 leaves it alone."""
    if os.environ.get("HFMAGIC_ALLOW_TELEMETRY") != "1":
        sys.modules.setdefault("openvino_telemetry", None)


class OpenVINO(Backend):
    """``openvino.Core().compile_model(file, "CPU")`` with INFERENCE_NUM_THREADS = the thread
    setting, INFERENCE_PRECISION_HINT f32 and the LATENCY performance hint."""

    NAME = "openvino"
    RUNS = "onnx"

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("openvino") is None:
            return False, "the openvino backend needs OpenVINO: pip install hfmagic[openvino]"
        return True, ""

    @classmethod
    def imports(cls) -> None:
        no_telemetry()
        import openvino  # noqa: F401

    def load(self, variant, threads: int) -> None:
        no_telemetry()
        import openvino as ov

        self.compiled = ov.Core().compile_model(str(variant.path), "CPU", {
            "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": PRECISION_HINT,
            "PERFORMANCE_HINT": "LATENCY"})
        self.request = self.compiled.create_infer_request()
        self.input_names = [port.get_any_name() for port in self.compiled.inputs]

    def run(self, inputs):
        return self.request.infer(inputs)

    def threads_used(self) -> dict[str, int]:
        return {"openvino INFERENCE_NUM_THREADS": int(self.compiled.get_property("INFERENCE_NUM_THREADS"))}
