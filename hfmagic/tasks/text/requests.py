"""What a served text model takes and answers (see :class:`hfmagic.tasks.base.Requests`).

- a classifier, an encoder: ``{"inputs": "a text"}``; the class (its label and softmax score), or
  the mean-pooled embedding %evaluate compares;
- token classification: ``{"inputs": "a sentence"}``, its words split on whitespace (as the CoNLL
  data %evaluate reads); each word's tag and the entities (seqeval's spans of them);
- question answering: ``{"inputs": {"question": "...", "context": "..."}}``; the answer span the
  question-answering pipeline would choose over every window of the context, with its score.
"""

from __future__ import annotations

from hfmagic.core.errors import UsageProblem
from hfmagic.data.tables import LabelledData, texts_of
from hfmagic.tasks.base import LOAD_SAMPLES, EvalData, Requests
from hfmagic.tasks.classes import class_answers
from hfmagic.tasks.text.evaluate import SQUAD_BBC


def _text(value, what: str = '{"inputs": "a text"}') -> str:
    if not isinstance(value, str) or not value.strip():
        raise UsageProblem(f"send JSON {what} (a non-empty text), or a list of them; got {type(value).__name__}")
    return value


def _texts(examples: list) -> EvalData:
    texts = LabelledData(list(examples), None, "requests", {})
    return EvalData({"data": texts}, len(examples), "requests", {})


class TextRequests(Requests):
    """A text classifier (and the TF-IDF baseline): a text in, its class out."""

    SHAPE = '"a text"'

    def example(self, model, value):
        return _text(value)

    def data(self, model, examples):
        return _texts(examples)

    def answers(self, model, data, prediction):
        return class_answers(model, prediction)

    def payloads(self, model, data):
        return list(data.examples["data"].texts)

    def sent(self, model, data=None):
        if data is None:
            return super().sent(model)
        return texts_of(data)  # a load test needs no labels


class EmbeddingRequests(TextRequests):
    """An encoder: a text in, its mean-pooled embedding out (what %evaluate's cosine compares)."""

    def answers(self, model, data, prediction):
        return [{"embedding": [float(x) for x in row]} for row in prediction]


class TagRequests(Requests):
    """Token classification: a sentence in (words split on whitespace), tags and entities out."""

    SHAPE = '"a sentence" (words split on whitespace)'

    def example(self, model, value):
        return _text(value, '{"inputs": "a sentence"}').split()

    def data(self, model, examples):
        sentences = [(words, ["O"] * len(words)) for words in examples]
        return EvalData({"sentences": sentences, "tags": [t for _, t in sentences]}, len(examples), "requests", {})

    def answers(self, model, data, prediction):
        from seqeval.metrics.sequence_labeling import get_entities

        out = []
        for (words, _), tags in zip(data.examples["sentences"], prediction["tags"]):
            entities = [{"type": kind, "text": " ".join(words[a:b + 1]), "start": a, "end": b + 1}
                        for kind, a, b in get_entities(list(tags))]
            out.append({"words": list(words), "tags": list(tags), "entities": entities})
        return out

    def payloads(self, model, data):
        return [" ".join(words) for words, _ in data.examples["sentences"]]

    def sent(self, model, data=None):
        if data is None:  # the sample sentences, as sentences
            texts, source = self.task.inputs.samples(model, LOAD_SAMPLES)
            return [" ".join(t.split()) for t in texts], source
        return super().sent(model, data)


class AnswerRequests(Requests):
    """Question answering: a question and its context in, the answer span out."""

    SHAPE = '{"question": "...", "context": "..."}'

    def example(self, model, value):
        if not isinstance(value, dict) or not all(isinstance(value.get(k), str) and value[k].strip()
                                                  for k in ("question", "context")):
            raise UsageProblem('send JSON {"inputs": {"question": "...", "context": "..."}} (both non-empty texts), '
                               "or a list of them")
        return {"id": "request", "question": value["question"], "context": value["context"],
                "answers": {"text": [], "answer_start": []}, "is_impossible": False}

    def data(self, model, examples):
        return EvalData({"examples": list(examples), "v2": False}, len(examples), "requests", {})

    def answers(self, model, data, prediction):
        return [{"answer": answer} for answer in prediction["answers"]]

    def payloads(self, model, data):
        return [{"question": ex["question"], "context": ex["context"]} for ex in data.examples["examples"]]

    def sent(self, model, data=None):
        return super().sent(model, SQUAD_BBC if data is None else data)  # by default, questions on BBC articles
