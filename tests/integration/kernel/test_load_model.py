"""The foundation through a real shell: the extension, %load_model, its card and name, bad sources in
one line, settings as traitlets, %hfmagic help and status."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from IPython.core.error import UsageError

HEAVY = ("torch", "transformers", "optimum", "onnxruntime", "evaluate", "datasets")


def run_cell(shell, code):
    """Run a cell the way a notebook does; return its result object."""
    return shell.run_cell(code, store_history=False)


def test_load_ext_imports_nothing_heavy_in_a_fresh_process():
    code = ("import sys; from IPython.core.interactiveshell import InteractiveShell; "
            "ip = InteractiveShell.instance(); ip.run_line_magic('load_ext', 'hfmagic'); "
            f"print([m for m in {HEAVY!r} if m in sys.modules]); "
            "print(sorted(k for k in ip.magics_manager.magics['line'] if k in "
            "('load_model','export_onnx','benchmark','evaluate','hfmagic')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    heavy, magics = out.strip().splitlines()
    assert heavy == "[]"
    assert magics == "['benchmark', 'evaluate', 'export_onnx', 'hfmagic', 'load_model']"


def test_magic_help_comes_from_magic_arguments(shell):
    doc = shell.find_line_magic("benchmark").__doc__
    assert "%benchmark [--variants" in doc and "--budget BUDGET" in doc and "latency percentiles" in doc


def test_load_model_binds_a_handle_with_its_card(shell, tiny_bert):
    res = run_cell(shell, f"%load_model {tiny_bert} --name clf")
    assert res.success
    handle = shell.user_ns["clf"]
    assert handle.task == "text-classification"
    assert handle.labels == {0: "business", 1: "politics", 2: "sport"}
    from safetensors.torch import load_file

    expected = sum(t.numel() for t in load_file(tiny_bert / "model.safetensors").values())
    assert handle.num_parameters == expected
    text, html = str(handle), handle._repr_html_()
    for fragment in ("BertForSequenceClassification", "text-classification", "0:business", str(tiny_bert)):
        assert fragment in text and fragment in html
    assert handle.torch_model().config.num_labels == 3


def test_name_is_derived_from_the_source(shell, tiny_factory):
    folder = tiny_factory("distilbert", "feature-extraction")
    shell.run_line_magic("load_model", f"{folder} -q")
    name = folder.name.lower().replace("-", "_")
    assert shell.user_ns[name].task == "feature-extraction"


def test_task_override_and_unknown_task(shell, tiny_bert):
    handle = shell.run_line_magic("load_model", f"{tiny_bert} --task feature-extraction -o -q --name fe")
    assert handle.task == "feature-extraction" and handle.labels == {}
    with pytest.raises(UsageError, match="unknown task 'summarization'; hfmagic's tasks are: text-classification"):
        shell.run_line_magic("load_model", f"{tiny_bert} --task summarization")


def test_model_object_in_the_namespace(shell, tiny_bert):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    shell.user_ns["pipe"] = pipeline("text-classification",
                                     model=AutoModelForSequenceClassification.from_pretrained(tiny_bert),
                                     tokenizer=AutoTokenizer.from_pretrained(tiny_bert))
    shell.run_line_magic("load_model", "pipe -q")
    handle = shell.user_ns["pipe_model"]
    assert handle.task == "text-classification" and (handle.path / "tokenizer.json").exists()
    assert shell.user_ns["pipe"] is not handle  # the user's object is untouched
    # the saved copy is addressed by all its files, so a changed config is not served a stale copy
    shell.user_ns["pipe"].model.config.id2label = {0: "a", 1: "b", 2: "c"}
    again = shell.run_line_magic("load_model", "pipe -o -q")
    assert again.path != handle.path and again.labels == {0: "a", 1: "b", 2: "c"}
    assert handle.labels == {0: "business", 1: "politics", 2: "sport"}


def test_a_bound_handle_takes_a_new_task_and_name(shell, tiny_bert):
    shell.run_line_magic("load_model", f"{tiny_bert} --name clf2 -q")
    shell.run_line_magic("load_model", "clf2 --task feature-extraction --name fe2 -q")
    assert shell.user_ns["fe2"].task == "feature-extraction" and shell.user_ns["fe2"].labels == {}
    assert shell.user_ns["clf2"].task == "text-classification" and shell.user_ns["clf2"].name == "clf2"
    shell.run_line_magic("load_model", "clf2 --name other -q")
    assert shell.user_ns["other"].name == "other" and shell.user_ns["other"].path == shell.user_ns["clf2"].path


def test_a_bad_name_is_refused_before_any_work(shell, tiny_bert):
    from hfmagic.models.handle import derive_name

    assert derive_name("/models/class/") == "class_model" and derive_name("org/2-MiniLM") == "m_2_minilm"
    before = dict(shell.user_ns)
    for line in ("load_model /no/such/folder --name class", f"benchmark {tiny_bert} --name 1x --batch-sizes 1"):
        magic, _, rest = line.partition(" ")
        with pytest.raises(UsageError, match="--name '(class|1x)' is not a valid variable name"):
            shell.run_line_magic(magic, rest)  # the folder is never looked at, nothing is measured
    assert shell.user_ns.keys() == before.keys()


def _broken(tiny_bert: Path, folder: Path, how: str) -> Path:
    """A copy of the tiny model broken the way ``how`` says."""
    import shutil

    shutil.copytree(tiny_bert, folder)
    weights = folder / "model.safetensors"
    if how == "badconfig":
        (folder / "config.json").write_text('{"model_type": "bert",')
    elif how == "notokenizer":
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
            (folder / name).unlink(missing_ok=True)
    elif how == "truncated":
        weights.write_bytes(weights.read_bytes()[:-1000])
    elif how == "garbage":
        weights.write_bytes(b"<html>rate limited</html>")
    elif how == "truncatedbin":
        from safetensors.torch import load_file
        import torch

        torch.save(load_file(weights), folder / "pytorch_model.bin")
        weights.unlink()
        pickled = folder / "pytorch_model.bin"
        pickled.write_bytes(pickled.read_bytes()[:-2000])
    elif how == "badindex":
        weights.rename(folder / "model-00001-of-00001.safetensors")
        (folder / "model.safetensors.index.json").write_text('{"weight_map": {"a.weight": 7}}')
    return folder


@pytest.mark.parametrize("source, message", [
    ("/no/such/folder", "no folder at /no/such/folder"),
    ("{empty}", "holds no model (no config.json)"),
    ("someorg/some-model", "no folder someorg/some-model here, and the hub cannot be reached to fetch it"),
    ("typo_folder_name", "no folder typo_folder_name here, and the hub cannot be reached"),
    ("--revision", "argument --revision: expected one argument"),
    ("{badconfig}", "config.json is not valid JSON"),
    ("{notokenizer}", "has weights but no tokenizer (no tokenizer.json, tokenizer_config.json or vocabulary "
                      "file); save it beside them: tokenizer.save_pretrained(folder)"),
    ("{truncated}", "model.safetensors is cut short"),
    ("{garbage}", "model.safetensors is not a readable safetensors file"),
    ("{truncatedbin}", "pytorch_model.bin is cut short or corrupt"),
    ("{badindex}", "model.safetensors.index.json is not a weights index (its weight_map names no files)"),
    ("bare", "this BertForSequenceClassification comes with no tokenizer hfmagic can find"),
])
def test_bad_sources_give_one_line_and_keep_the_namespace(shell, capsys, tmp_path, tiny_bert, source, message):
    if source.startswith("{") and source != "{empty}":
        source = str(_broken(tiny_bert, tmp_path / "model", source.strip("{}")))
    source = source.format(empty=tmp_path)
    if source == "bare":  # a model object made from a config: no folder, so no tokenizer to find
        from transformers import BertConfig, BertForSequenceClassification

        shell.user_ns["bare"] = BertForSequenceClassification(BertConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    shell.user_ns["keep"] = 42
    before = dict(shell.user_ns)
    res = run_cell(shell, f"%load_model {source}")
    err = capsys.readouterr()
    assert not res.success and isinstance(res.error_in_exec, UsageError)
    assert message in str(res.error_in_exec)
    output = err.out + err.err
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1
    assert shell.user_ns.keys() == before.keys() and shell.user_ns["keep"] == 42


def test_settings_are_traitlets_reachable_through_config(shell):
    from hfmagic.core.config import settings

    shell.run_line_magic("config", "HFMagic.threads = 2")
    assert settings().threads == 2 and settings().resolved_threads() == 2
    shell.run_line_magic("config", "HFMagic.batch_sizes = [1, 4]")
    assert settings().batch_sizes == [1, 4]
    assert settings().cache_dir == os.environ["HFMAGIC_CACHE_DIR"]
    shell.run_line_magic("config", "HFMagic.threads = 0")


def test_hfmagic_help_and_status(shell):
    assert "%export_onnx" in shell.run_line_magic("hfmagic", "help")
    status = str(shell.run_line_magic("hfmagic", "status"))
    assert "transformers" in status and "4.57" in status and "cache folder" in status
    with pytest.raises(UsageError, match="unknown subcommand 'frobnicate'"):
        shell.run_line_magic("hfmagic", "frobnicate")


@pytest.mark.slow
def test_demo_is_a_real_bbc_classifier(shell, demo_folder):
    handle = shell.run_line_magic("load_model", "demo -o -q")
    assert handle.path == demo_folder
    assert sorted(handle.labels.values()) == ["business", "entertainment", "politics", "sports", "tech"]
    assert len(handle.dataset) == 445 and set(handle.dataset.columns) == {"text", "label"}
    assert 22_000_000 < handle.num_parameters < 23_500_000
    import torch

    model, tok = handle.torch_model(), handle.tokenizer()
    sample = handle.dataset.iloc[:64]
    with torch.inference_mode():
        logits = model(**tok(list(sample.text), truncation=True, padding=True, return_tensors="pt")).logits
    predicted = [model.config.id2label[i] for i in logits.argmax(-1).tolist()]
    assert sum(p == y for p, y in zip(predicted, sample.label)) / len(sample) > 0.9
