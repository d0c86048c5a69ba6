"""How a magic's line is read: a trailing comment ends it, quotes group a path (with spaces, quote
characters, non-ASCII letters), `{p!r}` and `"$p"` put a path in from a variable, and a path that an
unquoted `$p` split at its spaces is told how to quote."""

import csv
import random
import shutil

import pytest
from IPython.core.completer import protect_filename
from IPython.core.error import UsageError

from hfmagic.store.db import RunStore
from tests.support.tiny import LABELS, sentences


def cell(shell, code):
    """Run a cell as a notebook does; the error it showed, if any, is raised here."""
    res = shell.run_cell(code, store_history=False)
    if not res.success:
        raise res.error_in_exec or res.error_before_exec
    return res


def labelled_csv(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows((text, rng.choice(LABELS)) for text in sentences(24, seed=3))
    return path


@pytest.fixture
def hfm(shell):
    return shell.magics_manager.registry["HFMagics"]


def test_a_trailing_comment_ends_every_magic_line(shell, tiny_bert, tmp_path):
    data = labelled_csv(tmp_path / "texts.csv")
    cell(shell, f"%load_model {tiny_bert} --name lines_m   # binds lines_m")
    cell(shell, "%export_onnx lines_m --levels fp32 --quantize none --name lines_onnx -q  # fp32 only")
    cell(shell, "%benchmark lines_onnx --variants fp32 --batch-sizes 1 --seq-lens 8 --warmup 1 --min-runs 3 "
                "--min-time 0.05 --inline --name lines_bench -q   # one model, one row")
    bench = shell.user_ns["lines_bench"]
    assert [(r["model"], r["variant"]) for r in bench.rows] == [("lines_m", "fp32")]
    cell(shell, f"%evaluate lines_onnx --data {data} --variants torch,fp32 --name lines_ev -q  # the csv's 24 texts")
    assert [r["variant"] for r in shell.user_ns["lines_ev"].rows] == ["torch", "fp32"]
    # %hfmagic's subcommands get the same words: the tag is its two words, not the comment's too
    cell(shell, f"%hfmagic tag {bench.run_id} smoke test   # shown in the runs list")
    assert RunStore().get(bench.run_id)["tag"] == "smoke test"
    assert cell(shell, "%hfmagic runs --limit 1  # the newest").result is not None
    # the command's own check speaks, not "unrecognized arguments: # a bad shape"
    with pytest.raises(UsageError, match=r"^--shape takes BATCHxSIZE .* got '0x8'$"):
        cell(shell, "%optimize lines_m --shape 0x8   # a bad shape")


def test_a_hash_inside_a_word_or_in_quotes_is_kept(hfm):
    args = hfm.parse("evaluate", """m --data data#2.csv --label-map '{"#": "business"}' # the rest goes""")
    assert args.target == ["m"] and args.data == "data#2.csv" and args.label_map == '{"#": "business"}'
    sub = hfm.parse("hfmagic", "tag 3f9a1c '#1 of 2'   # a tag that starts with #")
    assert sub.rest == ["3f9a1c", "#1 of 2"]


def test_quoted_paths_reach_every_magic_that_takes_one(shell, tiny_bert, tmp_path):
    """A model folder, data files and output paths with a space, a quote and non-ASCII letters, put in
    by `{p!r}`, `"$p"`, typed quotes and IPython's completer's escapes."""
    odd = tmp_path / "my models" / "modèle d'été"  # a space, a quote character, non-ASCII
    shutil.copytree(tiny_bert, odd)
    plain = tmp_path / "with space" / "été"  # no quote character: typed in single quotes below
    shutil.copytree(tiny_bert, plain)
    worst = tmp_path / """it's "both" \\ quotes"""  # both quote characters and a backslash
    shutil.copytree(tiny_bert, worst)
    data = labelled_csv(tmp_path / "données d'essai" / "texts 1.csv")
    shell.user_ns.update(p=str(odd), worst=str(worst), data=str(data), out=str(tmp_path / "sortie d'ONNX"),
                         html=str(tmp_path / "rapport d'été.html"))

    cell(shell, "%load_model {p!r} --name q_repr")
    cell(shell, '%load_model "$p" --name q_dollar')
    cell(shell, f"%load_model '{plain}' --name q_typed")
    cell(shell, f"%load_model {protect_filename(str(odd))} --name q_completed")  # as Tab completes it
    cell(shell, "%load_model {worst!r} --name q_worst")
    for name, folder in [("q_repr", odd), ("q_dollar", odd), ("q_typed", plain), ("q_completed", odd),
                         ("q_worst", worst)]:
        assert shell.user_ns[name].path == folder, name

    cell(shell, "%export_onnx q_repr --levels fp32 --quantize none --output {out!r} --name q_onnx -q")
    assert (tmp_path / "sortie d'ONNX").is_dir() and shell.user_ns["q_onnx"]["fp32"].path.is_relative_to(
        tmp_path / "sortie d'ONNX")
    cell(shell, "%benchmark q_onnx --variants fp32 --batch-sizes 1 --seq-lens 8 --warmup 1 --min-runs 3 "
                "--min-time 0.05 --inputs {data!r} --name q_bench -q")  # in a worker: the path travels
    assert [r["status"] for r in shell.user_ns["q_bench"].rows] == ["ok"]
    assert shell.user_ns["q_bench"].rows[0]["e2e_p50_ms"]
    cell(shell, '%evaluate q_onnx --data "$data" --variants torch,fp32 --name q_ev -q')
    ev = shell.user_ns["q_ev"]
    assert [r["variant"] for r in ev.rows] == ["torch", "fp32"]
    cell(shell, f"%hfmagic report {ev.run_id} --html {{html!r}}")
    assert (tmp_path / "rapport d'été.html").exists()


def test_an_unquoted_dollar_path_split_at_its_spaces_says_how_to_quote_it(shell, tiny_bert, tmp_path):
    folder = tmp_path / "my model"
    shutil.copytree(tiny_bert, folder)
    shell.user_ns["p"] = str(folder)
    words = f"'{tmp_path}/my', 'model'"
    # %load_model takes one source: argparse's "unrecognized arguments: model" becomes the reason
    with pytest.raises(UsageError, match=rf"^the path '{folder}' was split at its spaces into 2 words \({words}\); "
                                         r"quote it, and from a variable p write \"\$p\" or \{p!r\}"):
        cell(shell, "%load_model $p")
    # %benchmark takes several: the first would be "no model at .../my"
    with pytest.raises(UsageError, match=r"^the path .* was split at its spaces"):
        cell(shell, "%benchmark $p --inline -q")


def test_a_quote_left_open_is_one_line(shell):
    with pytest.raises(UsageError, match=r"^could not split .* \(no closing quotation\): close the quote"):
        cell(shell, "%load_model '/data/with space --name x")
