"""What a user types that hfmagic took badly: settings it should refuse, states it should show,
arguments it misread, and messages that named what the user cannot do. Through the real shell,
the Python API in a cell and a notebook's kernel, on tiny models."""

from __future__ import annotations

import copy
import logging
import re

import pytest
from IPython.core.error import UsageError

import hfmagic
from tests.support.cli import one_line
from tests.support.fast import SWEEP_TIMING as FAST
from tests.support.tiny import LABELS, sentences


def cell(shell, code: str):
    """Run ``code`` as a cell; its result (the cell must succeed)."""
    res = shell.run_cell(code, store_history=False)
    assert res.success, res.error_in_exec or res.error_before_exec
    return res.result


def refused(shell, code: str) -> str:
    """Run a cell that must fail with one hfmagic line; that line."""
    res = shell.run_cell(code, store_history=False)
    assert not res.success and isinstance(res.error_in_exec, (UsageError, hfmagic.HFMagicError)), res.error_in_exec
    return one_line(str(res.error_in_exec))


@pytest.fixture(scope="module")
def table():
    import pandas as pd

    texts = sentences(24, seed=3)
    return pd.DataFrame({"text": texts, "label": [LABELS[i % 3] for i in range(len(texts))]})


# -- %config HFMagic.cluster -----------------------------------------------------------------------

@pytest.mark.parametrize("value", ["'garbage!!'", "'10.0.0.5'", "'http://10.0.0.5:6379'", "'head:99999'"])
def test_the_cluster_setting_refuses_what_is_not_an_address(shell, caplog, value):
    settings = hfmagic.settings()  # the session's shell shares it: its value and config are put back
    before, config = settings.cluster, copy.deepcopy(settings.config)
    try:
        settings.cluster = "127.0.0.1:6379"
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            shell.run_line_magic("config", f"HFMagic.cluster = {value}")
        logged = [r.getMessage() for r in caplog.records]
        assert len(logged) == 1, logged
        line = one_line(logged[0])
        assert line.startswith(f"HFMagic.cluster = {value} refused") and "HOST:PORT, ray://HOST:PORT or auto" in line
        assert line.endswith("the setting keeps its value")
        assert settings.cluster == "127.0.0.1:6379"
        for good in ("''", "'auto'", "'ray://head.example:10001'", "'10.0.0.5:6379'"):
            shell.run_line_magic("config", f"HFMagic.cluster = {good}")
            assert settings.cluster == good.strip("'")
    finally:
        settings.config, settings.cluster = config, before


# -- --backends with a GPU provider this machine lacks ---------------------------------------------

def test_a_gpu_backend_alone_gives_rows_that_say_unavailable(shell, tiny_bert):
    from hfmagic.backends import OnnxRuntimeCuda

    if OnnxRuntimeCuda.is_available()[0]:
        pytest.skip("this machine has onnxruntime's CUDA provider")
    shell.user_ns["tb"] = hfmagic.load_model(tiny_bert, name="tb")
    result = shell.run_line_magic("benchmark", f"tb --variants fp32 --backends onnxruntime-cuda --batch-sizes 1 "
                                               f"--seq-lens 8 {FAST} --no-widget -o -q")
    [row] = result.rows
    assert row["backend"] == "onnxruntime-cuda" and row["status"].startswith("unavailable: onnxruntime")
    assert "CUDAExecutionProvider" in row["status"]
    both = shell.run_line_magic("benchmark", f"tb --variants torch,fp32 --backends torch,onnxruntime-cuda "
                                             f"--batch-sizes 1 --seq-lens 8 {FAST} --no-widget -o -q")
    assert [(r["backend"], r["status"].split(":")[0]) for r in both.rows] == [("torch", "ok"),
                                                                              ("onnxruntime-cuda", "unavailable")]


# -- a string where the Python API takes a list -----------------------------------------------------

