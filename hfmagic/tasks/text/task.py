"""The text tasks: classification, token classification, question answering, feature extraction.

They share a tokenizer, the batch x seq shape, integer token inputs and the position limit. What
differs (the head, which outputs are per token, what an argmax decides, the metrics) is a class
attribute or a method of each.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from hfmagic.core.errors import UnsupportedError
from hfmagic.tasks import register
from hfmagic.tasks.base import Task, read_json, require_any

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer.model")
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# models whose position ids start after the padding index: max_position_embeddings - pad - 1 usable
OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "mpnet", "longformer", "data2vec-text",
                    "xlm_roberta", "data2vec_text"}
# configs of other modalities that also carry a vocabulary (speech decoders, vision-text models)
_NOT_TEXT_KEYS = ("num_mel_bins", "image_size", "vision_config", "audio_config", "sampling_rate", "conv_dim",
                  "feat_extract_norm", "num_channels")


class TextTask(Task):
    """What every text task shares (a tokenizer; batch x seq; integer token inputs)."""

    MODALITY = "text"

    @classmethod
    def fits_modality(cls, config: dict) -> bool:
        return ("vocab_size" in config and not config.get("is_encoder_decoder")
                and not any(k in config for k in _NOT_TEXT_KEYS))

    def check_folder(self, path: Path) -> None:
        from hfmagic.tasks.text.baseline import META, is_baseline

        if is_baseline(read_json(path / "config.json")):  # a classical baseline reads texts itself
            require_any(path, (META,), f"TF-IDF baseline file ({META})", "train it again: %load_model tfidf --data D")
            return
        require_any(path, TOKENIZER_FILES, "tokenizer (no tokenizer.json, tokenizer_config.json or vocabulary file)",
                    "save it beside them: tokenizer.save_pretrained(folder)")

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

    def synthetic_inputs(self, names: list[str], shape: dict, config: dict) -> dict:
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
            raise UnsupportedError(f"the model takes {', '.join(unknown)}, which the {self.NAME} task cannot "
                                   f"make up (it makes {', '.join(made)})")
        return {n: made[n]() for n in names}

    def encode_to_shape(self, tokenizer, texts: list[str], size: int) -> dict:
        """Real texts tokenized to exactly ``size`` tokens (padded and truncated)."""
        return dict(tokenizer(texts, padding="max_length", truncation=True, max_length=size, return_tensors="np"))

    def complete_inputs(self, names: list[str], encoded: dict) -> dict:
        """Tokenizer outputs made into exactly the inputs ``names`` (a graph's, a forward's): what
        the tokenizer did not make is what PyTorch uses when given none (zeros, positions)."""
        import numpy as np

        if names == ["texts"]:  # a classical baseline reads the texts themselves
            return {"texts": list(encoded["texts"])}
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

    def token_level(self, output: str) -> bool:
        return output in ("last_hidden_state", "start_logits", "end_logits")


@register
class TextClassification(TextTask):
    NAME = "text-classification"
    EXPORT_TASK = "text-classification"  # a plugin extending this task exports as it
    AUTO_CLASS = "AutoModelForSequenceClassification"
    ARCHITECTURES = ("ForSequenceClassification",)
    LABELLED = True
    DEFAULT_METRICS = ("accuracy", "f1_macro")
    CLASSICAL_BASELINE = "tfidf"
    DESCRIPTION = "a class per text"

    def evaluator(self):
        from hfmagic.tasks.text.evaluate import ClassificationEvaluator

        return ClassificationEvaluator(self)

    @classmethod
    def matches(cls, config: dict) -> bool:
        from hfmagic.tasks.text.baseline import is_baseline

        return is_baseline(config) or super().matches(config)

    def decides(self, output: str) -> str | None:
        return "class" if output == "logits" else None


@register
class TokenClassification(TextTask):
    NAME = "token-classification"
    EXPORT_TASK = "token-classification"  # a plugin extending this task exports as it
    AUTO_CLASS = "AutoModelForTokenClassification"
    ARCHITECTURES = ("ForTokenClassification",)
    LABELLED = True
    DESCRIPTION = "a tag per token (NER)"
    DEFAULT_METRICS = ("f1", "precision", "recall", "accuracy")

    def evaluator(self):
        from hfmagic.tasks.text.evaluate import TokenClassificationEvaluator

        return TokenClassificationEvaluator(self)

    def token_level(self, output: str) -> bool:
        return output == "logits" or super().token_level(output)

    def decides(self, output: str) -> str | None:
        return "token" if output == "logits" else None


@register
class QuestionAnswering(TextTask):
    NAME = "question-answering"
    EXPORT_TASK = "question-answering"  # a plugin extending this task exports as it
    AUTO_CLASS = "AutoModelForQuestionAnswering"
    ARCHITECTURES = ("ForQuestionAnswering",)
    DESCRIPTION = "an answer span in a context"
    DEFAULT_METRICS = ("f1", "exact_match")

    def evaluator(self):
        from hfmagic.tasks.text.evaluate import QuestionAnsweringEvaluator

        return QuestionAnsweringEvaluator(self)

    def decides(self, output: str) -> str | None:
        return "position" if output in ("start_logits", "end_logits") else None


@register
class FeatureExtraction(TextTask):
    NAME = "feature-extraction"
    EXPORT_TASK = "feature-extraction"  # a plugin extending this task exports as it
    AUTO_CLASS = "AutoModel"
    FALLBACK = True
    DEFAULT_METRICS = ("cosine",)
    DESCRIPTION = "an embedding per token (mean-pooled per text)"

    def evaluator(self):
        from hfmagic.tasks.text.evaluate import EmbeddingEvaluator

        return EmbeddingEvaluator(self)

    @classmethod
    def matches(cls, config: dict) -> bool:
        """A bare encoder (``BertModel``, ``GPT2Model``): no head, no LM head; or a config that
        names no architecture at all, when it is a text model."""
        archs = config.get("architectures") or []
        bare = all(a.endswith("Model") and "For" not in a and "LMHead" not in a for a in archs)
        return bare and cls.fits_modality(config)

    @classmethod
    def serves(cls, config: dict) -> bool:
        """Any text model but a classical baseline: AutoModel loads a classifier's or an LM's base
        without its head, and the embeddings of a fine-tuned encoder are a fair thing to measure."""
        from hfmagic.tasks.text.baseline import is_baseline

        return cls.fits_modality(config) and not is_baseline(config)
