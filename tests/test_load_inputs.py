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
