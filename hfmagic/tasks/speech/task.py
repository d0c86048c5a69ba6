"""Speech recognition: CTC models (wav2vec2, HuBERT, WavLM, Data2Vec-audio style) and Whisper-style
encoder-decoders (:mod:`hfmagic.tasks.speech.seq2seq`): a transcript per clip.

What differs from the other tasks, all of it here:

- a folder needs its processor (``preprocessor_config.json``: the feature extractor, and the CTC
  vocabulary ``vocab.json``); the model takes ``input_values`` (float32 waveforms at the feature
  extractor's sampling rate, batch x samples) and gives ``logits`` per audio frame;
- a shape is batch x audio seconds (%benchmark's ``--audio-seconds``, default 5); rows add the
  real-time factor (``rtf``: seconds of compute per second of audio, at p50), milliseconds per
  second of audio and seconds of audio per second;
- export is optimum's ``automatic-speech-recognition`` (one graph for CTC models); dynamic int8 of
  the MatMul weights (the transformer layers; the convolutional feature encoder stays fp32:
  onnxruntime's ConvInteger runs slower than its fp32 Conv on CPUs);
- validation on the user's speech (``--calibration``), else Debian's pocketsphinx-testdata LibriVox
  clips, else synthetic tones in noise (the notes say which); evaluation is WER and CER (jiwer) with
  intervals, agreement of the transcripts.

A Whisper-style model (its config has ``num_mel_bins``) differs in its inputs (``input_features``:
log-mel frames, every clip padded to 30 s), its variants (three graphs each), its measurement (a
greedy transcription of ``--new-tokens`` tokens: first token, time per token, the RTF of the whole)
and its decoding (generate); the rest is shared.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from hfmagic.core.errors import UnsupportedError, UsageProblem
from hfmagic.core.records import Field, declare, field_of, keys
from hfmagic.core.shapes import AUDIO_AXIS
from hfmagic.tasks import register
from hfmagic.tasks.base import Task, read_examples, require_any, write_examples
from hfmagic.tasks.protocols import Export, Inputs, Measurement, Validation
from hfmagic.tasks.speech import seq2seq as s2s
from hfmagic.tasks.speech.audio import librivox_folder, load_audio, synthetic_clips
from hfmagic.tasks.speech.evaluate import SpeechRecognitionEvaluator
from hfmagic.tasks.speech.requests import SpeechRequests

MAX_SECONDS = 600
ROW_KEYS = keys(declare(  # the row figures speech adds (None on other tasks' rows)
    Field("audio_s_per_s", "audio s/s", "s/s", ".1f", "seconds of audio processed per second"),
    Field("rtf", "RTF", "", ".4f", "real-time factor: seconds of compute per second of audio (p50 over batch x audio)"),
    Field("ms_per_audio_s", "ms/audio s", "ms", ".2f", "milliseconds of compute per second of audio (p50)"),
    Field("first_token_p50_ms", "1st token ms", "ms", ".1f", "a transcription's first token (the encoder and the "
                                                              "first decoder step), 50th percentile"),
    Field("decode_ms_per_token", "ms/token", "ms", ".2f", "a transcription's each later token, 50th percentile"),
))
DEFAULT_NEW_TOKENS = 16  # a Whisper transcription's tokens per measured run


class SpeechInputs(Inputs):
    """Waveforms through the model's feature extractor (a Whisper's: 30 s of log-mel frames)."""

    AXIS = AUDIO_AXIS
    EXAMPLES = "clips"
    PREPROCESSOR = "feature extractor"

    def preprocessor(self, model):
        """The model's processor (feature extractor and tokenizer; the handle caches it)."""
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(model.path, trust_remote_code=model.trust_remote_code)

    def sizes(self, model) -> list[int]:
        return [5]

    def check_sizes(self, model, sizes: list[int], new_tokens: int = 0) -> None:
        long = [s for s in sizes if s > MAX_SECONDS]
        if long:
            raise UsageProblem(f"{long[0]} s of audio in one run is more than the {MAX_SECONDS} s hfmagic measures; "
                               "cut long recordings into clips (--audio-seconds 5,30)")

    def memory_tokens(self, model, size: int) -> int:
        if self.task.seq2seq(model):  # 30 s of mel frames, halved by the encoder's second convolution
            return int(model.config.get("max_source_positions") or 1500)
        return max(1, size * self.task.rate(model) // self.task.stride(model))

    def model_inputs(self, model, forward=None) -> list[str]:
        if self.task.seq2seq(model):
            return ["input_features"]
        return ["input_values", "attention_mask"] if self.task.takes_mask(model) else ["input_values"]

    def shape(self, model, batch: int, size: int) -> dict:
        spec = model.preprocessor_config
        return {**super().shape(model, batch, size), "sampling_rate": self.task.rate(model),
                "mel_bins": spec.get("feature_size") or model.config.get("num_mel_bins"),
                "frames": spec.get("nb_max_frames") or 3000}

    def synthetic(self, names: list[str], shape: dict, config: dict) -> dict:
        """Quiet noise (standard deviation 0.1, float32) of exactly batch x seconds x rate samples; for a
        Whisper, standard-normal log-mel frames (batch x mel bins x 30 s of frames)."""
        import numpy as np

        if names == ["input_features"]:  # Whisper: log-mel frames of 30 s whatever the audio's length
            rng = np.random.default_rng(shape["batch_size"])
            return {"input_features": rng.standard_normal((shape["batch_size"], shape["mel_bins"], shape["frames"]),
                                                          dtype=np.float32)}
        unknown = [n for n in names if n not in ("input_values", "attention_mask")]
        if unknown:
            raise UnsupportedError(f"the model takes {', '.join(unknown)}, which the {self.task.NAME} task cannot "
                                   "make up (it makes input_values and attention_mask)")
        batch, seconds = shape["batch_size"], shape[self.AXIS.key]
        samples = seconds * shape["sampling_rate"]
        rng = np.random.default_rng(batch * 100_003 + seconds)
        made = {"input_values": (0.1 * rng.standard_normal((batch, samples))).astype(np.float32),
                "attention_mask": np.ones((batch, samples), dtype=np.int64)}
        return {n: made[n] for n in names}

    def encode(self, model, clips: list, size: int | None = None) -> dict:
        """Waveforms through the model's feature extractor: padded to the longest (``size`` None), or
        cut or padded (silence) to exactly ``size`` seconds first."""
        import numpy as np

        extractor = model.preprocessor().feature_extractor
        if size is not None:
            samples = size * int(extractor.sampling_rate)
            fitted = [np.pad(c[:samples], (0, max(0, samples - len(c)))).astype(np.float32) for c in clips]
            out = extractor(fitted, sampling_rate=extractor.sampling_rate, return_tensors="np")
            return {k: np.asarray(v) for k, v in out.items() if k in ("input_values", "attention_mask", "input_features")}
        if self.task.seq2seq(model):
            out = extractor(clips, sampling_rate=self.task.rate(model), return_tensors="np")
            return {"input_features": np.asarray(out["input_features"], dtype=np.float32)}
        out = extractor(clips, sampling_rate=self.task.rate(model), padding=True, return_tensors="np")
        encoded = {"input_values": np.asarray(out["input_values"], dtype=np.float32)}
        if "attention_mask" in out:
            encoded["attention_mask"] = np.asarray(out["attention_mask"], dtype=np.int64)
        return encoded

    def complete(self, names: list[str], encoded: dict) -> dict:
        import numpy as np

        if "input_features" in names:
            return {"input_features": np.asarray(encoded["input_features"], dtype=np.float32)}
        values = np.asarray(encoded["input_values"], dtype=np.float32)
        feed = {"input_values": values}
        if "attention_mask" in names:
            feed["attention_mask"] = np.asarray(encoded.get("attention_mask", np.ones(values.shape, np.int64)),
                                                dtype=np.int64)
        return {n: feed[n] for n in names}

    def read(self, model, source, column: str | None = None, limit: int | None = None):
        return load_audio(source, self.task.rate(model), audio_column=column, limit=limit, require_text=False)

    def examples(self, data) -> list | None:
        return getattr(data, "audio", None)

    def samples(self, model, count: int) -> tuple[list, str]:
        """LibriVox clips where Debian's package is installed, else synthetic tones (the source says so)."""

        if librivox_folder().exists():
            clips = load_audio("librivox", self.task.rate(model), limit=count)
            return clips.audio, "LibriVox clips (pocketsphinx-testdata)"
        return synthetic_clips(self.task.rate(model), count), (
            "synthetic audio: tones in noise, not speech, as no LibriVox clips are installed (pocketsphinx-testdata: "
            "make data); pass --calibration CLIPS to check on your own speech")

    def payload(self, data, limit: int):
        return write_examples(data.audio[:limit], data.fingerprint["sha256"])

    def from_payload(self, payload):
        return None if payload is None else read_examples(payload)

    def note(self, data) -> str:
        return (f"inputs: {len(data)} real clips from {data.source}, cut or padded to each length and through the "
                "model's feature extractor")


class SpeechMeasurement(Measurement):
    """A CTC model: one forward pass per run. A Whisper: one greedy transcription per run."""

    ROW_KEYS: ClassVar[tuple[str, ...]] = ROW_KEYS

    def new_tokens(self, asked, model) -> int | None:
        if not self.task.seq2seq(model):
            return super().new_tokens(asked, model)
        if asked is None:
            return DEFAULT_NEW_TOKENS
        if isinstance(asked, bool) or not isinstance(asked, int) or asked < 2:
            raise UsageProblem(f"--new-tokens must be 2 or more (time per token is measured after the first), "
                               f"got {asked!r}")
        if asked > s2s.max_new_tokens(model):
            raise UsageProblem(f"--new-tokens {asked} is beyond {model.name}'s decoder, which has room for "
                               f"{s2s.max_new_tokens(model)}; use fewer")
        return asked

    def run_once(self, backend, model, prepared, job: dict) -> None:
        if self.task.seq2seq(model):
            self.timed_runs(backend, model, prepared, 1, 0.0, job)
        else:
            backend.run(prepared)

    def timed_runs(self, backend, model, prepared, runs: int, min_time: float, job: dict) -> dict:
        if not self.task.seq2seq(model):
            return super().timed_runs(backend, model, prepared, runs, min_time, job)
        return s2s.time_transcriptions(backend, model, prepared, job.get("new_tokens") or DEFAULT_NEW_TOKENS, runs,
                                       min_time)

    def forward_outputs(self, backend, model, feed: dict) -> dict | None:
        return s2s.transcribe(backend, model, feed) if self.task.seq2seq(model) else None

    def ort_generator(self, variant, options, providers):
        if not self.task.seq2seq(variant.model):
            return None
        generator = s2s.ort_generator(variant.folder, options, providers)
        return generator, s2s.encoder_session(generator)

    def throughput(self, samples_per_s: float, size: int) -> dict:
        return {"audio_s_per_s": samples_per_s * size}

    def row_figures(self, raw: dict, batch: int, size: int) -> dict:
        import numpy as np

        p50 = float(np.median(raw["samples_ms"]))
        audio = batch * size
        out = {"rtf": p50 / 1000 / audio, "ms_per_audio_s": p50 / audio}
        if raw.get("decode_samples_ms"):  # a transcription: its first token and each one after it
            out.update(new_tokens=raw.get("new_tokens"), first_token_p50_ms=float(np.median(raw["first_token_samples_ms"])),
                       decode_ms_per_token=float(np.median(raw["decode_samples_ms"])))
        return out

    def columns(self, columns: list) -> list:
        out = []
        for c in columns:
            if c.key == "seq_len":
                c = field_of(self.task.inputs.AXIS.key).column()
            elif c.key == "samples_per_s":
                out += [field_of("rtf").column(), field_of("ms_per_audio_s").column()]
                c = field_of("samples_per_s").column("clips/s")
            elif c.key == "tokens_per_s":
                c = field_of("audio_s_per_s").column()
            elif c.key == "p90_ms":  # a transcription's own figures (empty for CTC rows: not shown then)
                out += [field_of("first_token_p50_ms").column(), field_of("decode_ms_per_token").column()]
            out.append(c)
        return out


class SpeechExport(Export):
    """fp32 and dynamic int8 of the MatMul weights (ORTOptimizer knows no CTC speech model); a
    Whisper's three graphs each."""

    QUANT_OPERATORS: ClassVar[tuple[str, ...]] = ("MatMul",)
    DYNAMIC_OPTIONS: ClassVar[bool] = False  # a Whisper's int8 is a step of its own: the CPU's preset

    def step_file(self, step, model) -> str:
        if not self.task.seq2seq(model):
            return step.file
        return "encoder_model_quantized.onnx" if step.quant else "encoder_model.onnx"

    def build_step(self, model, step, out, source, options: dict) -> str | None:
        """Whisper: the export without post-processing (three graphs), int8 of each graph."""
        if not self.task.seq2seq(model):
            return None
        if step.level == "fp32" and not step.quant:
            return s2s.export(model, out, options.get("opset"), options.get("device", "cpu"))
        if step.quant == "dynamic":
            return s2s.quantize(source.folder, out, options["isa"], options["per_channel"], self.quant_operators(model))
        raise UnsupportedError(f"{step.name} is not built for {model.model_type} models; use fp32 and int8")


class SpeechValidation(Validation):
    """On the user's speech, the model's own, LibriVox or synthetic clips; a Whisper's encoder output
    and its greedy tokens."""

    SAMPLES: ClassVar[int] = 4

    def reference(self, model, examples: list, source: str):
        if self.task.seq2seq(model):
            return s2s.Reference(model, examples, source)
        return super().reference(model, examples, source)

    def divergence(self, variant_name: str, figures: dict) -> str | None:
        problem = super().divergence(variant_name, figures)
        if problem and "greedy_tokens" in figures:  # Whisper: the encoder's output is what the cosine is of
            problem += f"; greedy tokens matched on {figures.get('argmax_agreement', 0):.0%} of clips"
        return problem

    def decides(self, output: str) -> str | None:
        return "token" if output == "logits" else None  # a CTC symbol per frame


@register
class SpeechRecognition(Task):
    NAME = "automatic-speech-recognition"
    EXPORT_TASK = "automatic-speech-recognition"
    AUTO_CLASS = "AutoModelForCTC"
    ARCHITECTURES = ("ForCTC",)
    MODALITY = "audio"
    DESCRIPTION = "a transcript per clip (CTC)"
    DEFAULT_METRICS = ("wer", "cer")
    CLASSICAL_BASELINE = "no classical speech baseline"
    Inputs = SpeechInputs
    Measurement = SpeechMeasurement
    Export = SpeechExport
    Validation = SpeechValidation
    Requests = SpeechRequests

    # -- which models ------------------------------------------------------------------------
    @classmethod
    def fits_modality(cls, config: dict) -> bool:
        return "conv_dim" in config or "feat_extract_norm" in config or s2s.is_seq2seq(config)

    @classmethod
    def matches(cls, config: dict) -> bool:
        """CTC models, and speech encoder-decoders (``WhisperForConditionalGeneration``)."""
        archs = config.get("architectures") or []
        whisper = s2s.is_seq2seq(config) and any(a.endswith("ForConditionalGeneration") for a in archs)
        return whisper or super().matches(config)

    def auto_class(self, model) -> str:
        return "AutoModelForSpeechSeq2Seq" if self.seq2seq(model) else self.AUTO_CLASS

    def exporter_task(self, model) -> str:
        return s2s.EXPORT_TASK if self.seq2seq(model) else super().exporter_task(model)

    def check_folder(self, path: Path) -> None:
        require_any(path, ("preprocessor_config.json",), "feature extractor (no preprocessor_config.json)",
                    "save the processor beside them: processor.save_pretrained(folder)")
        require_any(path, ("vocab.json", "tokenizer_config.json", "tokenizer.json"), "vocabulary (no vocab.json)",
                    "save the processor beside them: processor.save_pretrained(folder)")

    def card_lines(self, model) -> list[tuple[str, str]]:
        if self.seq2seq(model):
            c = model.config
            return [("sampling rate", f"{self.rate(model)} Hz"), ("input", f"{c.get('num_mel_bins')} mel bins, "
                     "every clip padded to 30 s"), ("layers", f"{c.get('encoder_layers')} encoder, "
                     f"{c.get('decoder_layers')} decoder"), ("vocabulary", f"{c.get('vocab_size'):,} tokens")]
        return [("sampling rate", f"{self.rate(model)} Hz"),
                ("frames", f"one per {self.stride(model)} samples ({1000 * self.stride(model) / self.rate(model):.3g} ms)"),
                ("vocabulary", f"{model.config.get('vocab_size')} CTC symbols")]

    def evaluator(self):
        return SpeechRecognitionEvaluator(self)

    # -- what the parts and the evaluator read off a model -----------------------------------
    def seq2seq(self, model) -> bool:
        return s2s.is_seq2seq(model.config)

    def rate(self, model) -> int:
        return int(model.preprocessor_config.get("sampling_rate") or 16000)

    def stride(self, model) -> int:
        """Samples per output frame: the product of the feature encoder's convolution strides."""
        out = 1
        for s in model.config.get("conv_stride") or (5, 2, 2, 2, 2, 2, 2):
            out *= int(s)
        return out

    def frames(self, model, samples: int) -> int:
        """Output frames of a clip of ``samples`` (each convolution: (length - kernel) // stride + 1)."""
        length = samples
        kernels = model.config.get("conv_kernel") or (10, 3, 3, 3, 3, 2, 2)
        strides = model.config.get("conv_stride") or (5, 2, 2, 2, 2, 2, 2)
        for k, s in zip(kernels, strides):
            length = (length - int(k)) // int(s) + 1
        return max(0, length)

    def takes_mask(self, model) -> bool:
        return bool(model.preprocessor_config.get("return_attention_mask"))
