"""Tasks through a real shell: a registered toy task, models no task supports, token classification
and question answering against seqeval, the pipeline and the official SQuAD script, several models
as one result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from IPython.core.error import UsageError

from hfmagic.tasks.text.task import TextClassification
from hfmagic.tasks.text.evaluate import TextClassificationEvaluator
from tests.support.cli import cli
from tests.support.fast import SWEEP_NO_WIDGET as FAST
from tests.support.tiny import LABELS, make_tokenizer, save, scramble, sentences

TASK_NAMES = ("text-classification, token-classification, question-answering, feature-extraction, text-generation, "
              "image-classification, automatic-speech-recognition")


def refused(shell, capsys, line: str) -> str:
    """Run a magic line that must be refused: its one-line message (no traceback, nothing run)."""
    res = shell.run_cell(line, store_history=False)
    assert not res.success and isinstance(res.error_in_exec, UsageError), res.error_in_exec
    said = capsys.readouterr()
    assert "Traceback" not in said.out + said.err
    message = str(res.error_in_exec)
    assert "\n" not in message.strip(), message
    return message


# -- 1. a toy task registered here ---------------------------------------------------------------------

class ToyEvaluator(TextClassificationEvaluator):
    """The toy task's own evaluator: accuracy only, and it counts its calls (so the test can see the
    driver asked the task, not a built-in branch)."""

    CALLS: list[str] = []

    def read(self, model, data, options):
        ToyEvaluator.CALLS.append("read")
        return super().read(model, data, options)


class ToySentiment(TextClassification):
    """A task of its own: a BERT classifier whose config says ``"toy_task": true``."""

    NAME = "toy-sentiment"
    EXPORT_TASK = "text-classification"  # optimum's exporter knows the head, not the toy name
    DEFAULT_METRICS = ("accuracy",)
    DESCRIPTION = "a toy sentiment task registered by a test"

    @classmethod
    def matches(cls, config: dict) -> bool:
        return config.get("toy_task") is True and cls.fits_modality(config)

    def evaluator(self):
        return ToyEvaluator(self)


@pytest.fixture(scope="module")
def toy_folder(tiny_bert, tmp_path_factory):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = scramble(AutoModelForSequenceClassification.from_pretrained(tiny_bert))
    return save(model, AutoTokenizer.from_pretrained(tiny_bert), tmp_path_factory.mktemp("toy"), toy_task=True)


@pytest.fixture
def toy_task():
    from hfmagic import tasks

    tasks.register(ToySentiment)
    ToyEvaluator.CALLS.clear()
    try:
        yield ToySentiment
    finally:
        tasks.unregister(ToySentiment.NAME)
    assert ToySentiment.NAME not in tasks.names()


def test_a_registered_task_is_inferred_at_load(shell, toy_task, toy_folder):
    shell.user_ns["toy_folder"] = str(toy_folder)
    shell.run_line_magic("load_model", "$toy_folder --name toy -q")
    assert shell.user_ns["toy"].task == "toy-sentiment"


def test_a_toy_task_flows_through_export_benchmark_and_evaluate(shell, capsys, toy_task, toy_folder, labelled_csv):
    from hfmagic import tasks

    assert "toy-sentiment" in tasks.names()
    shell.user_ns.update(toy_folder=str(toy_folder), toy_csv=str(labelled_csv))
    shell.run_line_magic("load_model", "$toy_folder --task toy-sentiment --name toy -q")
    toy = shell.user_ns["toy"]
    assert toy.task == "toy-sentiment" and toy.task_plugin.__class__ is ToySentiment
    variants = shell.run_line_magic("export_onnx", "toy --levels fp32 --quantize none --name toy_onnx -o -q")
    assert variants.names == ["torch", "fp32"] and variants["fp32"].ok, variants["fp32"].error
    assert variants["fp32"].validation["cosine"] > 0.9999

    bench = shell.run_line_magic("benchmark", f"toy_onnx --inline --batch-sizes 1,2 --seq-lens 8 {FAST} -o -q")
    assert {(r["variant"], r["batch_size"]) for r in bench.rows} == {(v, b) for v in ("torch", "fp32") for b in (1, 2)}
    assert all(r["status"] == "ok" and r["p50_ms"] > 0 for r in bench.rows), [r["status"] for r in bench.rows]

    ev = shell.run_line_magic("evaluate", "toy_onnx --data $toy_csv --batch-size 8 --no-widget -o -q")
    assert ToyEvaluator.CALLS == ["read"]  # the driver asked the toy task's own evaluator
    assert ev.task == "toy-sentiment"
    assert ev.metrics == ["accuracy"]  # the task's own DEFAULT_METRICS, not text-classification's
    torch_row, fp32_row = ev.rows
    assert "f1_macro" not in torch_row and torch_row["accuracy_low"] <= torch_row["accuracy"] <= torch_row["accuracy_high"]
    assert fp32_row["agreement"] == 1.0 and fp32_row["gate"] == "pass"
    text = str(ev)
    assert "accuracy" in text and "f1_macro" not in text


def test_a_toy_task_is_benchmarked_in_a_worker_process(shell, capsys, toy_task, toy_folder):
    """A worker is a fresh interpreter: it learns the task from the job (the class's module and name)."""
    shell.user_ns["toy_folder"] = str(toy_folder)
    shell.run_line_magic("load_model", "$toy_folder --task toy-sentiment --name toy -q")
    shell.run_line_magic("export_onnx", "toy --levels fp32 --quantize none --name toy_onnx -q")
    bench = shell.run_line_magic("benchmark", f"toy_onnx --batch-sizes 1 --seq-lens 8 {FAST} -o -q")
    assert [r["status"] for r in bench.rows] == ["ok", "ok"], [r["status"] for r in bench.rows]


def test_a_task_a_worker_cannot_import_is_one_line(shell, capsys, toy_folder):
    """A task class defined inside a function cannot reach a worker: one line saying so and what to do."""
    from hfmagic import tasks

    class LocalToy(ToySentiment):
        NAME = "local-toy"

    tasks.register(LocalToy)
    try:
        shell.user_ns["toy_folder"] = str(toy_folder)
        shell.run_line_magic("load_model", "$toy_folder --task local-toy --name local_toy -q")
        shell.run_line_magic("export_onnx", "local_toy --levels fp32 --quantize none --name local_onnx -q")
        res = shell.run_cell(f"%benchmark local_onnx --variants fp32 --batch-sizes 1 --seq-lens 8 {FAST} -o",
                             store_history=False)
        said = capsys.readouterr()
        assert "Traceback" not in said.out + said.err
        if res.success:  # the worker's rows must say why, in one line each
            rows = res.result.rows
            assert all("local-toy" in r["status"] and "--inline" in r["status"] for r in rows), rows
        else:
            message = str(res.error_in_exec)
            assert "local-toy" in message and "--inline" in message and "\n" not in message.strip()
        inline = shell.run_line_magic("benchmark", f"local_onnx --variants fp32 --inline --batch-sizes 1 "
                                                   f"--seq-lens 8 {FAST} -o -q")
        assert [r["status"] for r in inline.rows] == ["ok"]
    finally:
        tasks.unregister("local-toy")


# -- 2. models no task supports are refused at load ----------------------------------------------------

def _unsupported(kind: str, folder: Path) -> Path:
    import transformers as T

    tok = make_tokenizer("bert")
    if kind == "t5":
        model = T.T5ForConditionalGeneration(T.T5Config(vocab_size=len(tok), d_model=32, d_ff=64, d_kv=16,
                                                        num_layers=1, num_heads=2))
    elif kind == "wav2vec2":  # audio classification: no task of hfmagic's (speech recognition is CTC)
        model, tok = T.Wav2Vec2ForSequenceClassification(T.Wav2Vec2Config(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16),
            conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)), None
    else:  # a speech encoder-decoder that is not Whisper-style (Whisper is speech recognition now)
        model = T.Speech2TextForConditionalGeneration(T.Speech2TextConfig(
            vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=64,
            max_target_positions=32, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1))
    return save(model, tok, folder)


