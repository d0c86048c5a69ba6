"""What a served speech recognizer takes and answers (see :class:`hfmagic.tasks.base.Requests`):
an audio file (wav, flac, ogg; mono, 8 kHz or more, resampled to the model's rate) in base64 as
``{"inputs": "UklGR..."}``, or the file itself as the request's body (``Content-Type: audio/wav``);
its transcript (CTC's greedy decoding, or a Whisper's greedy generation, as %evaluate's)."""

from __future__ import annotations

from hfmagic.core.errors import UsageProblem
from hfmagic.tasks.base import EvalData, Requests
from hfmagic.tasks.speech.audio import AudioData, decode, encode
from hfmagic.tasks.speech.evaluate import s2s_window


class SpeechRequests(Requests):
    SHAPE = '"a wav, flac or ogg file in base64"'
    FILES = ("audio/",)

    def example(self, model, value):
        wave = decode(value, self.task.rate(model))
        window = s2s_window(model)
        if window and len(wave) / self.task.rate(model) > window:
            raise UsageProblem(f"the request's audio is {len(wave) / self.task.rate(model):.1f} s long; {model.name} "
                               f"transcribes one {window:g} s window: send clips of up to {window:g} s")
        if not len(wave):
            raise UsageProblem("the request's audio holds no samples")
        return wave

    def data(self, model, examples):
        clips = AudioData(list(examples), None, self.task.rate(model), "requests", {})
        return EvalData({"data": clips}, len(examples), "requests", {})

    def answers(self, model, data, prediction):
        return [{"text": text} for text in prediction["text"]]

    def payloads(self, model, data):
        clips = data.examples["data"]
        return [encode(wave, clips.rate) for wave in clips.audio]
