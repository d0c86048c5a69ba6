"""ONNX Runtime: the CPU provider, and the CUDA and TensorRT providers where they exist."""

from __future__ import annotations

from hfmagic.core.backend import Backend
from hfmagic.core.errors import BackendUnavailable


class OnnxRuntime(Backend):
    """An ``onnxruntime.InferenceSession`` on one execution provider, sequential execution,
    ``intra_op_num_threads`` = the thread setting, ``inter_op_num_threads`` = 1."""

    NAME = "onnxruntime"
    THREADS = "onnxruntime intra_op_num_threads"
    RUNS_WHAT = ("ONNX variants", "fp32")
    RUNS = "onnx"
    DEFAULT = True  # and its GPU providers, where this machine has them
    PROVIDERS = ["CPUExecutionProvider"]  # the first is the one measured; later ones take what it cannot
    HINT = ""

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        import onnxruntime as ort

        have = ort.get_available_providers()
        if cls.PROVIDERS[0] in have:
            return True, ""
        return False, (f"onnxruntime {ort.__version__} here has no {cls.PROVIDERS[0]} "
                       f"(it has {', '.join(have)}){cls.HINT}")

    @classmethod
    def imports(cls) -> None:
        import onnxruntime  # noqa: F401

    def load(self, variant, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if self.park_when_idle:
            # threads spin within a run, as a default session's do, and stop the moment it ends: an idle
            # worker's would otherwise spin on the next one's cores (allow_spinning = 0 parks them at every
            # operator instead, and each wake-up shows in the latency)
            options.add_session_config_entry("session.force_spinning_stop", "1")
        made = variant.model.task_plugin.measurement.ort_generator(variant, options, self.PROVIDERS)
        if made is not None:  # a decoder with its KV cache (an LLM's, a Whisper's): optimum's generate() loop
            self._generator, self.session = made
        else:
            self.session = ort.InferenceSession(str(variant.path), options, providers=self.PROVIDERS)
        used = self.session.get_providers()
        if used[0] != self.PROVIDERS[0]:  # onnxruntime falls back to the CPU without failing
            raise BackendUnavailable(f"{self.PROVIDERS[0]} did not start (onnxruntime fell back to "
                                     f"{used[0]}){self.HINT}")
        self.input_names = [i.name for i in self.session.get_inputs()]
        if self._generator is not None:
            self.input_names = variant.model.task_plugin.inputs.model_inputs(variant.model)

    def run(self, inputs):
        if self._generator is not None:  # one forward pass (no cache): the logits
            return self.forward_logits(inputs)
        return self.session.run(None, inputs)

    def threads_used(self) -> dict[str, int]:
        return {"onnxruntime intra_op_num_threads": self.session.get_session_options().intra_op_num_threads}


class OnnxRuntimeCuda(OnnxRuntime):
    """ONNX Runtime's CUDA provider (numpy inputs: host-device copies are inside the timing)."""

    NAME = "onnxruntime-cuda"
    HARDWARE = "cuda"
    PROVIDERS = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    HINT = "; it needs the onnxruntime-gpu package, an NVIDIA GPU, its driver and the CUDA/cuDNN libraries"


class OnnxRuntimeTensorRT(OnnxRuntime):
    """ONNX Runtime's TensorRT provider (the first run of a shape builds the engine: first_ms)."""

    NAME = "onnxruntime-tensorrt"
    HARDWARE = "cuda"
    PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    HINT = "; it needs onnxruntime-gpu built with TensorRT, the TensorRT libraries and an NVIDIA GPU"