@pytest.mark.parametrize("kind, arch", [("t5", "T5ForConditionalGeneration"),  # a GPT-2 LM is text-generation now
                                        ("wav2vec2", "Wav2Vec2ForSequenceClassification"),
                                        ("speech2text", "Speech2TextForConditionalGeneration")])
def test_a_model_no_task_supports_is_refused_at_load(shell, capsys, tmp_path, kind, arch):
    folder = _unsupported(kind, tmp_path / kind)
    shell.user_ns["unsupported_folder"] = str(folder)
    shell.user_ns.pop("refused_model", None)
    message = refused(shell, capsys, "%load_model $unsupported_folder --name refused_model")
    assert arch in message and f"hfmagic's tasks are: {TASK_NAMES}" in message, message
    assert "tokenizer" not in message  # a ViT is not told to save a tokenizer
    assert "refused_model" not in shell.user_ns
    done = cli("load", folder)
    assert done.returncode == 2 and done.stderr.startswith("hfmagic: ") and done.stderr.strip().count("\n") == 0, \
        done.stderr
    assert arch in done.stderr and TASK_NAMES in done.stderr and "Traceback" not in done.stderr


# -- 3. inputs reconciled with what the model and the graph take ----------------------------------------


def test_distilbert_with_a_bert_tokenizer_exports_validates_and_benchmarks(shell, capsys, distilbert_with_bert_tokenizer):
    shell.user_ns["dbt_folder"] = str(distilbert_with_bert_tokenizer)
    shell.run_line_magic("load_model", "$dbt_folder --name dbt -q")
    assert shell.user_ns["dbt"].task == "text-classification"
    variants = shell.run_line_magic("export_onnx", "dbt --levels fp32 --quantize none --name dbt_onnx -o -q")
    fp32 = variants["fp32"]
    assert fp32.ok, fp32.error
    assert fp32.validation["cosine"] > 0.9999 and fp32.validation["argmax_agreement"] == 1.0
    bench = shell.run_line_magic("benchmark", f"dbt_onnx --batch-sizes 1 --seq-lens 16 {FAST} -o -q")
    assert [(r["variant"], r["status"]) for r in bench.rows] == [("torch", "ok"), ("fp32", "ok")]
    import pandas as pd

    shell.user_ns["dbt_texts"] = pd.DataFrame({"text": sentences(8, seed=2)})  # real texts: the tokenizer's inputs
    inline = shell.run_line_magic("benchmark", f"dbt_onnx --inline --inputs dbt_texts --batch-sizes 2 --seq-lens 16 "
                                               f"{FAST} -o -q")
    assert [r["status"] for r in inline.rows] == ["ok", "ok"] and all(r["e2e_p50_ms"] > 0 for r in inline.rows)


