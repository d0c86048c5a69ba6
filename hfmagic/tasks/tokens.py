"""Text read through a tokenizer: what the text tasks (hfmagic.tasks.text) and text generation
(hfmagic.tasks.generation) share. A tokenizer beside the weights, the batch x tokens shape within the
model's positions, integer token inputs (synthetic or tokenized), tokens/s, ORTOptimizer's levels,
validation on real sentences and which outputs are per token: :class:`TextTask` and its parts.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import ClassVar

from hfmagic.core.config import settings
from hfmagic.core.errors import UnsupportedError, UsageProblem
from hfmagic.core.shapes import TEXT_AXIS
from hfmagic.data.tables import load_data
from hfmagic.tasks.base import Task, read_json, require_any
from hfmagic.tasks.protocols import Export, Inputs, Measurement, Validation

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer.model")
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# models whose position ids start after the padding index: max_position_embeddings - pad - 1 usable
OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "mpnet", "longformer", "data2vec-text",
                    "xlm_roberta", "data2vec_text"}
# configs of other modalities that also carry a vocabulary (speech decoders, vision-text models)
_NOT_TEXT_KEYS = ("num_mel_bins", "image_size", "vision_config", "audio_config", "sampling_rate", "conv_dim",
                  "feat_extract_norm", "num_channels")
VALIDATION_TOKENS = 128  # validation and calibration: texts padded to the longest, at most this many tokens
# real sentences of different lengths (padding is exercised), used when no data came with the call
SAMPLE_TEXTS = [
    "The central bank raised interest rates again on Thursday.",
    "Shares in the carmaker fell sharply after it warned that profits would be lower than expected "
    "this year because of rising costs and weaker demand in its largest markets.",
    "What a match!",
    "The film won three awards at the festival, including best director and best original score.",
    "Parliament will vote on the new energy bill next week, the minister told reporters.",
    "Is the new phone worth the price?",
    "Researchers released an open-source model that translates between two hundred languages.",
    "The striker scored twice in the second half to send his team to the final.",
]


class TokenInputs(Inputs):
    """Texts through the model's tokenizer: batch x tokens, integer token inputs."""

    AXIS = TEXT_AXIS
    EXAMPLES = "texts"
    PREPROCESSOR = "tokenizer"

    def preprocessor(self, model):
        return model.tokenizer()

    def position_limit(self, model) -> int | None:
        """How many tokens one sequence can hold: the position table (less the offset RoBERTa-style
        models start at) and the tokenizer's model_max_length, whichever is smaller."""
        limit = model.max_positions
        if limit is not None and model.model_type in OFFSET_POSITIONS:
            limit -= (model.config.get("pad_token_id") or 0) + 1
        saved = read_json(Path(model.path) / "tokenizer_config.json").get("model_max_length")
        if isinstance(saved, int) and 0 < saved < 1_000_000:
            limit = saved if limit is None else min(limit, saved)
        return limit

    def sizes(self, model) -> list[int]:
        return list(settings().seq_lens)

    def check_sizes(self, model, sizes: list[int], new_tokens: int = 0) -> None:
        check_positions(model, sizes, new_tokens)

    def model_inputs(self, model, forward=None) -> list[str]:
        """The inputs both the tokenizer makes and the model takes: a DistilBERT saved with a BERT
        tokenizer gets no token_type_ids. Nor does a model without a token-type table (no
        type_vocab_size above 1: GPT-2 and its kin, RoBERTa): GPT-2's forward takes them but looks
        them up in its word embeddings, shifting every position, and the graph optimum exports
        takes none, so a plain PreTrainedTokenizerFast's zeros would part PyTorch from ONNX."""
        made = list(getattr(model.tokenizer(), "model_input_names", None) or TEXT_INPUTS)
        names = [n for n in TEXT_INPUTS if n in made or n == "input_ids"]
        if (model.config.get("type_vocab_size") or 0) <= 1:
            names = [n for n in names if n != "token_type_ids"]
        if forward is not None:
            accepted = inspect.signature(forward).parameters
            names = [n for n in names if n in accepted]
        return names

    def synthetic(self, names: list[str], shape: dict, config: dict) -> dict:
        """Inputs of exactly ``shape``: random valid token ids, attention mask of ones, token types
        zero, positions 0..seq-1 (int64, as the exporter declares them)."""
        import numpy as np

        batch, seq = shape["batch_size"], shape["seq_len"]
        rng = np.random.default_rng(batch * 100_003 + seq)
        vocab = int(config.get("vocab_size") or 2)
        made = {"input_ids": lambda: rng.integers(0, vocab, size=(batch, seq), dtype=np.int64),
                "attention_mask": lambda: np.ones((batch, seq), dtype=np.int64),
                "token_type_ids": lambda: np.zeros((batch, seq), dtype=np.int64),
                "position_ids": lambda: np.broadcast_to(np.arange(seq, dtype=np.int64), (batch, seq)).copy()}
        unknown = [n for n in names if n not in made]
        if unknown:
            raise UnsupportedError(f"the model takes {', '.join(unknown)}, which the {self.task.NAME} task cannot "
                                   f"make up (it makes {', '.join(made)})")
        return {n: made[n]() for n in names}

    def tokenize(self, tokenizer, examples: list, **options):
        """The tokenizer on a batch of examples (``options``: padding, truncation, ...). Every place
        that tokenizes examples goes through here: a task of text pairs tokenizes both texts."""
        return tokenizer(examples, **options)

    def encode(self, model, examples: list, size: int | None = None) -> dict:
        """Real texts tokenized: padded to the longest, at most 128 tokens or the model's positions
        (``size`` None), or to exactly ``size`` tokens (padded and truncated)."""
        tokenizer = model.tokenizer()
        if size is not None:
            return dict(self.tokenize(tokenizer, examples, padding="max_length", truncation=True, max_length=size,
                                      return_tensors="np"))
        if tokenizer.pad_token is None:  # GPT-2 style tokenizers have none: pad with end-of-text
            tokenizer.pad_token = tokenizer.eos_token
        limit = min(VALIDATION_TOKENS, self.position_limit(model) or VALIDATION_TOKENS)
        return dict(self.tokenize(tokenizer, examples, padding=True, truncation=True, max_length=limit,
                                  return_tensors="np"))

    def complete(self, names: list[str], encoded: dict) -> dict:
        """Tokenizer outputs made into exactly the inputs ``names`` (a graph's, a forward's): what
        the tokenizer did not make is what PyTorch uses when given none (zeros, positions)."""
        import numpy as np

        ids = np.asarray(encoded["input_ids"])
        feed = {}
        for name in names:
            value = encoded.get(name)
            if value is None and name == "position_ids":
                value = np.broadcast_to(np.arange(ids.shape[1]), ids.shape)
            elif value is None:
                value = np.zeros_like(ids)
            feed[name] = np.asarray(value, dtype=np.int64)
        return feed

    def read(self, model, source, column: str | None = None, limit: int | None = None):
        return load_data(source, text_column=column, limit=limit, require_labels=False)

    def examples(self, data) -> list | None:
        """The texts read (or a model's held-out DataFrame's text column)."""
        if hasattr(data, "texts"):
            return data.texts
        return list(data["text"]) if "text" in getattr(data, "columns", ()) else None

    def samples(self, model, count: int) -> tuple[list, str]:
        return SAMPLE_TEXTS[:count], "hfmagic's sample sentences"

    def note(self, data) -> str:
        return f"inputs: {len(data)} real {self.EXAMPLES} from {data.source}, tokenized (padded/truncated) to each shape"


