"""What a new user is told about their data and weights (issue 11, items 5 and 9): a CSV with no
text column, labels that are strings of digits (and --label-map to score them), a guessed text
column among several, and a pickled weights file that carries code."""

import os
import shutil

import pandas as pd
import pytest
from IPython.core.error import UsageError

from tests.support.cli import cli
from tests.support.tiny import LABELS, sentences


def run_cell(shell, code):
    return shell.run_cell(code, store_history=False)


def refused(shell, capsys, code):
    """Run a cell that must fail in one line; return that line."""
    res = run_cell(shell, code)
    said = capsys.readouterr()
    assert not res.success and isinstance(res.error_in_exec, UsageError), said
    assert "Traceback" not in said.out + said.err
    return str(res.error_in_exec)


def test_a_table_without_a_text_column_is_told_that_not_about_its_labels(shell, tiny_bert, tmp_path, capsys):
    csv = tmp_path / "ids.csv"
    pd.DataFrame({"id": [1, 2, 3], "label": ["sport", "business", "sport"]}).to_csv(csv, index=False)
    message = refused(shell, capsys, f"%evaluate {tiny_bert} --data {csv} --variants torch")
    assert f"{csv} has no text column" in message and "columns (id, label)" in message
    assert "--text-column" in message and "holds the labels" not in message
    done = cli("evaluate", tiny_bert, "--data", csv, "--variants", "torch")
    assert done.returncode == 2 and done.stderr.startswith(f"hfmagic: {csv} has no text column")
    assert len(done.stderr.strip().splitlines()) == 1


def test_labels_that_are_strings_of_digits_say_so_and_label_map_scores_them(shell, tiny_bert, digits, capsys):
    shell.user_ns.update(digits=digits, mapping={"0": "business", "1": "politics", "2": "sport"},
                         swapped={"0": "sport", "1": "politics", "2": "business"})
    message = refused(shell, capsys, f"%evaluate {tiny_bert} --data digits --variants torch")
    assert "strings of digits ('0', '1', '2'), which look like class ids" in message
    assert "0:business, 1:politics, 2:sport" in message and "--label-map ids" in message
    assert "--label-map '{\"0\": \"business\", \"1\": \"politics\"}'" in message

    results = {}
    for name, spec in [("ids", "ids"), ("named", "mapping"), ("literal", "{'0': 'business', '1': 'politics', "
                                                                         "'2': 'sport'}"),
                       ("json", '\'{"0": 0, "1": 1, "2": 2}\''), ("swapped", "swapped")]:
        res = run_cell(shell, f"%evaluate {tiny_bert} --data digits --variants torch --label-map {spec} "
                              f"--name ev_{name} -q")
        assert res.success, (name, capsys.readouterr())
        results[name] = shell.user_ns[f"ev_{name}"]
    import numpy as np

    pred = results["ids"].predictions["torch"]
    truth = np.array([int(v) for v in digits.label])
    assert results["ids"].rows[0]["accuracy"] == pytest.approx((pred == truth).mean())
    for name in ("named", "literal", "json"):
        assert results[name].rows[0]["accuracy"] == results["ids"].rows[0]["accuracy"], name
    swapped = np.array([{0: 2, 1: 1, 2: 0}[t] for t in truth])
    assert results["swapped"].rows[0]["accuracy"] == pytest.approx((pred == swapped).mean())

    # the map is recorded with the run, so the run can be made again
    from hfmagic.store.db import default_store

    run = default_store().get(results["swapped"].run_id)
    assert run["params"]["label_map"] == {"0": "sport", "1": "politics", "2": "business"}
    assert default_store().get(results["ids"].run_id)["params"]["label_map"] == "ids"

    # a map naming a label the model lacks, and one that misses a data label: one line each
    message = refused(shell, capsys, f"%evaluate {tiny_bert} --data digits --variants torch "
                                     "--label-map {'0': 'finance'}")
    assert "--label-map maps '0' to 'finance', which is not one of the model's labels" in message
    message = refused(shell, capsys, f"%evaluate {tiny_bert} --data digits --variants torch "
                                     "--label-map {'0': 'sport'}")
    assert "labels neither --label-map nor the model's id2label know: '1', '2'" in message
    message = refused(shell, capsys, f"%evaluate {tiny_bert} --data digits --variants torch --label-map no.json")
    assert message.startswith("--label-map 'no.json' is no file here; give a dict (a variable, or a literal")