def test_gpt2_feature_extraction_validates_at_fp32(shell, tiny_factory):
    shell.user_ns["g2_folder"] = str(tiny_factory("gpt2", "feature-extraction"))
    shell.run_line_magic("load_model", "$g2_folder --name g2 -q")
    assert shell.user_ns["g2"].task == "feature-extraction"
    variants = shell.run_line_magic("export_onnx", "g2 --levels fp32 --quantize none -o -q")
    fp32 = variants["fp32"]
    assert fp32.ok and not fp32.error, fp32.error
    assert fp32.validation["cosine"] >= 0.999  # it "diverged" at 0.82 when torch alone got token_type_ids


# -- 4. position limits: RoBERTa's positions start after the padding index -------------------------------

@pytest.fixture(scope="module")
def short_roberta(tmp_path_factory):
    from transformers import AutoModelForSequenceClassification, RobertaConfig

    tok = make_tokenizer("roberta")
    assert tok.model_max_length == 512
    config = RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=34, pad_token_id=1, bos_token_id=0,
                           eos_token_id=2, num_labels=3, id2label=dict(enumerate(LABELS)),
                           label2id={n: i for i, n in enumerate(LABELS)})
    model = AutoModelForSequenceClassification.from_config(config).eval()
    return save(model, tok, tmp_path_factory.mktemp("short-roberta"))