class TokenMeasurement(Measurement):
    """A forward pass per run; tokens/s beside samples/s."""

    def throughput(self, samples_per_s: float, size: int) -> dict:
        return {"tokens_per_s": samples_per_s * size}


class TokenExport(Export):
    """optimum's export, ORTOptimizer's O1-O4 (it fuses the text architectures), onnxruntime's transformer
    optimizer's own fusion for the model type (``fused``), dynamic and static int8."""

    LEVELS: ClassVar[tuple[str, ...]] = ("fp32", "O1", "O2", "O3", "O4", "fused")
    DEFAULT_LEVELS: ClassVar[tuple[str, ...]] = ("fp32", "O2")


class TokenValidation(Validation):
    """Outputs with one vector per token (hidden states, answer-span logits) leave out the padding."""

    def token_level(self, output: str) -> bool:
        return output in ("last_hidden_state", "start_logits", "end_logits")


class TextTask(Task):
    """What every text task shares (a tokenizer; batch x seq; integer token inputs)."""

    MODALITY = "text"
    Inputs = TokenInputs
    Measurement = TokenMeasurement
    Export = TokenExport
    Validation = TokenValidation

    @classmethod
    def fits_modality(cls, config: dict) -> bool:
        return ("vocab_size" in config and not config.get("is_encoder_decoder")
                and not any(k in config for k in _NOT_TEXT_KEYS))

    def check_folder(self, path: Path) -> None:
        require_any(path, TOKENIZER_FILES, "tokenizer (no tokenizer.json, tokenizer_config.json or vocabulary file)",
                    "save it beside them: tokenizer.save_pretrained(folder)")


def check_positions(model, seq_lens: list[int], new_tokens: int = 0) -> None:
    """Every sequence length fits the model's positions (the task's rule: RoBERTa-style offsets and
    the tokenizer's model_max_length); a generation's prompt with its new tokens too."""
    limit = model.task_plugin.inputs.position_limit(model)
    if limit is None:
        return
    too_long = [s for s in seq_lens if s + new_tokens > limit]
    if too_long and new_tokens:
        raise UsageProblem(f"a prompt of {too_long[0]} tokens plus {new_tokens} new tokens is beyond {model.name}'s "
                           f"context of {limit} tokens; use --prompt-lens up to {limit - new_tokens}, or fewer "
                           "--new-tokens")
    if too_long:
        raise UsageProblem(f"sequence length {too_long[0]} is beyond {model.name}'s {limit} positions; "
                           f"use --seq-lens up to {limit}")
