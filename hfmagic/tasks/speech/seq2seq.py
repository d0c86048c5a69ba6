"""Whisper-style speech recognition (an encoder and a decoder with its KV cache): what differs from CTC.

The speech task (:mod:`hfmagic.tasks.speech.task`) asks this module for models whose config has
``num_mel_bins`` (Whisper):

- export: optimum's ``automatic-speech-recognition-with-past`` without its post-processing, so a
  variant is a folder of three graphs, ``encoder_model.onnx``, ``decoder_model.onnx`` (the first
  step) and ``decoder_with_past_model.onnx`` (every later step, over the KV cache); its size, hash
  and node count cover all three (:func:`hfmagic.onnx.build.graph_files`); dynamic int8 quantizes
  each graph's MatMul weights (ORTQuantizer, one graph at a time);
- runtime: optimum's ``ORTModelForSpeechSeq2Seq`` over the folder (onnxruntime), the PyTorch model's
  own ``generate`` (torch): the same greedy ``GenerationConfig`` for both;
- validation: the encoder's output on the speech task's validation clips (worst-clip cosine, max |diff|) and
  :data:`VALIDATE_TOKENS` greedy tokens of each clip against PyTorch's;
- a measurement is one greedy transcription of exactly ``new_tokens`` tokens: time to the first
  token (the encoder and the first decoder step), time per token after it; the real-time factor is
  the whole transcription's p50 over the audio's seconds. Whisper pads every clip to 30 s, so its
  encoder's cost does not depend on ``--audio-seconds``;
- evaluation: greedy transcripts of up to :data:`MAX_NEW_TOKENS` tokens, WER and CER as for CTC.
"""

from __future__ import annotations

from pathlib import Path

from hfmagic.core.timing import token_clock
from hfmagic.onnx.build import quantization_config, without_weights
from hfmagic.onnx.validation import cosine_similarity

VALIDATE_CLIPS, VALIDATE_TOKENS = 2, 8
MAX_NEW_TOKENS = 64  # a transcript's budget in %evaluate (stops earlier at end of text)
GRAPHS = ("encoder_model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx")
EXPORT_TASK = "automatic-speech-recognition-with-past"


def is_seq2seq(config: dict) -> bool:
    return "num_mel_bins" in config


def max_new_tokens(model) -> int:
    """What the decoder's positions leave for new tokens after its start (and a few forced) tokens."""
    return int(model.config.get("max_target_positions") or 448) - 4


def generation_config(model, new_tokens: int, exact: bool = True):
    """Greedy, no timestamps, exactly (or at most) ``new_tokens`` tokens, for every backend alike."""
    from transformers import GenerationConfig

    saved = Path(model.path) / "generation_config.json"
    config = GenerationConfig.from_pretrained(model.path) if saved.exists() else GenerationConfig()
    config.max_new_tokens = new_tokens
    config.min_new_tokens = new_tokens if exact else None
    config.do_sample, config.num_beams, config.use_cache = False, 1, True
    if config.decoder_start_token_id is None:
        config.decoder_start_token_id = model.config.get("decoder_start_token_id")
    for key in ("eos_token_id", "pad_token_id"):
        if getattr(config, key) is None:
            setattr(config, key, model.config.get(key))
    return config


def greedy(generator, features, config, stamps: list | None = None):
    """``generate`` on input features; the new tokens (after the decoder's start), the clock after
    each one in ``stamps`` when given."""
    import logging
    import warnings

    import torch

    criteria = token_clock(stamps)
    logging.getLogger("transformers").setLevel(logging.ERROR)  # generate()'s notices about its defaults, per call
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = generator.generate(input_features=torch.as_tensor(features), generation_config=config,
                                 stopping_criteria=criteria)
    return out[:, 1:] if out.shape[1] > 0 else out  # the decoder's start token is not generated


def ort_generator(folder: Path, options, providers: list[str]):
    """optimum's ORTModelForSpeechSeq2Seq over a variant's folder of graphs."""
    from optimum.onnxruntime import ORTModelForSpeechSeq2Seq

    names = {p.name for p in folder.glob("*.onnx")}
    pick = lambda stem: next(n for n in sorted(names) if n.startswith(stem))  # noqa: E731  (int8: *_quantized.onnx)
    return ORTModelForSpeechSeq2Seq.from_pretrained(
        folder, encoder_file_name=pick("encoder_model"), decoder_file_name=pick("decoder_model"),
        decoder_with_past_file_name=pick("decoder_with_past_model"), session_options=options,
        provider=providers[0], use_cache=True, use_io_binding=False, local_files_only=True)


def encoder_session(generator):
    return generator.encoder.session


