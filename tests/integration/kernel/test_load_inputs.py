"""What %load_model loads and what a model is fed (issue 23, items 4, 10 and 11).

- ``%load_model X`` of a bound handle reads its folder again: weights saved there since are the
  ones scored, under a new hash; a name that is both a variable and a folder means the folder; a
  handle whose weights changed on disk is refused by every command, torch-only runs included.
- ``--task`` must be one the architecture serves: a BERT classifier is no text generator.
- A model is fed only the inputs its forward and its ONNX graph take: a plain
  PreTrainedTokenizerFast makes token_type_ids, which a decoder's generate() refuses and GPT-2's
  graph lacks.
"""

from __future__ import annotations

import shutil

import pytest
from IPython.core.error import UsageError

from tests.support.tiny import LABELS, sentences


def new_weights(folder, seed: int):
    """Save other weights over the model in ``folder`` (large enough to change its predictions)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(folder)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def on_disk(folder) -> str:
    from hfmagic.core.hashing import file_sha256

    return file_sha256(folder / "model.safetensors")


def labels_of(folder, texts: list[str]) -> list[str]:
    """What the classifier in ``folder`` predicts for ``texts``: data it scores 100% on."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model, tok = AutoModelForSequenceClassification.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        logits = model(**tok(texts, padding=True, return_tensors="pt")).logits
    return [model.config.id2label[i] for i in logits.argmax(-1).tolist()]


@pytest.fixture
def labelled(shell):
    import pandas as pd

    texts = sentences(30, seed=3)
    shell.user_ns["df"] = pd.DataFrame({"text": texts, "label": [LABELS[i % 3] for i in range(len(texts))]})
    return texts


def evaluate_torch(shell, name: str):
    return shell.run_line_magic("evaluate", f"{name} --data df --variants torch --batch-size 8 --no-widget -o -q")


# -- item 4: a reload that reloads ----------------------------------------------------------------
def test_load_model_of_a_bound_handle_reads_its_folder_again(shell, tiny_bert, tmp_path, labelled):
    newer = new_weights(shutil.copytree(tiny_bert, tmp_path / "newer"), seed=1)
    shell.user_ns["df"]["label"] = labels_of(newer, labelled)  # the new weights score 100% on it
    folder = shutil.copytree(tiny_bert, tmp_path / "saved")
    shell.run_line_magic("load_model", f"{folder} --name mm -q")
    first = evaluate_torch(shell, "mm")  # its PyTorch model and hash are now held by the handle
    assert first.weights_sha256 == on_disk(folder) and first.rows[0]["accuracy"] < 0.9

    shutil.copy2(newer / "model.safetensors", folder / "model.safetensors")  # save_pretrained's new weights
    with pytest.raises(UsageError, match=r"the weights in .* changed after mm was loaded; load it again "
                                         r"\(%load_model mm\)"):
        evaluate_torch(shell, "mm")  # torch only: refused as an export is, not scored on the old weights
    with pytest.raises(UsageError, match="changed after mm was loaded"):
        shell.run_line_magic("benchmark", "mm --variants torch --inline --batch-sizes 1 --seq-lens 8 -q")

    old = shell.user_ns["mm"]
    shell.run_line_magic("load_model", "mm -q")  # what the message says to do
    mm = shell.user_ns["mm"]
    assert mm is not old and mm.name == "mm" and mm.path == old.path and mm.source == old.source
    assert mm.weights_sha256 == on_disk(folder) != first.weights_sha256
    again = evaluate_torch(shell, "mm")
    assert again.weights_sha256 == on_disk(folder)
    assert again.rows[0]["accuracy"] == 1.0  # the new weights scored, not the old ones


def test_a_name_that_is_a_variable_and_a_folder_loads_the_folder(shell, tiny_bert, tmp_path, monkeypatch):
    """``mm`` bound to a handle of another folder, and ``./mm`` here: the folder is meant. A model
    object under that name stays as it is: the handle of the folder goes beside it."""
    from transformers import AutoModelForSequenceClassification

    monkeypatch.chdir(tmp_path)
    other = shutil.copytree(tiny_bert, tmp_path / "other")
    here = shutil.copytree(tiny_bert, tmp_path / "mm")
    new_weights(here, seed=2)
    shell.run_line_magic("load_model", f"{other} --name mm -q")
    shell.run_line_magic("load_model", "mm -q")
    assert shell.user_ns["mm"].path == here.resolve() and shell.user_ns["mm"].weights_sha256 == on_disk(here)

    obj = AutoModelForSequenceClassification.from_pretrained(other)
    shell.user_ns["mm"] = obj
    shell.user_ns.pop("mm_model", None)
    shell.run_line_magic("load_model", "mm -q")
    assert shell.user_ns["mm"] is obj  # the user's object is untouched
    assert shell.user_ns["mm_model"].path == here.resolve()