def test_a_short_roberta_exports_validates_and_benchmarks_within_its_positions(shell, capsys, short_roberta):
    shell.user_ns["sr_folder"] = str(short_roberta)
    shell.run_line_magic("load_model", "$sr_folder --name short_roberta -q")
    variants = shell.run_line_magic("export_onnx", "short_roberta --levels fp32 --quantize none --name sr_onnx -o -q")
    fp32 = variants["fp32"]
    assert fp32.ok, fp32.error  # texts cut at 32 tokens, not 34 (IndexError: index out of range in self)
    assert fp32.validation["cosine"] > 0.9999
    bench = shell.run_line_magic("benchmark", f"sr_onnx --batch-sizes 1 --seq-lens 32 {FAST} -o -q")
    assert [(r["seq_len"], r["status"]) for r in bench.rows] == [(32, "ok"), (32, "ok")]
    message = refused(shell, capsys, f"%benchmark sr_onnx --batch-sizes 1 --seq-lens 33 {FAST}")
    assert "33" in message and "32" in message and "34" not in message, message


# -- 5. %evaluate for token classification ---------------------------------------------------------------


NER_SENTENCES = [
    (["the", "player", "john", "smith", "won", "in", "london"], ["O", "O", "B-person", "I-person", "O", "O", "B-geo-loc"]),
    (["market", "shares", "rose"], ["O", "O", "O"]),
    (["paris", "and", "new", "york", "voted"], ["B-geo-loc", "O", "B-geo-loc", "I-geo-loc", "O"]),
    (["coach", "ann", "lee", "said", "the", "team", "would", "play", "in", "rome", "next", "season"],
     ["O", "B-person", "I-person", "O", "O", "O", "O", "O", "O", "B-geo-loc", "O", "O"]),
    (["bob"], ["B-person"]),
    (["the", "film", "star", "mary", "went", "to", "berlin", "and", "madrid"],
     ["O", "O", "O", "B-person", "O", "O", "B-geo-loc", "O", "B-geo-loc"]),
]


def _conll_text(sents, lone_tab=False) -> str:
    sep = "\t\n" if lone_tab else "\n"
    return sep.join("".join(f"{w}\t{t}\n" for w, t in zip(words, tags)) for words, tags in sents)


def _check_against_seqeval(ev, gold):
    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

    assert ev.task == "token-classification" and ev.metrics == ["f1", "precision", "recall", "accuracy"]
    names = [r["variant"] for r in ev.rows]
    assert names == ["torch", "fp32"]
    for row in ev.rows:
        assert row["status"] == "ok", row["status"]
        pred = ev.predictions[row["variant"]]["tags"]
        assert [len(p) for p in pred] == [len(g) for g in gold]
        expected = {"f1": f1_score(gold, pred), "precision": precision_score(gold, pred),
                    "recall": recall_score(gold, pred), "accuracy": accuracy_score(gold, pred)}
        for m, value in expected.items():
            assert row[m] == pytest.approx(value, abs=1e-12), (m, row[m], value)
            assert row[f"{m}_low"] <= row[m] + 1e-12 and row[m] <= row[f"{m}_high"] + 1e-12
    torch_tags = ev.predictions["torch"]["tags"]
    assert any(t != "O" for s in torch_tags for t in s)  # the model predicts entities: the figures are not all 0
    assert ev.rows[1]["agreement"] == 1.0 and ev.predictions["fp32"]["tags"] == torch_tags
    assert list(ev.flips.columns) == ["variant", "row", "tokens", "gold", "reference", "prediction"]
    text = str(ev)
    for m in ("f1", "precision", "recall", "accuracy", "95% CI"):
        assert m in text


def test_token_classification_on_conll_text_equals_seqeval(shell, capsys, ner_folder, tmp_path):
    path = tmp_path / "ner.txt"
    path.write_text(_conll_text(NER_SENTENCES[:3]) + "\n" + _conll_text(NER_SENTENCES[3:], lone_tab=True))
    shell.user_ns.update(ner_folder=str(ner_folder), ner_file=str(path))
    shell.run_line_magic("load_model", "$ner_folder --name tagger -q")
    assert shell.user_ns["tagger"].task == "token-classification"
    shell.run_line_magic("export_onnx", "tagger --levels fp32 --quantize none --name tagger_onnx -q")
    ev = shell.run_line_magic("evaluate", "tagger_onnx --data $ner_file --batch-size 4 --no-widget -o -q")
    _check_against_seqeval(ev, [t for _, t in NER_SENTENCES])
    assert ev.fingerprint["rows"] == len(NER_SENTENCES)


