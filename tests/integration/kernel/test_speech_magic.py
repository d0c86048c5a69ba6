"""Speech recognition through a real shell: tiny random CTC models on real LibriVox speech (Debian's
pocketsphinx-testdata), WER equal to jiwer's, the real-time factor, audio folders and bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from IPython.core.error import UsageError

from hfmagic import evaluate, load_model
from hfmagic.tasks.speech.audio import LIBRIVOX
from tests.support.fast import AUDIO_IMAGE_TIMING as FAST

pytestmark = pytest.mark.skipif(not LIBRIVOX.exists(), reason="needs Debian's pocketsphinx-testdata (make data)")


def test_shell_loop_with_wer_equal_to_jiwers_and_the_real_time_factor(shell, tiny_speech):
    import jiwer

    from hfmagic.tasks.speech.evaluate import normalise

    shell.user_ns["w2v"] = load_model(tiny_speech("wav2vec2"), name="w2v")
    shell.run_line_magic("export_onnx", "w2v --name w2v_onnx -q")
    bench = shell.run_line_magic("benchmark", f"w2v_onnx --batch-sizes 1 --audio-seconds 2,4 {FAST} --no-widget -o -q")
    assert [(r["variant"], r["audio_seconds"]) for r in bench.rows] == [
        ("torch", 2), ("torch", 4), ("fp32", 2), ("fp32", 4), ("int8", 2), ("int8", 4)]
    for r in bench.rows:
        assert r["status"] == "ok" and r["seq_len"] is None
        assert r["rtf"] == pytest.approx(r["p50_ms"] / 1000 / r["audio_seconds"])
        assert r["audio_s_per_s"] == pytest.approx(r["samples_per_s"] * r["audio_seconds"])
    headings = [c.heading() for c in bench.table().columns]
    assert {"audio s", "RTF", "ms/audio s", "audio s/s"} <= set(headings)

    result = shell.run_line_magic("evaluate", "w2v_onnx --data librivox --no-widget -o -q")
    assert [r["variant"] for r in result.rows] == ["torch", "fp32", "int8"] and result.rows[0]["n"] == 5
    assert result.lower_is_better
    refs = [line.split("</s>")[0].replace("<s>", "").strip()
            for line in (LIBRIVOX / "transcription").read_text().splitlines()]
    torch_row = result.rows[0]
    hyps = [f["prediction"] for f in result.flip_rows if f["variant"] == "fp32"]  # none: fp32 agrees
    assert hyps == [] and result.rows[1]["agreement"] == 1.0
    texts = result.predictions["torch"]["text"]
    assert torch_row["wer"] == pytest.approx(jiwer.wer([normalise(r) for r in refs], [normalise(t) for t in texts]))
    assert torch_row["cer"] == pytest.approx(jiwer.cer([normalise(r) for r in refs], [normalise(t) for t in texts]))
    assert torch_row["wer_low"] <= torch_row["wer"] <= torch_row["wer_high"]
    assert any("does not transcribe this audio" in n for n in result.notes)  # an untrained model: said so


def test_an_audio_folder_with_transcripts_resampled_and_its_bad_input(shell, tiny_speech, tmp_path):
    import soundfile

    good = tmp_path / "clips"
    good.mkdir()
    lines = []
    for wav in sorted(LIBRIVOX.glob("*.wav"))[:3]:
        wave, rate = soundfile.read(wav, dtype="float32")
        from scipy.signal import resample_poly

        soundfile.write(good / f"{wav.stem}.flac", resample_poly(wave, 2, 1), 2 * rate)  # 32 kHz FLAC
        lines.append(f"{wav.stem}\thello world")
    (good / "transcripts.txt").write_text("\n".join(lines) + "\n")
    shell.user_ns["w2v"] = load_model(tiny_speech("wav2vec2"), name="w2v")
    result = evaluate(shell.user_ns["w2v"], data=good, variants=["torch"], progress=False)
    assert result.rows[0]["n"] == 3 and any("resampled from 32000 Hz" in n for n in result.notes)

    stereo = tmp_path / "stereo"
    stereo.mkdir()
    soundfile.write(stereo / "a.wav", np.zeros((16000, 2), dtype="float32"), 16000)
    (stereo / "transcripts.txt").write_text("a\thello\n")
    mismatch = tmp_path / "mismatch"
    shutil.copytree(good, mismatch)
    (mismatch / "transcripts.txt").write_text("\n".join(lines[:2]) + "\nnot-a-file\tsomething\n")
    missing = tmp_path / "missing"
    shutil.copytree(good, missing)
    (missing / "transcripts.txt").write_text("\n".join(lines[:2]) + "\n")
    low = tmp_path / "low"
    low.mkdir()
    soundfile.write(low / "a.wav", np.zeros(4000, dtype="float32"), 4000)
    (low / "transcripts.txt").write_text("a\thello\n")
    before = set(shell.user_ns)
    cases = {
        f"evaluate w2v --data {stereo} -q": "has 2 channels; hfmagic takes mono audio",
        f"evaluate w2v --data {mismatch} -q": "names 'not-a-file', which is not an audio file",
        f"evaluate w2v --data {missing} -q": "has no transcript",
        f"evaluate w2v --data {low} -q": "sampled at 4000 Hz",
        f"evaluate w2v --data {tmp_path / 'nowhere'} -q": "no folder at",
        "evaluate w2v --data librivox --metrics accuracy -q": "unknown metric 'accuracy' for speech recognition",
        "benchmark w2v --image-sizes 32 -q": "--image-sizes is not an axis of w2v",
        "export_onnx w2v --levels O2 -q": "unknown level 'O2'",
    }
    for line, expected in cases.items():
        with pytest.raises(UsageError) as err:
            shell.run_line_magic(*line.split(" ", 1))
        assert expected in str(err.value) and "\n" not in str(err.value), line
    assert set(shell.user_ns) == before
