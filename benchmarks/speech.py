"""The real-time factor of each variant of a wav2vec2-base-sized CTC model, in one interleaved run.

No speech weights exist offline, so the model is wav2vec2-base's architecture (transformers'
Wav2Vec2Config defaults: 12 layers, hidden 768, the 7-layer convolutional feature encoder; 94 M
parameters) with random weights and a 32-character vocabulary, built once into the cache: its
compute is a real wav2vec2-base's, its transcripts are not. torch, fp32 and int8 (dynamic, MatMul
weights) at batch 1 x 5 s of audio, 2 threads; agreement of int8's transcripts with torch's on the
LibriVox clips (Debian's pocketsphinx-testdata). The CPU's flags are printed beside the figures;
int8's RTF speed-up over torch eager is printed last.

    python benchmarks/speech.py [--seconds 5] [--min-time 1] [--max-time 30]
"""

import argparse
import json

from hfmagic.benchmarking import benchmark
from hfmagic.config import settings
from hfmagic.envcard import cpu_flags, cpu_model
from hfmagic.evaluation import evaluate
from hfmagic.export import export_onnx
from hfmagic.models import load_model


def build():
    folder = settings().cache_path / "benchmarks" / "wav2vec2-base-random-v1"
    if (folder / "config.json").exists():
        return folder
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    chars = list("abcdefghijklmnopqrstuvwxyz'")
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{c: i + 5 for i, c in enumerate(chars)}}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), word_delimiter_token="|")
    extractor = transformers.Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=False)
    torch.manual_seed(0)
    model = transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(vocab_size=len(vocab), pad_token_id=0)).eval()
    model.save_pretrained(folder, safe_serialization=True)
    transformers.Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument("--max-time", type=float, default=30.0)
    args = parser.parse_args()
    model = load_model(build(), name="wav2vec2_base_random")
    variants = export_onnx(model, progress=False)
    print(variants)
    quality = evaluate(variants, data="librivox", progress=False)
    for r in quality.rows:
        print(f"{r['variant']:6s} transcript agreement with torch {r.get('agreement', float('nan')):.0%} "
              f"(max |logit diff| {r.get('max_logit_diff', float('nan')):.3g})")
    result = benchmark(variants, batch_sizes=[1], audio_seconds=[args.seconds], threads=2, min_time=args.min_time,
                       max_time=args.max_time, progress=False)
    print(result)
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx")))
    print(f"CPU: {cpu_model()}; flags: {' '.join(flags)}; avx512_vnni: {'yes' if 'avx512_vnni' in flags else 'no'}")
    rows = {r["variant"]: r for r in result.rows if r["status"] == "ok"}
    for name, r in rows.items():
        print(f"{name:6s} RTF {r['rtf']:.4f} ({r['ms_per_audio_s']:.1f} ms per second of audio)")
    best = rows["int8"]
    print(f"int8 RTF speed-up over torch eager (batch 1 x {args.seconds} s, 2 threads; 95% CI "
          f"{best['speedup_low']:.2f}-{best['speedup_high']:.2f}): {best['speedup']:.2f}")


if __name__ == "__main__":
    main()