def test_the_python_api_reads_a_name_or_a_comma_separated_string_as_a_list(shell, tiny_bert, table):
    shell.user_ns.update(hfmagic=hfmagic, tb=hfmagic.load_model(tiny_bert, name="tb"), table=table)
    one = cell(shell, "hfmagic.evaluate(tb, data=table, metrics='accuracy', variants='torch', progress=False)")
    assert one.metrics == ["accuracy"] and [r["variant"] for r in one.rows] == ["torch"]
    two = cell(shell, "hfmagic.evaluate(tb, data=table, metrics='accuracy, f1_macro', variants='torch', "
                      "progress=False)")
    assert two.metrics == ["accuracy", "f1_macro"]
    bench = cell(shell, "hfmagic.benchmark(tb, variants='torch', backends='torch', batch_sizes='1,2', seq_lens=8, "
                        "inline=True, threads=1, warmup=1, min_runs=3, min_time=0.05, progress=False)")
    assert [(r["variant"], r["batch_size"], r["seq_len"]) for r in bench.rows] == [("torch", 1, 8), ("torch", 2, 8)]
    line = refused(shell, "hfmagic.benchmark(tb, variants='torch', batch_sizes='1,,2', inline=True, progress=False)")
    assert line.startswith("could not read batch sizes from '1,,2': item 2 of 3 is empty")


# -- question answering on a model with few positions ----------------------------------------------

def test_a_question_too_long_for_a_short_model_says_what_the_user_can_change(shell, tmp_path):
    """A QA model of 32 positions: the pipeline's defaults (windows of 32 tokens overlapping by 16)
    leave no room for a long question's context. %evaluate takes no window or stride, so the line
    names the question and what can change: the question, or the model."""
    import json

    import transformers

    from tests.support.tiny import make_tokenizer

    tokenizer = make_tokenizer("bert")
    config = transformers.BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=32)
    folder = tmp_path / "short-qa"
    transformers.BertForQuestionAnswering(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    context = "the league season ended with a goal by the star player of the city club"
    records = [{"id": "q-short", "question": "who scored", "context": context,
                "answers": {"text": ["the star player"], "answer_start": [context.index("the star player")]}},
               {"id": "q-long", "question": " ".join(["which player of the city club scored the goal"] * 2),
                "context": context,
                "answers": {"text": ["the star player"], "answer_start": [context.index("the star player")]}}]
    data = tmp_path / "questions.json"
    data.write_text(json.dumps(records))
    shell.user_ns["short_qa"] = hfmagic.load_model(folder, name="short_qa")
    with pytest.raises(UsageError) as err:
        shell.run_line_magic("evaluate", f"short_qa --data {data} --variants torch --no-widget -q")
    line = one_line(str(err.value))
    assert re.search(r"^question 'q-long' is \d+ tokens, which leaves 0 of the 32 tokens short_qa reads at once", line)
    assert "shorten that question to 12 tokens or fewer" in line  # 32 - [CLS] [SEP] [SEP] - 16 overlap - 1
    assert "max_seq_len" not in line and "doc_stride" not in line


# -- a speech model without Debian's LibriVox clips ------------------------------------------------

def test_speech_exports_and_evaluates_on_the_users_audio_without_librivox(shell, tmp_path, monkeypatch):
    """No pocketsphinx-testdata (HFMAGIC_LIBRIVOX names a folder that is not there): an export with
    no data is validated on synthetic audio and says so; with --calibration, on the user's clips;
    %evaluate scores the user's folder; asking for librivox says how to get it, or what to give."""
    import numpy as np
    import soundfile

    from tests.support.tiny import make_tiny_speech

    monkeypatch.setenv("HFMAGIC_LIBRIVOX", str(tmp_path / "no-librivox"))
    clips = tmp_path / "my-recordings"
    clips.mkdir()
    rng = np.random.default_rng(0)
    for i, words in enumerate(["hello world", "good morning", "see you soon"]):
        soundfile.write(clips / f"take{i}.wav", (0.1 * rng.standard_normal(16000 * (i + 1))).astype("float32"), 16000)
        with open(clips / "transcripts.txt", "a") as f:
            f.write(f"take{i}\t{words}\n")
    shell.user_ns["w2v"] = hfmagic.load_model(make_tiny_speech(tmp_path / "w2v"), name="w2v")

    plain = shell.run_line_magic("export_onnx", "w2v -o -q")
    assert [v.name for v in plain if v.ok] == ["torch", "fp32", "int8"]
    assert plain["fp32"].validation["inputs_from"].startswith("synthetic audio")
    [note] = [n for n in plain.notes if n.startswith("validated on")]
    assert "synthetic audio" in note and "make data" in note and "--calibration" in note

    own = shell.run_line_magic("export_onnx", f"w2v --calibration {clips} --force -o -q")
    assert own.names == ["torch", "fp32", "int8", "int8-static"] and own["fp32"].ok and own["int8"].ok
    assert {v.validation["inputs_from"] for v in own if v.kind == "onnx"} == {f"the first clips of {clips}"}

    result = shell.run_line_magic("evaluate", f"w2v --data {clips} --no-widget -o -q")
    assert [r["variant"] for r in result.rows] == ["torch", "fp32", "int8"] and result.rows[0]["n"] == 3

    with pytest.raises(UsageError) as err:
        shell.run_line_magic("evaluate", "w2v --data librivox --variants torch -q")
    line = one_line(str(err.value))
    assert "pocketsphinx-testdata" in line and "make data" in line and "make install" not in line
    assert "your own audio" in line


# -- other libraries' chatter in a notebook cell ---------------------------------------------------

def test_nncf_and_transformers_keep_their_chatter_out_of_a_notebooks_cells(tiny_bert, tmp_path):
    """A real kernel (nbclient): NNCF's progress bars (rich's, a widget of their own in Jupyter) and
    transformers' 'Token indices sequence length' and generate() notices stay out of the cells;
    -q leaves an export's cell empty."""
    pytest.importorskip("nncf")
    import nbformat
    from nbclient import NotebookClient

    from tests.support.tiny import make_tiny

    decoder = make_tiny(tmp_path / "decoder", "gpt2", "text-generation")
    texts = sentences(16, seed=5)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in (
        "%load_ext hfmagic\nimport hfmagic, pandas as pd",
        f"texts = pd.DataFrame({{'text': {texts!r}}})",
        f"%export_onnx {tiny_bert} --levels fp32 --quantize nncf --calibration texts --samples 8 --force -q",
        f"ppl = hfmagic.evaluate({str(decoder)!r}, variants=['torch'], progress=False)",
        "print(ppl.rows[0]['perplexity'] > 0)")])
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    export, perplexity, shown = nb.cells[2].outputs, nb.cells[3].outputs, nb.cells[4].outputs
    assert export == [], export
    assert perplexity == [], perplexity
    assert [o.get("text") for o in shown] == ["True\n"]


