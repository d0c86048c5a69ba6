"""Extractive question answering (SQuAD) evaluation: reading data, choosing spans, EM and F1.

Pure functions over lists, dicts and numpy arrays; no IPython. The pieces:

* ``read_squad(path_or_obj)``: examples from SQuAD v1.1/v2.0 JSON (``data -> paragraphs -> qas``)
  or from flat records (a ``datasets.Dataset``, a DataFrame or a list of dicts with ``id``,
  ``context``, ``question``, ``answers: {text: [...], answer_start: [...]}``), each as
  ``{"id", "title", "context", "question", "answers": {"text", "answer_start"}, "is_impossible"}``.
  ``misaligned_answers(examples)`` lists the answers whose text is not at its ``answer_start``.
* ``normalize_answer``, ``exact_match``, ``f1`` and ``squad_scores``: the official SQuAD v2.0
  evaluation script's rules (lower case; drop punctuation, the articles a/an/the and extra
  whitespace; bag-of-tokens F1; maximum over the gold answers; a question whose gold answers all
  normalise to nothing is unanswerable, and only the empty prediction is right for it).
  Figures are fractions in [0, 1]; the official script prints them times 100.
* ``encode_windows(tokenizer, question, context)`` and ``best_span(...)``: the span the
  transformers ``QuestionAnsweringPipeline`` (fast tokenizer) would answer, over every overflow
  window of a long context (``doc_stride``), with ``top_k`` and ``handle_impossible_answer``.
  ``span_candidates`` is its per-window step (the pipeline's ``select_starts_ends``).
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from hfmagic.core.errors import DataError

# -- reading ---------------------------------------------------------------------------------------


def read_squad(path_or_obj) -> list[dict]:
    """SQuAD examples from a JSON file/object (official nested layout) or from flat records."""
    obj, where = path_or_obj, "SQuAD data"
    if isinstance(obj, (str, Path)):
        where = str(obj)
        try:
            obj = json.loads(Path(obj).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise DataError(f"no SQuAD file at {where}; give a SQuAD-format JSON path") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read {where} as JSON ({exc}); give a SQuAD-format JSON file") from exc
    if isinstance(obj, Mapping) and "data" in obj:
        examples = _from_nested(obj["data"], where)
    else:
        examples = _from_records(_records(obj, where), where)
    if not examples:
        raise DataError(f"{where} holds no questions; give SQuAD data with at least one")
    seen: set = set()
    for ex in examples:
        if ex["id"] in seen:
            raise DataError(f"{where}: question id {ex['id']!r} appears twice; ids must be unique")
        seen.add(ex["id"])
    return examples


def _from_nested(data, where: str) -> list[dict]:
    out = []
    try:
        for article in data:
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                for qa in paragraph["qas"]:
                    answers = qa.get("answers", [])
                    impossible = bool(qa.get("is_impossible", False)) or not answers
                    out.append(_example(qa["id"], article.get("title", ""), context, qa["question"],
                                        [] if qa.get("is_impossible") else [a["text"] for a in answers],
                                        [] if qa.get("is_impossible") else [a["answer_start"] for a in answers],
                                        impossible, where))
    except (KeyError, TypeError) as exc:
        raise DataError(f"{where} is not in SQuAD's data -> paragraphs -> qas layout (missing {exc}); "
                        "give the official JSON layout or flat records") from exc
    return out


def _records(obj, where: str) -> list[dict]:
    if hasattr(obj, "to_dict") and hasattr(obj, "columns"):  # pandas DataFrame
        return obj.to_dict("records")
    if hasattr(obj, "column_names") and hasattr(obj, "to_list"):  # datasets.Dataset
        return obj.to_list()
    if isinstance(obj, Sequence) and not isinstance(obj, (str, bytes)):
        return list(obj)
    raise DataError(f"{where}: expected SQuAD JSON, a Dataset, a DataFrame or a list of records, "
                    f"not {type(obj).__name__}")


def _from_records(records: list, where: str) -> list[dict]:
    out = []
    for row, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise DataError(f"{where} record {row} is {type(rec).__name__}, not a dict of columns")
        missing = [k for k in ("id", "context", "question", "answers") if k not in rec]
        if missing:
            raise DataError(f"{where} record {row} lacks column(s) {missing}; give id, context, "
                            "question and answers{text, answer_start}")
        answers = rec["answers"]
        if not isinstance(answers, Mapping) or "text" not in answers or "answer_start" not in answers:
            raise DataError(f"{where} record {row}: answers must be {{text: [...], answer_start: [...]}}")
        texts, starts = list(answers["text"]), list(answers["answer_start"])
        out.append(_example(rec["id"], rec.get("title", ""), rec["context"], rec["question"], texts,
                            starts, bool(rec.get("is_impossible", False)) or not texts, where))
    return out


def _example(qid, title, context, question, texts, starts, impossible, where) -> dict:
    if not isinstance(context, str) or not isinstance(question, str):
        raise DataError(f"{where} question {qid!r}: context and question must be strings")
    if len(texts) != len(starts):
        raise DataError(f"{where} question {qid!r}: {len(texts)} answer texts but {len(starts)} "
                        "answer_start values")
    return {"id": str(qid), "title": str(title or ""), "context": context, "question": question,
            "answers": {"text": [str(t) for t in texts], "answer_start": [int(s) for s in starts]},
            "is_impossible": bool(impossible)}


def misaligned_answers(examples: Sequence[dict]) -> list[tuple[str, str, int]]:
    """``(id, text, answer_start)`` of every gold answer not found verbatim at its start."""
    bad = []
    for ex in examples:
        for text, start in zip(ex["answers"]["text"], ex["answers"]["answer_start"]):
            if ex["context"][start:start + len(text)] != text:
                bad.append((ex["id"], text, start))
    return bad


# -- the official metric -----------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, drop ASCII punctuation, the words a/an/the and extra whitespace (SQuAD's rule)."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def _gold(gold_answers: Sequence[str]) -> list[str]:
    # as the v2.0 script: answers that normalise to nothing are dropped; none left = unanswerable
    return [g for g in gold_answers if normalize_answer(g)] or [""]


def _token_f1(gold: str, prediction: str) -> float:
    gold_tokens = normalize_answer(gold).split() if gold else []
    pred_tokens = normalize_answer(prediction).split() if prediction else []
    if not gold_tokens or not pred_tokens:
        return float(gold_tokens == pred_tokens)
    same = sum((Counter(gold_tokens) & Counter(pred_tokens)).values())
    if not same:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold_answers: Sequence[str]) -> int:
    """1 if the normalised prediction equals any normalised gold answer, else 0."""
    pred = normalize_answer(prediction)
    return int(any(normalize_answer(g) == pred for g in _gold(gold_answers)))


def f1(prediction: str, gold_answers: Sequence[str]) -> float:
    """The best token-overlap F1 of the prediction against the gold answers."""
    return max(_token_f1(g, prediction) for g in _gold(gold_answers))


def squad_scores(examples: Sequence[dict], predictions) -> dict:
    """Exact match and F1 over ``examples`` (``read_squad``'s) for ``predictions``.

    ``predictions`` maps question id -> predicted text ("" = no answer), or is a list aligned
    with ``examples``. Every question needs a prediction (``DataError`` names a missing one; the
    official script would skip it with a print). Returns ``exact_match``, ``f1`` and ``n``; the
    same under ``has_answer`` and ``no_answer`` (where there are any); and ``per_question``
    (ids and per-question arrays, which a bootstrap resamples).
    """
    if not isinstance(predictions, Mapping):
        predictions = list(predictions)
        if len(predictions) != len(examples):
            raise DataError(f"{len(predictions)} predictions for {len(examples)} questions; "
                            "give one per question (or a dict id -> text)")
        predictions = {ex["id"]: p for ex, p in zip(examples, predictions)}
    ids, em, f1s, answerable = [], [], [], []
    for ex in examples:
        if ex["id"] not in predictions:
            raise DataError(f"no prediction for question {ex['id']!r}; predict every question "
                            "('' for no answer)")
        pred = predictions[ex["id"]] or ""
        gold = ex["answers"]["text"]
        ids.append(ex["id"])
        em.append(exact_match(pred, gold))
        f1s.append(f1(pred, gold))
        answerable.append(_gold(gold) != [""])
    em_arr, f1_arr, has = np.asarray(em, dtype=float), np.asarray(f1s, dtype=float), np.asarray(answerable)
    if not len(ids):
        raise DataError("no questions to score")
    out = {"exact_match": float(em_arr.mean()), "f1": float(f1_arr.mean()), "n": len(ids)}
    for name, mask in (("has_answer", has), ("no_answer", ~has)):
        if mask.any():
            out[name] = {"exact_match": float(em_arr[mask].mean()), "f1": float(f1_arr[mask].mean()),
                         "n": int(mask.sum())}
    out["per_question"] = {"id": ids, "exact_match": em_arr, "f1": f1_arr, "has_answer": has}
    return out


def answer_disagreements(reference, predictions) -> np.ndarray:
    """Per question, True where two models' answers differ once normalised (a "flip")."""
    reference, predictions = list(reference), list(predictions)
    if len(reference) != len(predictions):
        raise DataError(f"{len(reference)} reference answers but {len(predictions)} to compare")
    return np.array([normalize_answer(a or "") != normalize_answer(b or "")
                     for a, b in zip(reference, predictions)], dtype=bool)


# -- spans from logits -----------------------------------------------------------------------------

class QuestionTooLong(DataError):
    """A question that leaves too little of a window for its context (its sizes, in tokens, let a
    caller that chose the window say what its own user can change)."""

    def __init__(self, message: str, question: int, room: int, window: int, stride: int, longest: int):
        super().__init__(message)
        self.question, self.room, self.window, self.stride = question, room, window, stride
        self.longest = longest  # the most tokens a question may have in this window


def encode_windows(tokenizer, question: str, context: str, max_seq_len: int | None = None,
                   doc_stride: int | None = None, max_question_len: int = 64) -> dict:
    """Encode one question and context as the question-answering pipeline does (fast tokenizer).

    Long contexts overflow into several windows that overlap by ``doc_stride`` tokens. Defaults as
    the pipeline's: ``max_seq_len = min(model_max_length, 384)``, ``doc_stride = min(max_seq_len //
    2, 128)``. Returns the model inputs (``input_ids``, ``attention_mask`` and, when the tokenizer
    makes them, ``token_type_ids``: lists of windows padded to the longest) and, for
    ``best_span``: ``offsets`` (char offsets into ``context``), ``context_mask`` (True on context
    tokens), ``word_ids`` (context word of each token, None elsewhere) and ``cls_index``.
    ``max_question_len`` is accepted for the pipeline's signature; like the pipeline with a fast
    tokenizer, it does not cut the question.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise DataError("question answering needs a fast tokenizer (offsets); "
                        "load the model's tokenizer with use_fast=True")
    if max_seq_len is None:
        max_seq_len = min(tokenizer.model_max_length, 384)
    if doc_stride is None:
        doc_stride = min(max_seq_len // 2, 128)
    if doc_stride > max_seq_len:
        raise DataError(f"doc_stride ({doc_stride}) is larger than max_seq_len ({max_seq_len}); "
                        "give a smaller stride")
    question_first = tokenizer.padding_side == "right"
    asked, special = len(tokenizer(question, add_special_tokens=False)["input_ids"]), \
        tokenizer.num_special_tokens_to_add(pair=True)
    room = max_seq_len - asked - special
    if room <= doc_stride:  # the tokenizer would panic: the stride must be less than the room left
        raise QuestionTooLong(f"the question leaves {max(room, 0)} of {max_seq_len} tokens for the context, "
                              f"not more than doc_stride ({doc_stride}); give a larger max_seq_len or a "
                              "smaller doc_stride", asked, max(room, 0), max_seq_len, doc_stride,
                              max(0, max_seq_len - special - doc_stride - 1))
    enc = tokenizer(text=question if question_first else context,
                    text_pair=context if question_first else question,
                    padding="longest", truncation="only_second" if question_first else "only_first",
                    max_length=max_seq_len, stride=doc_stride, return_token_type_ids=True,
                    return_overflowing_tokens=True, return_offsets_mapping=True)
    context_index = 1 if question_first else 0
    n = len(enc["input_ids"])
    context_mask, word_ids = [], []
    for i in range(n):
        sequence_ids = enc.sequence_ids(i)
        mask = [s == context_index for s in sequence_ids]
        context_mask.append(mask)
        word_ids.append([w if m else None for w, m in zip(enc.word_ids(i), mask)])
    names = [k for k in tokenizer.model_input_names if k in enc]
    out = {k: enc[k] for k in names}
    cls_id = tokenizer.cls_token_id
    out.update(offsets=[[tuple(o) for o in enc["offset_mapping"][i]] for i in range(n)],
               context_mask=context_mask, word_ids=word_ids,
               cls_index=[(ids.index(cls_id) if cls_id is not None and cls_id in ids else None)
                          for ids in enc["input_ids"]])
    return out


def span_candidates(start_logits, end_logits, allowed, cls_index: int | None = 0,
                    max_answer_len: int = 15, k: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """One window's best ``k`` spans, as the pipeline's ``select_starts_ends`` + ``decode_spans``.

    Logits outside ``allowed`` (context tokens and the CLS token) are set to -10000 before a
    softmax over the window; the null (no answer) score is the CLS token's start x end
    probability; the CLS probabilities are then zeroed and span scores are start x end
    probabilities with ``start <= end < start + max_answer_len``. Returns ``(starts, ends, scores,
    null_score)``, best first. Spans with a zero score (only ever the tail when ``k`` exceeds the
    number of possible spans) are left out; the pipeline would list some of them at score 0.
    """
    start = np.asarray(start_logits, dtype=np.float64).reshape(-1)
    end = np.asarray(end_logits, dtype=np.float64).reshape(-1)
    allowed = np.asarray(allowed, dtype=bool).reshape(-1)
    if not start.shape == end.shape == allowed.shape:
        raise DataError(f"start logits {start.shape}, end logits {end.shape} and mask {allowed.shape} "
                        "must have one value per token")
    start = np.where(allowed, start, -10000.0)
    end = np.where(allowed, end, -10000.0)
    p_start = np.exp(start - start.max())
    p_start /= p_start.sum()
    p_end = np.exp(end - end.max())
    p_end /= p_end.sum()
    null_score = float(p_start[cls_index] * p_end[cls_index]) if cls_index is not None else float("inf")
    if cls_index is not None:
        p_start[cls_index] = p_end[cls_index] = 0.0
    candidates = np.tril(np.triu(np.outer(p_start, p_end)), max_answer_len - 1)
    flat = candidates.ravel()
    order = np.argsort(-flat, kind="stable")[:k]
    order = order[flat[order] > 0]
    starts, ends = np.unravel_index(order, candidates.shape)
    keep = allowed[starts] & allowed[ends]
    starts, ends = starts[keep], ends[keep]
    return starts, ends, candidates[starts, ends], null_score


def best_span(start_logits, end_logits, offsets, context: str, *, context_mask=None,
              word_ids=None, cls_index=0, attention_mask=None, max_answer_len: int = 15,
              top_k: int = 1, handle_impossible_answer: bool = False,
              align_to_words: bool = True) -> list[dict]:
    """The answers the question-answering pipeline would give, over one or more windows.

    ``start_logits``/``end_logits``: one window ``(seq,)`` or several ``(n_windows, seq)`` (or a
    list of 1-D arrays). ``offsets``: per window and token, ``(start, end)`` char offsets into
    ``context``, or None for a token outside it. ``context_mask``: True on context tokens (default:
    tokens whose offsets are not None). ``word_ids``: the context word of each token; with
    ``align_to_words`` a span is widened to whole words as the pipeline does (without word ids the
    token offsets are used, as the pipeline falls back to). ``cls_index``: the CLS position of each
    window (an int for all), which keeps its logits in the softmax and gives the null score.

    Each window contributes its best ``top_k * 2 + 10`` spans (``top_k`` without
    ``align_to_words``); spans with the same text (ignoring case) add their scores; with
    ``handle_impossible_answer`` the empty answer competes with the smallest window null score.
    Returns up to ``top_k`` dicts ``{"score", "start", "end", "answer"}``, best first (the
    empty answer has start = end = 0; it is also the answer, at score 0, when no window holds a
    context token).
    """
    starts_w, ends_w = _windows(start_logits), _windows(end_logits)
    n = len(starts_w)
    offsets = _per_window(offsets, n, "offsets")
    masks = (_per_window(context_mask, n, "context_mask") if context_mask is not None
             else [[o is not None for o in window] for window in offsets])
    words = _per_window(word_ids, n, "word_ids") if word_ids is not None else [None] * n
    attention = _per_window(attention_mask, n, "attention_mask") if attention_mask is not None else [None] * n
    cls = list(cls_index) if isinstance(cls_index, Sequence) else [cls_index] * n
    k = top_k * 2 + 10 if align_to_words else top_k
    answers: list[dict] = []
    min_null = 1000000.0  # as the pipeline: large and positive
    for w in range(n):
        allowed = np.asarray(masks[w], dtype=bool).copy()
        if cls[w] is not None:
            allowed[cls[w]] = True
        if attention[w] is not None:
            allowed &= np.asarray(attention[w], dtype=bool)
        starts, ends, scores, null = span_candidates(starts_w[w], ends_w[w], allowed, cls[w],
                                                     max_answer_len, k)
        if handle_impossible_answer:
            min_null = min(min_null, null)
        for s, e, score in zip(starts, ends, scores):
            a, b = _chars(offsets[w], words[w] if align_to_words else None, int(s), int(e))
            text = context[a:b]
            same = next((x for x in answers if x["answer"].lower() == text.lower()), None)
            if same is not None:
                same["score"] += float(score)
            else:
                answers.append({"score": float(score), "start": a, "end": b, "answer": text})
    if handle_impossible_answer:
        answers.append({"score": min_null, "start": 0, "end": 0, "answer": ""})
    elif not answers:  # no context token in any window: the pipeline answers CLS's empty span
        answers.append({"score": 0.0, "start": 0, "end": 0, "answer": ""})
    return sorted(answers, key=lambda x: x["score"], reverse=True)[:top_k]


def _windows(logits) -> list[np.ndarray]:
    if isinstance(logits, np.ndarray) or np.isscalar(logits):
        arr = np.asarray(logits)
        if arr.ndim == 1:
            return [arr]
        if arr.ndim == 2:
            return list(arr)
        raise DataError(f"QA logits must be (seq,) or (n_windows, seq), got shape {arr.shape}")
    items = list(logits)
    if items and np.ndim(items[0]) == 0:
        return [np.asarray(items, dtype=float)]
    return [np.asarray(x, dtype=float).reshape(-1) for x in items]


def _per_window(values, n: int, name: str) -> list:
    values = list(values)
    if n == 1 and values and not isinstance(values[0], (list, tuple, np.ndarray)):
        values = [values]
    elif n == 1 and values and name == "offsets" and _is_pair(values[0]):
        values = [values]
    if len(values) != n:
        raise DataError(f"{name} has {len(values)} windows but the logits have {n}")
    return values


def _is_pair(x) -> bool:
    return x is None or (len(x) == 2 and not isinstance(x[0], (list, tuple, np.ndarray)))


def _chars(offsets, words, s: int, e: int) -> tuple[int, int]:
    """Char span of tokens s..e; widened to their whole words when word ids are known."""
    if words is not None and words[s] is not None and words[e] is not None:
        first = [i for i, w in enumerate(words) if w == words[s]]
        last = [i for i, w in enumerate(words) if w == words[e]]
        return int(offsets[first[0]][0]), int(offsets[last[-1]][1])
    return int(offsets[s][0]), int(offsets[e][1])
