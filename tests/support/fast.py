"""Settings that keep the tests' sweeps short: few runs, little warm-up, one thread. Each is named for
what it is for; a module imports the one it uses under its own short name (``... as FAST``)."""

SWEEP_NO_WIDGET = "--threads 1 --warmup 1 --min-runs 3 --min-time 0.02 --no-widget"

SWEEP_TIMING = "--threads 1 --warmup 1 --min-runs 3 --min-time 0.05"

BENCHMARK_TIMING = "--threads 1 --warmup 2 --min-runs 5 --min-time 0.05"

BENCHMARK_TIMING_KW = dict(threads=1, warmup=2, min_runs=5, min_time=0.05, progress=False)

NO_WARMUP = "--threads 1 --warmup 0 --min-runs 2 --min-time 0"

NO_WARMUP_KW = dict(threads=1, warmup=0, min_runs=2, min_time=0, progress=False)

CLUSTER_SWEEP = dict(batch_sizes=[1], seq_lens=[16], min_time=0.05, min_runs=3, warmup=1, max_time=2, threads=1,
                     progress=False)

CLUSTER_SWEEP_LINE = "--batch-sizes 1 --seq-lens 8 --threads 1 --warmup 1 --min-runs 3 --min-time 0.05 --max-time 2"

DECODER_TIMING = "--threads 1 --warmup 1 --min-runs 3 --min-time 0.05 --max-time 3"

STORE_BENCH = "--variants fp32 --batch-sizes 1 --seq-lens 8 --warmup 1 --min-runs 2 --min-time 0.01 --inline -o -q"

TWO_MODELS_SWEEP = dict(variants=["torch", "fp32"], batch_sizes=[1], seq_lens=[8], threads=1, warmup=0, min_runs=3,
                        min_time=0.05, inline=True, progress=False)

INLINE_TWO_BATCHES = "--batch-sizes 1,2 --seq-lens 8 --threads 1 --warmup 1 --min-runs 3 --min-time 0.02 --inline"

OPTIMIZE_SEARCH = dict(backends=["onnxruntime", "torch"], threads=1, min_time=0.05, samples=16, progress=False)

INLINE_TIMING = "--threads 1 --warmup 1 --min-runs 3 --min-time 0.02 --inline"

AUDIO_IMAGE_TIMING = "--warmup 1 --min-runs 3 --min-time 0.05 --max-time 1 --threads 1"

TORCH_ONLY_SWEEP = "--variants torch --backends torch --batch-sizes 1 --seq-lens 8 --min-time 0.05 --min-runs 2 " \
                   "--warmup 0 --inline -q"

TFIDF_SWEEP = "--batch-sizes 1 --seq-lens 16 --warmup 0 --min-runs 3 --min-time 0.05 --threads 1"

HEADLINE_SWEEP = "--batch-sizes 1 --seq-lens 16 --warmup 0 --min-runs 3 --min-time 0.05 --threads 1 --inline -o -q"
