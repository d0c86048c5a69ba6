"""The real-time factor of each variant of a Whisper-style model and of a CTC model, in interleaved runs.

No speech weights exist offline, so both models have real architectures and random weights, built
once into the cache: their compute is real, their transcripts are not.

- Whisper-tiny's architecture (transformers' WhisperConfig defaults: 4 encoder and 4 decoder
  layers, d_model 384, 51,865 tokens; 38 M parameters): one run is a greedy transcription of
  --new-tokens tokens (16) from 30 s of log-mel frames (Whisper pads every clip to 30 s);
- wav2vec2-base's architecture (Wav2Vec2Config defaults: 12 layers, hidden 768, the 7-layer
  convolutional feature encoder; 94 M parameters), 5 s of audio per run.

torch, fp32 and int8 (dynamic, MatMul weights) of each at batch 1, 2 threads; the RTF is the run's
p50 over the audio's 5 s. The CPU's flags are printed beside the figures; the Whisper-style model's
int8 RTF speed-up over torch eager is printed last. A Whisper variant is its three graphs (the
encoder, the first-step decoder and the decoder over the KV cache, each with the decoder's
weights): its size on disk is theirs.

    python benchmarks/speech.py [--seconds 5] [--new-tokens 16] [--min-time 1] [--max-time 30]
"""

import argparse
import json

from hfmagic.benchmarking.api import benchmark
from hfmagic.core.config import settings
from hfmagic.core.envcard import cpu_flags, cpu_model
from hfmagic.export.api import export_onnx
from hfmagic.models.handle import load_model


def byte_tokenizer(special: list[str]):
    """A byte-level tokenizer (the 256 byte symbols and the special tokens, no merges): the models'
    processors need one; these benchmarks never decode."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    symbols = special + sorted(pre_tokenizers.ByteLevel.alphabet())
    bpe = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(symbols)}, merges=[]))
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=special[0], pad_token=special[0])


def whisper_tokenizer():
    from transformers import WhisperTokenizerFast

    return WhisperTokenizerFast(tokenizer_object=byte_tokenizer(["<|endoftext|>"]).backend_tokenizer,
                                eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>",
                                bos_token="<|endoftext|>")


def build_whisper():
    folder = settings().cache_path / "benchmarks" / "whisper-tiny-random-v2"
    if (folder / "config.json").exists():
        return folder
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    config = transformers.WhisperConfig(decoder_start_token_id=50258, eos_token_id=50257, pad_token_id=50257,
                                        bos_token_id=50257)
    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    model.generation_config = transformers.GenerationConfig(decoder_start_token_id=50258, eos_token_id=50257,
                                                            pad_token_id=50257)
    model.save_pretrained(folder, safe_serialization=True)
    transformers.WhisperFeatureExtractor().save_pretrained(folder)
    whisper_tokenizer().save_pretrained(folder)
    return folder


def build_ctc():
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


def measure(folder, name, args, **extra):
    model = load_model(folder, name=name)
    variants = export_onnx(model, progress=False)
    print(variants)
    # a run takes up to a second here: few warm-ups and runs per slice, so that the rounds repeat
    result = benchmark(variants, batch_sizes=[1], audio_seconds=[args.seconds], threads=2, warmup=2, min_runs=3,
                       min_time=args.min_time, max_time=args.max_time, progress=False, **extra)
    print(result)
    rows = {r["variant"]: r for r in result.rows if r["status"] == "ok"}
    for variant, r in rows.items():
        extra_text = (f"; first token {r['first_token_p50_ms']:.1f} ms, {r['decode_ms_per_token']:.2f} ms per token"
                      if r.get("decode_ms_per_token") else "")
        print(f"{name} {variant:6s} RTF {r['rtf']:.4f} ({r['ms_per_audio_s']:.1f} ms per second of audio{extra_text})")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument("--max-time", type=float, default=60.0)
    args = parser.parse_args()
    measure(build_ctc(), "wav2vec2_base_random", args)
    whisper = measure(build_whisper(), "whisper_tiny_random", args, new_tokens=args.new_tokens)
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx")))
    print(f"CPU: {cpu_model()}; flags: {' '.join(flags)}; avx512_vnni: {'yes' if 'avx512_vnni' in flags else 'no'}")
    best = whisper["int8"]
    interval = (f"95% CI {best['speedup_low']:.2f}-{best['speedup_high']:.2f}" if best.get("speedup_low") is not None
                else f"no interval: {best.get('speedup_rounds')} clean rounds")
    print(f"whisper-tiny-sized int8 RTF speed-up over torch eager (batch 1, {args.new_tokens} tokens, 2 threads; "
          f"{interval}): {best['speedup']:.2f}")


if __name__ == "__main__":
    main()
