"""The text tasks: classification, token classification, question answering, feature extraction.

They share a tokenizer, the batch x seq shape, integer token inputs and the position limit. What
differs (the head, which outputs are per token, what an argmax decides, the metrics) is a class
attribute or a method of each.
"""

from __future__ import annotations

from pathlib import Path

from hfmagic.tasks import register
from hfmagic.tasks.base import read_json, require_any
from hfmagic.tasks.tokens import TextTask
from hfmagic.tasks.text import demo

demo.register_data()  # load_data("bbc"), "demo", "demo-small": the demo's held-out BBC News articles

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
        from hfmagic.tasks.text.evaluate import TextClassificationEvaluator

        return TextClassificationEvaluator(self)

    @classmethod
    def matches(cls, config: dict) -> bool:
        from hfmagic.tasks.text.baseline import is_baseline

        return is_baseline(config) or super().matches(config)

    def check_folder(self, path: Path) -> None:
        from hfmagic.tasks.text.baseline import META, is_baseline

        if is_baseline(read_json(path / "config.json")):  # a classical baseline reads texts itself
            require_any(path, (META,), f"TF-IDF baseline file ({META})", "train it again: %load_model tfidf --data D")
            return
        super().check_folder(path)

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
