"""What ``evaluate()`` is asked to do: its options, one dataclass that is its signature, its help
and what the run store keeps to run it again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from hfmagic.core.records import Options, option
from hfmagic.models.variants import TORCH


@dataclass
class EvaluateOptions(Options):
    """The options of :func:`hfmagic.evaluation.api.evaluate`. The run store keeps them as the call
    resolved them (the data's source as given, the columns it read, the variants it scored, the batch
    sizes asked for, the cluster's address); ``rerun`` calls it again with them."""

    RECORDED: ClassVar[frozenset[str]] = frozenset({"target", "targets", "metric_names", "reference_used"})

    data: Any = option(None, "what the model's task reads: a DataFrame or Dataset, a CSV/JSON/JSONL/Parquet file, a "
                             "hub id, demo; CoNLL text or wnut16 (token classification); SQuAD JSON or squad-bbc "
                             "(question answering); a folder of class folders, digits (images); a folder of audio "
                             "with transcripts.txt, librivox (speech) (default: the model's own held-out split)")
    split: str | None = option(None, "the dataset's split (hub datasets; default test)")
    text_column: str | None = option(None, "the column with the texts (guessed when obvious)")
    label_column: str | None = option(None, "the column with the labels (guessed when obvious)")
    metrics: list[str] | None = option(None, "accuracy, precision/recall/f1 _macro/_micro/_weighted, mcc, "
                                             "evaluate:NAME or a metric script's path; cosine for embeddings "
                                             "(default: the task's)")
    variants: list[str] | None = option(None, "the variants to score (default: every one; the reference always)")
    limit: int | None = option(None, "score the first N examples only")
    batch_size: int | list[int] | None = option(None, "the batch size, or sizes, to score at (default: a variant "
                                                      "whose predictions depend on the batch, as dynamic int8's, at "
                                                      "1, the others at 32; a list scores those at each size and "
                                                      "shows the worst)")
    reference: str = option(TORCH, "the variant every other is compared with: VARIANT, or MODEL/VARIANT with several "
                                   "models (default: the first model's torch)")
    callback: Callable[[dict], None] | None = option(None, "called with each row and progress event (a live "
                                                           "dashboard)", stored=False)
    progress: bool = option(True, "show a progress bar (never with a callback: a live dashboard shows its own)",
                            stored=False)
    label_map: Any = option(None, "how the data's labels map to the model's: a dict, a JSON file holding one, a "
                                  "dict literal, or 'ids'")
    chat_template: bool = option(False, "text-generation: give each greedy prompt as a user's turn in the chat "
                                        "template", omit_default=True)
    max_tokens: int | None = option(None, "text-generation: perplexity over the data's first N tokens (default "
                                          "2048)", omit_default=True)
    image_column: str | None = option(None, "image classification: the column with the images (guessed when "
                                            "obvious)")
    audio_column: str | None = option(None, "speech recognition: the column with the audio (guessed when obvious)")
    cluster: str | None = option(None, "a Ray cluster's address (default: %config HFMagic.cluster): each variant's "
                                       "batches run there as shards and are scored here")
    on: str | None = option(None, "the nodes its shards run on: resources a node has (GPU:1, xeon:1)")
    backend: str | None = option(None, "what the ONNX variants run on: onnxruntime (default) or openvino",
                                 omit_default=True)
    reuse: dict | None = option(None, "a dict kept between evaluate calls on one model and one data (optimize keeps "
                                      "one per search): the reference's outputs at each batch size are kept in it and "
                                      "read back, so the reference runs once for them all", stored=False)