# -- the progress of interleaved rounds -------------------------------------------------------------

def test_interleaved_rounds_progress_counts_rounds_with_what_is_left(shell, tiny_bert, capsys):
    """While the rounds go on, the bar and the live dashboard's progress count rounds against the
    stopping rule's estimate, with the seconds left; not 0 of the configurations until the end."""
    shell.user_ns.update(hfmagic=hfmagic, tb=hfmagic.load_model(tiny_bert, name="tb"), events=[])
    cell(shell, "r = hfmagic.benchmark(tb, variants=['torch', 'fp32'], batch_sizes=[1, 2], "
                "seq_lens=[8], threads=1, warmup=1, min_runs=3, min_time=0.05, max_time=3, ci_target=0.001, "
                "inline=True, callback=events.append)")
    err = capsys.readouterr().err
    rounds = [e for e in shell.user_ns["events"] if e["type"] == "progress" and e["label"].startswith("round")]
    assert len(rounds) >= 5 and [e["done"] for e in rounds] == list(range(1, len(rounds) + 1))
    assert all(e["done"] <= e["total"] for e in rounds) and rounds[-1]["done"] == rounds[-1]["total"]
    assert all(re.search(r"^round \d+, about \d+ s left", e["label"]) for e in rounds)
    assert any("widest speed-up interval" in e["label"] for e in rounds)
    assert re.search(r"benchmark tb: .*\| *[1-9]\d*/\d+ \[[^]]*round", err), err[-600:]
    assert shell.user_ns["r"].rows and all(row["status"] == "ok" for row in shell.user_ns["r"].rows)
