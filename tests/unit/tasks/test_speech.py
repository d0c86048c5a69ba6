"""The speech task: CTC architectures (wav2vec2, HuBERT) exported and validated on real LibriVox speech,
benchmarked without a worker; Whisper's three graphs, its timing and transcripts, audio too long refused."""

from __future__ import annotations


import numpy as np
import pytest

from hfmagic import benchmark, evaluate, export_onnx, load_model
from hfmagic.tasks.speech.audio import LIBRIVOX
from tests.support.tiny import SPEECH_ARCHS, make_tiny_whisper

pytestmark = pytest.mark.skipif(not LIBRIVOX.exists(), reason="needs Debian's pocketsphinx-testdata (make data)")


@pytest.mark.parametrize("arch", sorted(SPEECH_ARCHS))
def test_ctc_architectures_export_and_validate_on_real_speech(tiny_speech, tmp_path, arch):
    model = load_model(tiny_speech(arch))
    assert model.task == "automatic-speech-recognition"
    variants = export_onnx(model, output=tmp_path, progress=False)
    assert variants.names == ["torch", "fp32", "int8"]
    for v in variants:
        assert v.ok, (v.name, v.error)
    fp32 = variants["fp32"].validation
    assert fp32["cosine"] > 0.9999 and fp32["argmax_agreement"] == 1.0 and fp32["texts"] == 4
    assert fp32["inputs_from"] == "LibriVox clips (pocketsphinx-testdata)"
    assert any("MatMul weights only" in n for n in variants.notes)


def test_a_speech_model_benchmarks_without_a_worker_too(tiny_speech):
    result = benchmark(load_model(tiny_speech("wav2vec2")), variants=["torch"], batch_sizes=[2], audio_seconds=[1],
                       inline=True, warmup=1, min_runs=3, min_time=0.05, progress=False, inputs="librivox")
    row = result.rows[0]
    assert row["audio_seconds"] == 1 and row["rtf"] > 0 and row["e2e_p50_ms"] > 0  # real clips, cut to 1 s
    assert any(n.startswith("inputs: 5 real clips from librivox") for n in result.notes)


@pytest.fixture(scope="session")
def whisper_variants(tmp_path_factory):
    return export_onnx(load_model(make_tiny_whisper(tmp_path_factory.mktemp("whisper")), name="tw"), progress=False)


def test_a_whisper_variant_is_its_three_graphs_validated_on_the_encoder_and_greedy_tokens(whisper_variants):
    from hfmagic.onnx.build import graph_files

    assert whisper_variants.model.task == "automatic-speech-recognition"
    assert whisper_variants.names == ["torch", "fp32", "int8"]
    for name, suffix in (("fp32", ""), ("int8", "_quantized")):
        v = whisper_variants[name]
        assert v.ok, v.error
        graphs = sorted(p.name for p in graph_files(v.path))
        assert graphs == sorted(f"{g}{suffix}.onnx" for g in ("decoder_model", "decoder_with_past_model", "encoder_model"))
        assert v.path.name == f"encoder_model{suffix}.onnx"
        assert v.size_bytes == sum(p.stat().st_size for p in graph_files(v.path)) > v.path.stat().st_size
        assert v.validation["greedy_tokens"] == 8 and v.validation["texts"] == 2
    assert whisper_variants["fp32"].validation["cosine"] > 0.9999
    assert whisper_variants["fp32"].validation["argmax_agreement"] == 1.0  # the same tokens as PyTorch's


def test_whisper_is_timed_per_transcription_and_scored_by_its_transcripts(whisper_variants):
    import jiwer

    from hfmagic.tasks.speech.evaluate import normalise

    result = benchmark(whisper_variants, batch_sizes=[1], audio_seconds=[5], new_tokens=6, warmup=1, min_runs=3,
                       min_time=0.05, max_time=1, threads=1, progress=False)
    assert [r["variant"] for r in result.rows] == ["torch", "fp32", "int8"]
    for r in result.rows:
        assert r["status"] == "ok" and r["new_tokens"] == 6 and r["audio_seconds"] == 5
        assert 0 < r["first_token_p50_ms"] < r["p50_ms"] and 0 < r["decode_ms_per_token"] < r["p50_ms"]
        assert r["rtf"] == pytest.approx(r["p50_ms"] / 1000 / 5)
    assert {"1st token ms", "ms/token", "RTF"} <= {c.heading() for c in result.table().columns}
    refused = benchmark(whisper_variants, variants=["fp32"], backends=["openvino"], batch_sizes=[1], audio_seconds=[5],
                        warmup=0, min_runs=1, min_time=0.01, progress=False).rows[0]["status"]
    assert "several graphs" in refused  # not silently the encoder alone

    evaluation = evaluate(whisper_variants, data="librivox", progress=False)
    refs = [line.split("</s>")[0].replace("<s>", "").strip()
            for line in (LIBRIVOX / "transcription").read_text().splitlines()]
    texts = evaluation.predictions["torch"]["text"]
    assert len(texts) == 5 and evaluation.rows[1]["agreement"] == 1.0 and evaluation.rows[1]["max_logit_diff"] is None
    assert evaluation.rows[0]["wer"] == pytest.approx(
        jiwer.wer([normalise(r) for r in refs], [normalise(t) or "" for t in texts]))


def test_audio_longer_than_whispers_window_is_refused_not_cut(whisper_variants, tmp_path):
    import soundfile

    from hfmagic.core.errors import DataError

    soundfile.write(tmp_path / "long.wav", np.zeros(16000 * 31, dtype="float32"), 16000)
    (tmp_path / "transcripts.txt").write_text("long\tsome words\n")
    with pytest.raises(DataError, match=r"long.wav is 31.0 s long; tw transcribes one 30 s window"):
        evaluate(whisper_variants, data=tmp_path, variants=["torch"], progress=False)
