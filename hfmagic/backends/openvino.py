"""OpenVINO on the CPU, reading the ONNX file directly (the ``hfmagic[openvino]`` extra); a decoder's
ONNX file (with its KV-cache inputs) is driven by optimum-intel's ``OVModelForCausalLM``, the same
``generate()`` loop the other backends run."""

from __future__ import annotations

import importlib.util

from hfmagic.core.backend import Backend
from hfmagic.core.errors import BackendUnavailable, UnsupportedError
from hfmagic.core.telemetry import openvino_off
from hfmagic.onnx.build import graph_files

# bf16 is what OpenVINO picks on CPUs that have it, and it was 2.5x slower on MiniLM here
PRECISION_HINT = "f32"


class OpenVINO(Backend):
    """``openvino.Core().compile_model(file, "CPU")`` with INFERENCE_NUM_THREADS = the thread
    setting, INFERENCE_PRECISION_HINT f32 and the LATENCY performance hint."""

    NAME = "openvino"
    THREADS = "OpenVINO INFERENCE_NUM_THREADS"
    RUNS_WHAT = ("ONNX variants", "fp32")
    RUNS = "onnx"

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("openvino") is None:
            return False, "the openvino backend needs OpenVINO: pip install hfmagic[openvino]"
        return True, ""

    @classmethod
    def imports(cls) -> None:
        openvino_off()
        import openvino  # noqa: F401

    def load(self, variant, threads: int) -> None:
        openvino_off()
        import openvino as ov

        config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": PRECISION_HINT,
                  "PERFORMANCE_HINT": "LATENCY"}

        if len([p for p in graph_files(variant.path) if p.suffix == ".onnx"]) > 1:
            raise UnsupportedError(f"the openvino backend runs one-graph models and decoder LLMs; {variant.model.name}'s "
                                   "variants are several graphs (an encoder and its decoders): use onnxruntime")
        if variant.model.task_plugin.measurement.GENERATES:
            self._generator = causal_lm(variant, config)
            self.compiled = self._generator.request.get_compiled_model()
            self.input_names = variant.model.task_plugin.inputs.model_inputs(variant.model)
            return
        self.compiled = ov.Core().compile_model(str(variant.path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.input_names = [port.get_any_name() for port in self.compiled.inputs]
        self.output_names = [port.get_any_name() for port in self.compiled.outputs]

    def run(self, inputs):
        if self._generator is not None:  # one forward pass (no cache): the logits
            return self.forward_logits(inputs)
        return self.request.infer(inputs).to_tuple()  # in output_names' order, as onnxruntime's are

    def threads_used(self) -> dict[str, int]:
        return {"openvino INFERENCE_NUM_THREADS": int(self.compiled.get_property("INFERENCE_NUM_THREADS"))}


def causal_lm(variant, config: dict):
    """optimum-intel's ``OVModelForCausalLM`` over the variant's own ONNX file (read by OpenVINO as it
    is: its past_key_values are inputs and outputs, so the KV cache goes through Python each step as
    under ORTModelForCausalLM, not kept in OpenVINO's state)."""
    if importlib.util.find_spec("optimum.intel") is None:
        raise BackendUnavailable("openvino runs text-generation models through optimum-intel: "
                                 "pip install optimum-intel==1.27.0 (or make install)")
    import logging

    import openvino as ov
    from optimum.intel import OVModelForCausalLM
    from transformers import AutoConfig

    logging.getLogger("optimum.intel").setLevel(logging.ERROR)  # "model does not contain state": said above
    model = ov.Core().read_model(str(variant.path))
    return OVModelForCausalLM(model, config=AutoConfig.from_pretrained(variant.folder), ov_config=config,
                              compile=True, use_cache=True)