def test_token_classification_on_a_dataset_with_classlabel_tags(shell, capsys, ner_folder):
    datasets = pytest.importorskip("datasets")
    names = ["O", "B-person", "I-person", "B-geo-loc", "I-geo-loc"]  # the data's own order, not the model's
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names))})
    ds = datasets.Dataset.from_dict({"tokens": [w for w, _ in NER_SENTENCES],
                                     "ner_tags": [[names.index(t) for t in tags] for _, tags in NER_SENTENCES]},
                                    features=features)
    shell.user_ns.update(ner_folder=str(ner_folder), ner_ds=ds)
    shell.run_line_magic("load_model", "$ner_folder --name tagger -q")
    shell.run_line_magic("export_onnx", "tagger --levels fp32 --quantize none --name tagger_onnx -q")
    ev = shell.run_line_magic("evaluate", "tagger_onnx --data ner_ds --batch-size 4 --no-widget -o -q")
    _check_against_seqeval(ev, [t for _, t in NER_SENTENCES])


def test_token_classification_on_wnut16_and_unknown_tags(shell, capsys, ner_folder, tmp_path):
    shell.user_ns["ner_folder"] = str(ner_folder)
    shell.run_line_magic("load_model", "$ner_folder --name tagger -q")
    shell.run_line_magic("export_onnx", "tagger --levels fp32 --quantize none --name tagger_onnx -q")
    ev = shell.run_line_magic("evaluate", "tagger_onnx --data wnut16 --limit 50 --batch-size 16 --no-widget -o -q")
    assert ev.fingerprint["rows"] == 50 and all(r["status"] == "ok" for r in ev.rows)
    from hfmagic.tasks.text import ner
    from hfmagic.tasks.text.evaluate import _wnut16_path

    gold = [t for _, t in ner.read_conll(_wnut16_path())[:50]]
    from seqeval.metrics import f1_score

    assert ev.rows[0]["f1"] == pytest.approx(f1_score(gold, ev.predictions["torch"]["tags"]), abs=1e-12)

    bad = tmp_path / "bad.txt"
    bad.write_text("EU\tB-ORG\nrejects\tO\n\nBob\tB-person\n")
    shell.user_ns["bad_ner"] = str(bad)
    message = refused(shell, capsys, "%evaluate tagger_onnx --data $bad_ner --no-widget")
    assert "B-ORG" in message and "B-person" not in message.split(".")[0], message


# -- 6. %evaluate for question answering -------------------------------------------------------------------

QA_CONTEXTS = [
    "The central bank raised interest rates again on Thursday, the third rise this year, as the economy grew "
    "faster than expected and shares in the largest banks rose.",
    "The striker scored twice in the second half to send his team to the final, where they will meet the "
    "league champions next season in front of a record crowd.",
    "Researchers released an open-source model that translates between two hundred languages, and the "
    "minister said the government would use the new software next year.",
]
QA_QUESTIONS = ["Who raised interest rates?", "When did it happen?", "Who scored twice?",
                "Where will the team play?", "What did researchers release?", "Who will use the software?"]


def _pipeline_answers(folder, pairs):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

    qa = pipeline("question-answering", model=AutoModelForQuestionAnswering.from_pretrained(folder).eval(),
                  tokenizer=AutoTokenizer.from_pretrained(folder), device="cpu")
    return [qa(question=q, context=c)["answer"] for q, c in pairs]


def _official(raw_data, answers_by_id):
    from tests.support.squad import official_get_raw_scores

    exact, f1 = official_get_raw_scores(raw_data, answers_by_id)
    return sum(exact.values()) / len(exact), sum(f1.values()) / len(f1)


