"""What %evaluate does for speech recognition (see :class:`hfmagic.tasks.base.Evaluator`).

Each clip's transcript is CTC's greedy decoding (the most likely symbol per frame, repeats and
blanks collapsed by the model's own tokenizer), over the frames the clip itself fills (padding left
out); for a Whisper-style model, its greedy generation (up to 64 tokens, to end of text), decoded
by its tokenizer. WER and CER are jiwer's over the whole set (every clip's substitutions, deletions and
insertions over every reference word or character); both sides are lower-cased, punctuation other
than apostrophes removed and spaces collapsed first. Intervals: percentile bootstrap over the clips
(the same resamples for every variant) of that corpus-level ratio. A flip is a clip whose
transcript differs from the reference's.
"""

from __future__ import annotations

import re

import numpy as np

from hfmagic.core.errors import DataError, UsageProblem
from hfmagic.data.metrics import resample_indices
from hfmagic.tasks.base import EvalData, Evaluator
from hfmagic.tasks.speech.audio import AudioData, load_audio

UNTRAINED_WER = 0.9  # a reference at or above this WER does not transcribe the audio


def s2s_window(model) -> float | None:
    """Seconds of audio one run of a Whisper-style model takes (its feature extractor's chunk); None for CTC."""
    if not model.task_plugin.seq2seq(model):
        return None
    return float(model.preprocessor_config.get("chunk_length") or 30)


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


class SpeechRecognitionEvaluator(Evaluator):
    FLIP_COLUMNS = ("variant", "row", "clip", "transcript", "reference", "prediction")
    METRICS = ("wer", "cer")
    LOWER_IS_BETTER = ("wer", "cer")
    PADDING = "clips sorted by length, each batch padded to its own longest"

    def padding(self, model) -> str:
        if self.task.seq2seq(model):
            return f"every clip padded to the model's {s2s_window(model):g} s window (its feature extractor's)"
        return self.PADDING

    def metrics(self, names, model):
        names = list(names or self.task.DEFAULT_METRICS)
        unknown = [n for n in names if n not in self.METRICS]
        if unknown:
            raise UsageProblem(f"unknown metric {unknown[0]!r} for speech recognition; use wer, cer (jiwer's, "
                               "lower is better)")
        return names

    def read(self, model, data, options: dict) -> EvalData:
        if isinstance(data, str) and data == model.source and isinstance(model.dataset, AudioData):
            data = model.dataset
        if options.get("label_map") is not None:
            raise UsageProblem("--label-map is for classifiers; a speech model's transcripts are compared as text")
        clips = load_audio(data, self.task.rate(model), split=options.get("split"),
                           audio_column=options.get("audio_column"), text_column=options.get("text_column"),
                           limit=options.get("limit"))
        empty = [n for n, t in zip(clips.names, clips.texts) if not normalise(t)]
        if empty:
            raise DataError(f"{empty[0]} has an empty transcript; WER needs words to compare with (remove the clip)")
        window = s2s_window(model)
        long = [(n, len(a) / clips.rate) for n, a in zip(clips.names, clips.audio) if window and len(a) / clips.rate > window]
        if long:  # Whisper's feature extractor would cut it silently, and its WER would count the cut words
            raise DataError(f"{long[0][0]} is {long[0][1]:.1f} s long; {model.name} transcribes one {window:g} s window "
                            "and hfmagic does not chunk longer audio: cut it into clips of up to "
                            f"{window:g} s ({len(long)} of {len(clips)} are longer)")
        return EvalData({"data": clips}, len(clips), clips.source, clips.fingerprint, clips.notes, clips.caption,
                        {"audio_column": options.get("audio_column"), "text_column": options.get("text_column")})

    def batches(self, model, data: EvalData, batch_size: int) -> list:
        audio = data.examples["data"].audio
        order = np.argsort([-len(a) for a in audio], kind="stable")
        return [(order[i:i + batch_size], self.task.inputs.encode(model, [audio[j] for j in order[i:i + batch_size]]))
                for i in range(0, len(order), batch_size)]

    def outputs(self, named: dict, feed: dict) -> list:
        if "tokens" in named:  # a Whisper's generated tokens
            return list(np.asarray(named["tokens"]))
        return list(np.asarray(named["logits"] if "logits" in named else next(iter(named.values()))))

    def finish(self, model, data, per_row):
        """Each clip's logits cut to its own frames, and its greedy CTC transcript."""
        audio = data.examples["data"].audio
        tokenizer = model.preprocessor().tokenizer
        if self.task.seq2seq(model):
            return {"logits": None, "text": [tokenizer.decode(row.tolist(), skip_special_tokens=True).strip()
                                             for row in per_row]}
        logits = [row[:self.task.frames(model, len(a))] for row, a in zip(per_row, audio)]
        texts = [tokenizer.decode(x.argmax(-1).tolist(), skip_special_tokens=True) for x in logits]
        return {"logits": logits, "text": texts}

    def score(self, data, prediction, metrics) -> dict:
        refs = [normalise(t) for t in data.examples["data"].texts]
        hyps = [normalise(t) for t in prediction["text"]]
        row = {}
        for metric in metrics:
            errors, totals = _errors(refs, hyps, metric)
            row[metric] = float(errors.sum() / totals.sum())
            samples = np.concatenate([errors[idx].sum(1) / np.maximum(totals[idx].sum(1), 1)
                                      for idx in resample_indices(len(refs))])
            row[f"{metric}_low"], row[f"{metric}_high"] = (float(v) for v in np.percentile(samples, [2.5, 97.5]))
        return row

    def reference_notes(self, data, row: dict) -> list[str]:
        wer = row.get("wer", row.get("cer"))
        if wer is not None and wer >= UNTRAINED_WER:
            return [f"the reference's WER is {wer:.0%}: the model does not transcribe this audio (an untrained or "
                    "unrelated model?), so its WER says nothing; agreement with the reference still does"]
        return []

    def compare(self, data, reference, prediction, variant: str, names=None) -> tuple[dict, list[dict]]:
        clips = data.examples["data"]
        ref, got = [normalise(t) for t in reference["text"]], [normalise(t) for t in prediction["text"]]
        changed = [i for i, (a, b) in enumerate(zip(ref, got)) if a != b]
        diff = None  # a Whisper's transcripts come from generate: no logits to compare
        if reference["logits"] is not None and prediction["logits"] is not None:
            diff = max((float(np.abs(a - b).max()) for a, b in zip(reference["logits"], prediction["logits"]) if a.size),
                       default=0.0)
        row = {"agreement": 1 - len(changed) / len(ref), "flip_rate": len(changed) / len(ref), "flips": len(changed),
               "max_logit_diff": diff}
        flips = [{"variant": variant, "row": i, "clip": clips.names[i], "transcript": clips.texts[i],
                  "reference": reference["text"][i], "prediction": prediction["text"][i]} for i in changed]
        return row, flips


def _errors(refs: list[str], hyps: list[str], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Per clip: (substitutions + deletions + insertions, reference words or characters), jiwer's."""
    import jiwer

    errors, totals = [], []
    for ref, hyp in zip(refs, hyps):
        out = jiwer.process_words(ref, hyp) if metric == "wer" else jiwer.process_characters(ref, hyp)
        errors.append(out.substitutions + out.deletions + out.insertions)
        totals.append(out.substitutions + out.deletions + out.hits)
    return np.asarray(errors, dtype=float), np.asarray(totals, dtype=float)