# -- item 10: a task the architecture cannot serve -------------------------------------------------
def test_a_task_the_architecture_cannot_serve_is_refused_and_the_handle_kept(shell, tiny_bert, tiny_factory):
    from hfmagic import load_model

    shell.run_line_magic("load_model", f"{tiny_bert} --name sent -q")
    sent = shell.user_ns["sent"]
    said = ("BertForSequenceClassification, which serves text-classification and feature-extraction, not "
            "text-generation")
    with pytest.raises(UsageError, match=f"^sent is a {said} .*; leave --task out, or pass one of those$") as refused:
        shell.run_line_magic("load_model", "sent --task text-generation")
    assert "\n" not in str(refused.value)
    assert shell.user_ns["sent"] is sent and sent.task == "text-classification"
    with pytest.raises(UsageError, match=said):
        shell.run_line_magic("load_model", f"{tiny_bert} --task text-generation --name gen")
    assert "gen" not in shell.user_ns
    with pytest.raises(Exception, match=said):
        load_model(sent, task="text-generation")
    with pytest.raises(UsageError, match="BertForSequenceClassification, which serves .* not token-classification"):
        shell.run_line_magic("load_model", "sent --task token-classification")

    # what the weights hold: a classifier as itself or as its encoder; a bare encoder as an encoder
    assert shell.run_line_magic("load_model", "sent --task text-classification -o -q").task == "text-classification"
    assert shell.run_line_magic("load_model", "sent --task feature-extraction --name sent_fe -o -q").labels == {}
    bare = tiny_factory("bert", "feature-extraction")
    assert shell.run_line_magic("load_model", f"{bare} --task feature-extraction -o -q").task == "feature-extraction"
    with pytest.raises(UsageError, match="BertModel, which serves feature-extraction, not text-classification"):
        shell.run_line_magic("load_model", f"{bare} --task text-classification")


# -- item 11: only the inputs a model takes ---------------------------------------------------------
def plain_tokenizer(folder) -> None:
    """The folder's tokenizer saved again as a plain PreTrainedTokenizerFast: its default
    model_input_names make token_type_ids, whatever the model."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(folder)
    plain = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, model_max_length=512,
                                    **tok.special_tokens_map)
    plain.save_pretrained(folder)
    assert "token_type_ids" in PreTrainedTokenizerFast.from_pretrained(folder)("the market")


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_a_decoder_whose_tokenizer_makes_token_type_ids_exports(shell, tiny_factory, tmp_path, capsys, arch):
    folder = shutil.copytree(tiny_factory(arch, "text-generation"), tmp_path / "dec")
    plain_tokenizer(folder)
    shell.run_line_magic("load_model", f"{folder} --name dec -q")
    variants = shell.run_line_magic("export_onnx", "dec --levels fp32 --quantize none -o -q")
    assert variants["fp32"].ok, variants["fp32"].error
    assert variants["fp32"].validation["cosine"] > 0.999 and variants["fp32"].validation["argmax_agreement"] == 1.0
    assert "Traceback" not in "".join(capsys.readouterr())


def test_a_gpt2_encoder_fed_token_type_ids_agrees_with_its_graph(shell, tiny_factory, tmp_path, labelled):
    """GPT-2's forward takes token_type_ids but looks them up in its word embeddings; its graph takes
    none. Fed the tokenizer's zeros, PyTorch parted from ONNX (cosine 0.79): validation said the
    export diverged, and %evaluate had nothing to compare."""
    folder = shutil.copytree(tiny_factory("gpt2", "feature-extraction"), tmp_path / "enc")
    plain_tokenizer(folder)
    shell.run_line_magic("load_model", f"{folder} --name enc -q")
    variants = shell.run_line_magic("export_onnx", "enc --levels fp32 --quantize none --name enc_onnx -o -q")
    assert variants["fp32"].ok, variants["fp32"].error
    assert variants["fp32"].validation["cosine"] > 0.9999
    ev = shell.run_line_magic("evaluate", "enc_onnx --data df --batch-size 8 --no-widget -o -q")
    assert [r["status"] for r in ev.rows] == ["ok", "ok"] and ev.rows[1]["cosine"] > 0.9999