def quantize(source: Path, out: Path, isa: str, per_channel: bool, operators) -> str:
    """Dynamic int8 of each of the variant's graphs (ORTQuantizer; their MatMul weights)."""
    import shlex

    from optimum.onnxruntime import ORTQuantizer

    for name in GRAPHS:
        qconfig = quantization_config(isa, per_channel, static=False)
        if operators:
            qconfig.operators_to_quantize = list(operators)
            qconfig.nodes_to_exclude = without_weights(source / name, operators)
        ORTQuantizer.from_pretrained(source, file_name=name).quantize(qconfig, save_dir=out)
    return shlex.join(["optimum-cli", "onnxruntime", "quantize", "--onnx_model", "onnx/fp32", f"--{isa}"]
                      + (["--per_channel"] if per_channel else []) + ["-o", "onnx/int8"])


def export(model, out: Path, opset, device: str) -> str:
    import shlex

    from optimum.exporters.onnx import main_export

    main_export(str(model.path), output=out, task=EXPORT_TASK, opset=opset, device=device, library_name="transformers",
                trust_remote_code=model.trust_remote_code, do_validation=False, no_post_process=True)
    return shlex.join(["optimum-cli", "export", "onnx", "--model", str(model.path), "--task", EXPORT_TASK,
                       "--no-post-process", "onnx/fp32"])


class Reference:
    """PyTorch on a few real clips: the encoder's output and greedy tokens, against each variant's."""

    def __init__(self, model, clips: list, source: str):
        import torch

        self.model, self.source = model, source
        self.texts = list(clips)[:VALIDATE_CLIPS]  # the clips (the validation record counts them)
        features = model.task_plugin.inputs.encode(model, self.texts)["input_features"]
        self.features = [features[i:i + 1] for i in range(len(self.texts))]
        self.config = generation_config(model, VALIDATE_TOKENS)
        torch_model = model.torch_model()
        self.hidden, self.tokens = [], []
        for f in self.features:
            with torch.inference_mode():
                self.hidden.append(torch_model.get_encoder()(torch.from_numpy(f)).last_hidden_state.float().numpy())
            self.tokens.append(greedy(torch_model, f, self.config)[0].numpy())

    def compare(self, path, device: str = "cpu") -> dict:
        import numpy as np
        import onnxruntime as ort

        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        generator = ort_generator(path.parent, ort.SessionOptions(), providers)
        session = encoder_session(generator)
        cosines, diffs, same, first = [], [], 0, []
        for f, want_hidden, want_tokens in zip(self.features, self.hidden, self.tokens):
            got = session.run(None, {"input_features": f})[0]
            cosines.append(cosine_similarity(want_hidden.astype(np.float64).ravel(), got.astype(np.float64).ravel()))
            diffs.append(float(np.max(np.abs(want_hidden - got))))
            tokens = greedy(generator, f, self.config)[0].numpy()
            n = min(len(tokens), len(want_tokens))
            differ = np.nonzero(tokens[:n] != want_tokens[:n])[0]
            first.append(int(differ[0]) if differ.size else n)
            same += int(not differ.size and len(tokens) == len(want_tokens))
        return {"max_abs_diff": max(diffs), "cosine": float(np.min(cosines)), "argmax_agreement": same / len(first),
                "first_divergence": float(np.mean(first)), "greedy_tokens": VALIDATE_TOKENS,
                "texts": len(self.texts), "inputs_from": self.source, "outputs": ["last_hidden_state", "tokens"]}


def time_transcriptions(backend, model, prepared, new_tokens: int, runs: int, min_time: float) -> dict:
    """At least ``runs`` transcriptions of exactly ``new_tokens`` tokens and ``min_time`` s: per run the
    time per token after the first (``decode_samples_ms``), the time to the first token (the encoder
    and the first step) and the whole transcription's (``samples_ms``, what the RTF is of)."""
    import time

    config = backend.generation_settings(generation_config(model, new_tokens))
    generator = backend.generator()
    features = prepared["input_features"]
    first, per_token, whole = [], [], []
    start = time.perf_counter_ns()
    while True:
        stamps: list[int] = []
        t0 = time.perf_counter_ns()
        greedy(generator, features, config, stamps)
        t1 = time.perf_counter_ns()
        if len(stamps) < 2:
            raise RuntimeError(f"generate made {len(stamps)} tokens; at least 2 are needed to time decoding")
        first.append((stamps[0] - t0) / 1e6)
        per_token.append((stamps[-1] - stamps[0]) / 1e6 / (len(stamps) - 1))
        whole.append((t1 - t0) / 1e6)
        if len(whole) >= runs and t1 - start >= min_time * 1e9:
            return {"samples_ms": whole, "first_token_samples_ms": first, "decode_samples_ms": per_token,
                    "wall_ms": whole}


def transcribe(backend, model, feed: dict) -> dict:
    """%evaluate's batch: greedy transcripts of up to MAX_NEW_TOKENS tokens (stopping at end of text)."""
    import numpy as np

    budget = min(MAX_NEW_TOKENS, max_new_tokens(model))
    config = backend.generation_settings(generation_config(model, budget, exact=False))
    tokens = greedy(backend.generator(), np.asarray(feed["input_features"]), config).numpy()
    return {"tokens": tokens}