def _check_qa_rows(ev):
    assert ev.task == "question-answering" and ev.metrics == ["f1", "exact_match"]
    assert [r["variant"] for r in ev.rows] == ["torch", "fp32"]
    for row in ev.rows:
        assert row["status"] == "ok", row["status"]
        for m in ("f1", "exact_match"):
            assert row[f"{m}_low"] <= row[m] + 1e-12 and row[m] <= row[f"{m}_high"] + 1e-12
    assert ev.rows[1]["agreement"] == 1.0 and ev.predictions["fp32"]["answers"] == ev.predictions["torch"]["answers"]
    assert list(ev.flips.columns) == ["variant", "row", "question", "gold", "reference", "prediction"]
    assert "exact_match" in str(ev) and "95% CI" in str(ev)


def test_question_answering_on_squad_json_equals_the_pipeline_and_the_official_script(shell, capsys, qa_folder,
                                                                                        tmp_path):
    pairs = [(q, QA_CONTEXTS[i // 2]) for i, q in enumerate(QA_QUESTIONS)]
    answers = _pipeline_answers(qa_folder, pairs)  # transformers' QuestionAnsweringPipeline, independently
    assert all(answers) and len(set(answers)) > 1
    # gold = the pipeline's own answer for the even questions, another span of the context for the odd
    golds = [a if i % 2 == 0 else "the " + c.split()[-1].rstrip(".") for i, (a, (q, c)) in enumerate(zip(answers, pairs))]
    raw = {"version": "1.1", "data": [{"title": "tiny", "paragraphs": [
        {"context": c, "qas": [{"id": f"q{i}", "question": q,
                                "answers": [{"text": golds[i], "answer_start": max(0, c.find(golds[i]))}]}
                               for i, (q, cc) in enumerate(pairs) if cc == c]} for c in QA_CONTEXTS]}]}
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(raw))
    shell.user_ns.update(qa_folder=str(qa_folder), qa_file=str(path))
    shell.run_line_magic("load_model", "$qa_folder --name reader -q")
    assert shell.user_ns["reader"].task == "question-answering"
    shell.run_line_magic("export_onnx", "reader --levels fp32 --quantize none --name reader_onnx -q")
    ev = shell.run_line_magic("evaluate", "reader_onnx --data $qa_file --batch-size 4 --no-widget -o -q")
    _check_qa_rows(ev)
    assert ev.predictions["torch"]["answers"] == answers  # the same spans the pipeline chooses
    exact, f1 = _official(raw["data"], {f"q{i}": a for i, a in enumerate(answers)})
    assert ev.rows[0]["exact_match"] == pytest.approx(exact) and ev.rows[0]["f1"] == pytest.approx(f1)
    assert 0 < ev.rows[0]["exact_match"] < 1


def test_question_answering_on_the_squad_bbc_fixture(shell, capsys, qa_folder):
    from hfmagic.tasks.text.evaluate import squad_bbc_path

    shell.user_ns["qa_folder"] = str(qa_folder)
    shell.run_line_magic("load_model", "$qa_folder --name reader -q")
    shell.run_line_magic("export_onnx", "reader --levels fp32 --quantize none --name reader_onnx -q")
    ev = shell.run_line_magic("evaluate", "reader_onnx --data squad-bbc --limit 10 --batch-size 8 --no-widget -o -q")
    _check_qa_rows(ev)
    raw = json.loads(squad_bbc_path().read_text(encoding="utf-8"))
    ids = [qa["id"] for art in raw["data"] for p in art["paragraphs"] for qa in p["qas"]][:10]
    exact, f1 = _official(raw["data"], dict(zip(ids, ev.predictions["torch"]["answers"])))
    assert ev.rows[0]["exact_match"] == pytest.approx(exact) and ev.rows[0]["f1"] == pytest.approx(f1)


# -- 7. several models in one comparison --------------------------------------------------------------------


def test_several_models_evaluate_and_benchmark_as_one_result(shell, capsys, two_classifiers, labelled_csv):
    first, second = two_classifiers
    shell.user_ns.update(m1_folder=first, m2_folder=second, mm_csv=str(labelled_csv))
    shell.run_line_magic("load_model", "$m1_folder --name m1 -q")
    shell.run_line_magic("load_model", "$m2_folder --name m2 -q")
    ev = shell.run_line_magic("evaluate", "m1 m2 --data $mm_csv --variants torch,fp32 --no-widget -o -q")
    keys = [(r["model"], r["variant"]) for r in ev.rows]
    assert keys == [("m1", "torch"), ("m1", "fp32"), ("m2", "torch"), ("m2", "fp32")]
    assert len({r["model_sha"] for r in ev.rows}) == 2
    assert ev.reference == "m1/torch" and list(ev.to_pandas()["model"]) == ["m1", "m1", "m2", "m2"]
    assert str(ev).splitlines()[1].split()[:2] == ["model", "variant"]

    by_m2 = shell.run_line_magic("evaluate", "m1 m2 --data $mm_csv --variants torch,fp32 --reference m2/torch "
                                             "--no-widget -o -q")
    assert by_m2.reference == "m2/torch"
    assert [(r["model"], r["variant"]) for r in by_m2.rows][0] == ("m2", "torch")  # the reference runs first
    rows = {(r["model"], r["variant"]): r for r in by_m2.rows}
    assert rows[("m2", "fp32")]["agreement"] == 1.0  # fp32 of m2 against m2's torch
    m1_torch = rows[("m1", "torch")]
    assert m1_torch["pct_of_reference"] == pytest.approx(100 * m1_torch["accuracy"] / rows[("m2", "torch")]["accuracy"])

    bench = shell.run_line_magic("benchmark", f"m1 m2 --variants torch,fp32 --batch-sizes 1 --seq-lens 8 --inline "
                                              f"{FAST} -o -q")
    keys = sorted((r["model"], r["variant"]) for r in bench.rows)
    assert keys == [("m1", "fp32"), ("m1", "torch"), ("m2", "fp32"), ("m2", "torch")]  # none overwrote another
    assert all(r["status"] == "ok" for r in bench.rows)
    assert "model" in str(bench).splitlines()[1].split()


def test_two_different_models_under_one_name_are_refused(shell, capsys, two_classifiers, labelled_csv):
    first, second = two_classifiers
    shell.user_ns.update(m1_folder=first, m2_folder=second, mm_csv=str(labelled_csv))
    shell.run_line_magic("load_model", "$m1_folder --name same_a -q")
    # another model under the same name, as a user gets it from Python
    assert shell.run_cell("import hfmagic; same_b = hfmagic.load_model(m2_folder, name='same_a')",
                          store_history=False).success
    assert shell.user_ns["same_b"].name == "same_a"
    shell.run_line_magic("load_model", "$m2_folder --name m2 -q")
    for magic in ("evaluate same_a same_b --data $mm_csv --variants torch --no-widget",
                  f"benchmark same_a same_b --variants torch --batch-sizes 1 --seq-lens 8 --inline {FAST}"):
        message = refused(shell, capsys, f"%{magic}")
        assert "two different models are both named 'same_a'" in message, message
    bad = refused(shell, capsys, "%evaluate same_a m2 --data $mm_csv --reference nobody/torch --no-widget")
    assert "nobody/torch" in bad


def test_two_models_are_compared_by_label_name_not_class_id(shell, tiny_bert, labelled_csv, tmp_path):
    """The same weights with id2label renamed (ids 0 and 1 swapped) predict the same ids but other
    names: against the first, the second's agreement and flips count the names that differ, and its
    logits are compared class by class; a model with other labels is not compared at all."""
    import shutil

    import numpy as np

    swapped = tmp_path / "swapped"
    for folder, rename in ((swapped, {0: LABELS[1], 1: LABELS[0]}),):
        shutil.copytree(tiny_bert, folder)
        config = json.loads((folder / "config.json").read_text())
        id2label = {int(k): v for k, v in config["id2label"].items()} | rename
        config["id2label"], config["label2id"] = id2label, {v: k for k, v in id2label.items()}
        (folder / "config.json").write_text(json.dumps(config))
    shell.user_ns.update(orig_folder=str(tiny_bert), swapped_folder=str(swapped), mm_csv=str(labelled_csv))
    shell.run_line_magic("load_model", "$orig_folder --name orig -q")
    shell.run_line_magic("load_model", "$swapped_folder --name swapped -q")
    ev = shell.run_line_magic("evaluate", "orig swapped --data $mm_csv --variants torch --no-widget -o -q")
    rows = {r["model"]: r for r in ev.rows}
    ids = ev.predictions["orig/torch"]
    assert list(ev.predictions["swapped/torch"]) == list(ids)  # the same weights: the same ids
    labels = {i: n for i, n in enumerate(LABELS)}
    differ = sum(labels[int(i)] != {0: LABELS[1], 1: LABELS[0]}.get(int(i), labels[int(i)]) for i in ids)
    assert differ > 0  # the swapped model names some of those predictions otherwise
    assert rows["swapped"]["agreement"] == pytest.approx(1 - differ / len(ids))
    assert len([f for f in ev.flip_rows if f["model"] == "swapped"]) == differ
    assert rows["swapped"]["max_logit_diff"] > 0 or differ == 0
    from hfmagic.tasks import get_task

    evaluator = get_task("text-classification").evaluator()
    why = evaluator.align({"pred": ids, "logits": np.zeros((len(ids), 3))}, labels, labels | {0: "alpha"})
    assert isinstance(why, str) and "alpha" in why  # other labels: the row says it is not compared


def test_runs_of_several_models_are_listed_compared_and_rerun_whole(shell, two_classifiers, labelled_csv, tmp_path):
    """The store keeps every model of a several-model run: runs lists them and --model finds either;
    compare matches rows by model too (m1's torch never stands for m2's); rerun repeats both."""
    first, second = two_classifiers
    shell.run_line_magic("config", f"HFMagic.store_path = {str(tmp_path / 'runs.sqlite')!r}")
    try:
        shell.user_ns.update(m1_folder=first, m2_folder=second, mm_csv=str(labelled_csv))
        shell.run_line_magic("load_model", "$m1_folder --name m1 -q")
        shell.run_line_magic("load_model", "$m2_folder --name m2 -q")
        line = f"m1 m2 --variants torch --batch-sizes 1 --seq-lens 8 --inline {FAST} -o -q"
        a, b = (shell.run_line_magic("benchmark", line) for _ in range(2))
        listed = shell.run_line_magic("hfmagic", "runs --kind benchmark")
        assert [r["model"] for r in listed.rows] == ["m1, m2", "m1, m2"]
        assert all(len(r["weights"].split(", ")) == 2 for r in listed.rows)
        assert {r["id"] for r in shell.run_line_magic("hfmagic", "runs --model m2").rows} == {a.run_id, b.run_id}
        cmp = shell.run_line_magic("hfmagic", f"compare {a.run_id} {b.run_id}")
        figs = {(f["config"], f["figure"]): f for f in cmp.figures.rows}
        from hfmagic.runs.compare import _number

        for model in ("m1", "m2"):  # each model's figures beside the same model's
            key = (f"{model}/torch/torch b1 s8", "p50_ms")
            assert figs[key]["a"] == _number(next(r for r in a.rows if r["model"] == model)["p50_ms"])
            assert figs[key]["b"] == _number(next(r for r in b.rows if r["model"] == model)["p50_ms"])
        assert {c for c, _ in figs} == {"m1/torch/torch b1 s8", "m2/torch/torch b1 s8"}

        ev = shell.run_line_magic("evaluate", "m1 m2 --data $mm_csv --variants torch --no-widget -o -q")
        again = shell.run_line_magic("hfmagic", f"rerun {ev.run_id}")
        assert [(r["model"], r["variant"]) for r in again.rows] == [(r["model"], r["variant"]) for r in ev.rows]
        assert [r["accuracy"] for r in again.rows] == [r["accuracy"] for r in ev.rows]
        assert not any("no longer takes" in n for n in again.notes), again.notes
    finally:
        shell.run_line_magic("config", "HFMagic.store_path = ''")