def test_a_rerun_uses_the_recorded_label_map(shell, tiny_bert, digits, tmp_path, capsys):
    data = tmp_path / "digits.parquet"
    digits.to_parquet(data)
    run_cell(shell, f"%evaluate {tiny_bert} --data {data} --variants torch --label-map ids --name first -q")
    first = shell.user_ns["first"]
    res = run_cell(shell, f"%hfmagic rerun {first.run_id}")
    said = capsys.readouterr()
    assert res.success and "Traceback" not in said.out + said.err, said
    assert f"rerun of {first.run_id}" in said.out
    assert f"{first.rows[0]['accuracy']:.4f}" in said.out


def test_a_guessed_text_column_among_several_is_in_the_title(shell, tiny_bert, tmp_path, capsys):
    texts = sentences(12, seed=3)
    frame = pd.DataFrame({"title": [t[:12] for t in texts], "body": texts,
                          "label": [LABELS[i % 3] for i in range(12)]})
    shell.user_ns["articles"] = frame
    res = run_cell(shell, f"%evaluate {tiny_bert} --data articles --variants torch --name ev_articles --no-widget")
    assert res.success
    out = capsys.readouterr().out
    title = out.splitlines()[0]
    assert title.startswith("evaluation of") and "texts from 'body', guessed; 'title' also holds text" in title
    assert shell.user_ns["ev_articles"].table().title == title
    csv = tmp_path / "articles.csv"
    frame.to_csv(csv, index=False)
    done = cli("evaluate", tiny_bert, "--data", csv, "--variants", "torch")
    assert done.returncode == 0, done.stderr
    assert "texts from 'body', guessed; 'title' also holds text" in done.stdout.splitlines()[0]
    # named, or the only text column: no caveat in the title
    res = run_cell(shell, f"%evaluate {tiny_bert} --data articles --text-column body --variants torch "
                          "--name ev_named -q")
    assert res.success and "guessed" not in shell.user_ns["ev_named"].table().title


class Payload:
    """Unpickling this runs ``touch MARKER``: what a weights file carrying code does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def code_carrying_model(tiny_bert, folder, marker, zip_format=True):
    """tiny_bert's config and tokenizer beside a pytorch_model.bin whose pickle calls os.system."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(tiny_bert, folder)
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    state["classifier.extra"] = Payload(marker)
    torch.save(state, folder / "pytorch_model.bin", _use_new_zipfile_serialization=zip_format)
    return folder


@pytest.mark.parametrize("zip_format, commands", [(True, ("load", "benchmark")), (False, ("load",))],
                         ids=["zip", "legacy"])
def test_a_weights_file_that_carries_code_is_refused_in_one_line(shell, tiny_bert, tmp_path, capsys, zip_format,
                                                                 commands):
    marker = tmp_path / "MARKER"
    folder = code_carrying_model(tiny_bert, tmp_path / "evil", marker, zip_format)
    shell.user_ns["keep"] = 42
    for code in (f"%load_model {folder}", f"%benchmark {folder} --batch-sizes 1 --seq-lens 8",
                 f"%export_onnx {folder}"):
        message = refused(shell, capsys, code)
        assert message.startswith(f"{folder / 'pytorch_model.bin'} holds more than tensors: its pickle calls "
                                  "posix.system"), message
        assert "hfmagic will not unpickle it" in message and "safetensors" in message
        assert "from_tf" not in message and "tensorflow" not in message
    assert shell.user_ns["keep"] == 42
    for command in commands:
        done = cli(command, folder)
        assert done.returncode == 2 and done.stderr.startswith("hfmagic: ") and "posix.system" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not marker.exists()  # nothing in the file ran


def test_the_parameter_count_of_weights_swapped_for_code_is_no_traceback(shell, tiny_bert, tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification

    good = tmp_path / "good"
    AutoModelForSequenceClassification.from_pretrained(tiny_bert).save_pretrained(good, safe_serialization=False)
    for name in os.listdir(tiny_bert):
        if name.startswith(("tokenizer", "special", "vocab")):
            shutil.copy(tiny_bert / name, good / name)
    assert run_cell(shell, f"%load_model {good} --name pickled -q").success  # plain tensors: loads
    marker = tmp_path / "MARKER"
    evil = code_carrying_model(tiny_bert, tmp_path / "evil", marker)
    shutil.copy(evil / "pytorch_model.bin", good / "pytorch_model.bin")  # changed on disk after the load
    res = run_cell(shell, "pickled")
    said = capsys.readouterr()
    assert res.success and "Traceback" not in said.out + said.err, said
    assert "parameters" in said.out and "posix.system" in said.out
    assert not marker.exists()
