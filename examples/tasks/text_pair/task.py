"""Text-pair classification: a class per pair of texts (paraphrase or not, same topic or not), by a
sentence classifier that reads both texts at once (a cross-encoder). Its data is a table with
text_a, text_b and label columns. hfmagic does not register it: hfmagic.tasks.register does."""

import dataclasses
import hashlib

from hfmagic.data.tables import load_data
from hfmagic.tasks.text.evaluate import TextClassificationEvaluator
from hfmagic.tasks.text.task import ClassValidation
from hfmagic.tasks.tokens import SAMPLE_TEXTS, TextTask, TokenInputs


def read_pairs(source, limit=None, labelled=True):
    """A table's text_a and text_b columns as pairs of texts (with its label column when labelled)."""
    a, b = (load_data(source, text_column=column, label_column="label" if labelled else None, limit=limit,
                      require_labels=labelled) for column in ("text_a", "text_b"))
    sha256 = hashlib.sha256((a.fingerprint["sha256"] + b.fingerprint["sha256"]).encode()).hexdigest()
    return dataclasses.replace(a, texts=list(zip(a.texts, b.texts)), text_column="text_a, text_b",
                               fingerprint={**a.fingerprint, "sha256": sha256})


class PairInputs(TokenInputs):
    """Both texts through the tokenizer at once: [CLS] a [SEP] b [SEP], token types 0 then 1."""

    EXAMPLES = "pairs"

    def tokenize(self, tokenizer, pairs, **options):
        return tokenizer([a for a, _ in pairs], [b for _, b in pairs], **options)

    def read(self, model, source, column=None, limit=None):
        return read_pairs(source, limit, labelled=False)

    def samples(self, model, count):
        return list(zip(SAMPLE_TEXTS[::2], SAMPLE_TEXTS[1::2]))[:count], "hfmagic's sample sentences, in pairs"


class PairEvaluator(TextClassificationEvaluator):
    def read(self, model, data, options):
        return super().read(model, read_pairs(data, options.get("limit")), {**options, "limit": None})


class TextPairClassification(TextTask):
    NAME = "text-pair-classification"
    DESCRIPTION = "a class per pair of texts"
    AUTO_CLASS = "AutoModelForSequenceClassification"
    EXPORT_TASK = "text-classification"  # optimum exports the classifier as it is
    ARCHITECTURES = ("ForSequenceClassification",)
    FALLBACK = True  # text-classification claims a saved classifier first: load one for pairs with --task
    LABELLED = True
    DEFAULT_METRICS = ("accuracy", "f1_macro")
    Inputs = PairInputs
    Validation = ClassValidation

    def evaluator(self):
        return PairEvaluator(self)
