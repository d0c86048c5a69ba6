"""The text tasks: classification, token classification, question answering, feature extraction.

They share a tokenizer, the batch x seq shape, integer token inputs and the position limit (their
parts are :mod:`hfmagic.tasks.tokens`'). What differs (the head, which outputs are per token, what
an argmax decides, the metrics) is a class attribute of each, or a small part of its own. The
text-classification task brings the TF-IDF baseline (a model kind, a backend and ``%load_model
tfidf``) and the demo classifiers (``demo``, ``demo-small``).
"""

from __future__ import annotations

from hfmagic.tasks import register
from hfmagic.tasks.text import demo, tfidf
from hfmagic.tasks.text.requests import AnswerRequests, EmbeddingRequests, TagRequests, TextRequests
from hfmagic.tasks.text.evaluate import (EmbeddingEvaluator, QuestionAnsweringEvaluator, TextClassificationEvaluator,
                                         TokenClassificationEvaluator)
from hfmagic.tasks.tokens import TextTask, TokenValidation

demo.register_data()  # load_data("bbc"), "demo", "demo-small": the demo's held-out BBC News articles


class ClassValidation(TokenValidation):
    def decides(self, output: str) -> str | None:
        return "class" if output == "logits" else None


class TagValidation(TokenValidation):
    """A tag per token: the logits are per token, each token's argmax a decision."""

    def token_level(self, output: str) -> bool:
        return output == "logits" or super().token_level(output)

    def decides(self, output: str) -> str | None:
        return "token" if output == "logits" else None


class SpanValidation(TokenValidation):
    def decides(self, output: str) -> str | None:
        return "position" if output in ("start_logits", "end_logits") else None


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
    Validation = ClassValidation
    Requests = TextRequests
    KINDS = (tfidf.TfidfKind(),)
    SOURCES = (*demo.SOURCES, tfidf.SOURCE)
    BACKENDS = (tfidf.Sklearn,)

    def evaluator(self):
        return TextClassificationEvaluator(self)

    @classmethod
    def matches(cls, config: dict) -> bool:
        return tfidf.TfidfKind.claims(config) or super().matches(config)


@register
class TokenClassification(TextTask):
    NAME = "token-classification"
    EXPORT_TASK = "token-classification"  # a plugin extending this task exports as it
    AUTO_CLASS = "AutoModelForTokenClassification"
    ARCHITECTURES = ("ForTokenClassification",)
    LABELLED = True
    DESCRIPTION = "a tag per token (NER)"
    DEFAULT_METRICS = ("f1", "precision", "recall", "accuracy")
    Validation = TagValidation
    Requests = TagRequests

    def evaluator(self):
        return TokenClassificationEvaluator(self)


@register
class QuestionAnswering(TextTask):
    NAME = "question-answering"
    EXPORT_TASK = "question-answering"  # a plugin extending this task exports as it
    AUTO_CLASS = "AutoModelForQuestionAnswering"
    ARCHITECTURES = ("ForQuestionAnswering",)
    DESCRIPTION = "an answer span in a context"
    DEFAULT_METRICS = ("f1", "exact_match")
    Validation = SpanValidation
    Requests = AnswerRequests

    def evaluator(self):
        return QuestionAnsweringEvaluator(self)


@register
class FeatureExtraction(TextTask):
    NAME = "feature-extraction"
    EXPORT_TASK = "feature-extraction"  # a plugin extending this task exports as it
    AUTO_CLASS = "AutoModel"
    FALLBACK = True
    DEFAULT_METRICS = ("cosine",)
    DESCRIPTION = "an embedding per token (mean-pooled per text)"
    Requests = EmbeddingRequests

    def evaluator(self):
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
        return cls.fits_modality(config) and not tfidf.TfidfKind.claims(config)
