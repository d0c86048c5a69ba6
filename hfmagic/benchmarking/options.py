"""What ``benchmark()`` is asked to do: its options, one dataclass that is its signature, its help
and what the run store keeps to run it again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from hfmagic.benchmarking.rounds import CI_TARGET
from hfmagic.core.records import Options, option


@dataclass
class BenchmarkOptions(Options):
    """The options of :func:`hfmagic.benchmarking.api.benchmark`. The run store keeps them as the
    call resolved them (the batch sizes, threads and variants it used, the cluster's address) and
    ``rerun`` calls it again with them; the size axes: only the model's own (``seq_lens`` for text)."""

    RECORDED: ClassVar[frozenset[str]] = frozenset({"target", "targets", "variants_by_model", "baseline_used"})

    variants: list[str] | None = option(None, "variant names (default: torch and the task's ONNX variants)")
    backends: list[str] | None = option(None, "torch, onnxruntime, onnxruntime-cuda, onnxruntime-tensorrt, "
                                              "openvino, torch-compile (default: torch for torch; onnxruntime, plus "
                                              "its GPU providers where present, for ONNX)")
    batch_sizes: list[int] | None = option(None, "batch sizes (default: %config HFMagic.batch_sizes)")
    seq_lens: list[int] | None = option(None, "tokens per sequence, text models (default: %config HFMagic.seq_lens)",
                                        stored=False)
    image_sizes: list[int] | None = option(None, "pixels per side, image models (default: the image processor's)",
                                           stored=False)
    audio_seconds: list[int] | None = option(None, "seconds of audio per clip, speech models (default 5)",
                                             stored=False)
    threads: int | None = option(None, "threads for every backend (default: %config HFMagic.threads)")
    warmup: int = option(10, "warm-up runs per configuration")
    min_runs: int = option(10, "at least this many timed runs per configuration")
    min_time: float = option(1.0, "and at least this many seconds")
    budget: float | None = option(None, "stop the sweep after this many seconds, saying what was skipped")
    baseline: str | None = option(None, "VARIANT[/BACKEND] (MODEL/VARIANT[/BACKEND] with several models) the "
                                        "speed-ups are against (default: the first model's torch)")
    inputs: Any = option(None, "real inputs (texts, images, clips): also time the preprocessor and the model end to "
                               "end (e2e_p50_ms)", stored=False)
    inputs_source: str | None = option(None, "where the inputs came from (a file, a hub id): what a rerun reads")
    inline: bool = option(False, "measure in this process, not a worker")
    callback: Callable[[dict], None] | None = option(None, "called with each row and progress event (a live "
                                                           "dashboard)", stored=False)
    timeout: float | None = option(None, "seconds a shape may take before its worker is called hung and killed "
                                         "(default 180 + 10 x min_time)")
    progress: bool = option(True, "show a progress bar", stored=False)
    force: bool = option(False, "measure shapes whose memory estimate exceeds the memory available (refused "
                                "otherwise, before anything runs)")
    order: str = option("interleaved", "interleaved: rounds visit every configuration in a fresh random order and "
                                       "speed-ups are paired by round; sequential: one configuration after another")
    max_time: float | None = option(None, "seconds the interleaved rounds may take (default 60 x min_time, at "
                                          "least 2)")
    ci_target: float = option(CI_TARGET, "the rounds end once every speed-up's 95% interval is within +- this "
                                         "fraction of it")
    new_tokens: int | list[int] | None = option(None, "text-generation models: tokens generated per run, greedy, no "
                                                      "early stop (default 64; seq_lens are then the prompts' "
                                                      "lengths); several: one sweep each, one after another")
    chat_template: bool = option(False, "text-generation models: each prompt a user's turn in the tokenizer's chat "
                                        "template, the assistant's turn opened (the prompt lengths include it)",
                                 omit_default=True)
    prompt_lens: list[int] | None = option(None, "text-generation models: another name for seq_lens", stored=False)
    cluster: str | None = option(None, "a Ray cluster's address (default: %config HFMagic.cluster; auto: the one "
                                       "started on this machine): every worker runs there as a Ray actor")
    on: str | None = option(None, "the cluster's nodes to run on: resources a node has (GPU:1, xeon:1, "
                                  "accelerator_type:H100; default the head node), or each: once on every kind of "
                                  "node, side by side")
