"""%evaluate through a real shell (and the same run on the command line): bad input in one line before
any work, the demo's accuracy across variants."""

import subprocess
import sys

import pytest
from IPython.core.error import UsageError



def test_magic_through_the_shell_and_the_command_line(shell, clf, tmp_path, capsys):
    shell.user_ns.update(clf_variants=clf["variants"], reviews=clf["frame"].rename(columns={"text": "review"}))
    res = shell.run_cell("%evaluate clf_variants --data reviews --variants fp32 --limit 40 --name ev",
                         store_history=False)
    assert res.success
    out = capsys.readouterr().out
    ev = shell.user_ns["ev"]
    assert [r["variant"] for r in ev.rows] == ["torch", "fp32"]  # the reference always runs
    assert "evaluation of clf" in out and "texts from column 'review' (guessed)" in out
    assert ev.fingerprint["rows"] == 40 and "the first 40 of 150 examples (--limit)" in ev.notes
    for flags, bar in (("--no-widget", True), ("--no-widget -q", False)):  # -q: no table, no progress bar
        shell.run_cell(f"%evaluate clf_variants --data reviews --variants fp32 --limit 40 {flags}",
                       store_history=False)
        said = capsys.readouterr()
        assert ("evaluate:" in said.err) is bar and (said.out == "") is not bar

    csv = tmp_path / "data.csv"
    clf["frame"].iloc[:30].to_csv(csv, index=False)
    # a model folder: its variants come from export_onnx (and its cache)
    done = subprocess.run([sys.executable, "-m", "hfmagic", "evaluate", str(clf["base"]), "--data", str(csv),
                           "--metrics", "accuracy,mcc"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    table = done.stdout.split("\n")
    assert table[0].startswith("evaluation of clf on") and "mcc" in table[1]
    assert [line.split()[0] for line in table[3:8]] == ["torch", "fp32", "O2", "int8", "O2-int8"]
    bad = subprocess.run([sys.executable, "-m", "hfmagic", "evaluate", str(clf["base"]), "--data", str(csv),
                          "--limit", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip() == "hfmagic: --limit must be a positive number of examples, got 0"


def _store_runs():
    from hfmagic.store.db import default_store

    return len(default_store().runs(kind="evaluate"))


@pytest.mark.parametrize("data, extra, message", [
    ("empty", "", "is empty (0 rows)"),
    ("frame", "--text-column body", "no column 'body' in <DataFrame 150 rows>; its columns are: text, label"),
    ("numbers", "", "column 'text' of <DataFrame 3 rows> must hold text, but row 1 has int 7"),
    ("unknown_labels", "", "labels the model does not know: 'finance'. The data's labels: finance, sport; "
                           "the model's id2label: 0:business, 1:politics, 2:sport"),
    ("frame", "--limit 0", "--limit must be a positive number of examples, got 0"),
    ("frame", "--metrics cosine", "cosine compares embeddings"),
    ("frame", "--metrics evaluate:accuracy", "evaluate:accuracy needs the Hugging Face hub"),
    ("frame", "--metrics accuracy,bleurt2", "unknown metric 'bleurt2'"),
    ("frame", "--variants O7", "no variant 'O7'; choose from: torch, fp32, int8"),
    ("frame", "--reference O3", "no variant 'O3'"),
])
def test_bad_input_is_one_line_before_any_work(shell, clf, capsys, data, extra, message):
    import pandas as pd

    shell.user_ns.update(clf_variants=clf["variants"], frame=clf["frame"], empty=clf["frame"].iloc[:0],
                         numbers=pd.DataFrame({"text": ["a", 7, "b"], "label": ["sport"] * 3}),
                         unknown_labels=pd.DataFrame({"text": ["a", "b"], "label": ["sport", "finance"]}))
    runs = _store_runs()
    res = shell.run_cell(f"%evaluate clf_variants --data {data} {extra}", store_history=False)
    assert not res.success and isinstance(res.error_in_exec, UsageError)
    assert message in str(res.error_in_exec)
    output = capsys.readouterr()
    assert "Traceback" not in output.out + output.err
    assert _store_runs() == runs  # refused before anything ran or was recorded


@pytest.mark.slow
def test_demo_model_keeps_its_accuracy_across_variants(shell, demo_folder):
    result = shell.run_line_magic("evaluate", "demo --limit 120 --batch-size 16 -o -q")
    rows = {r["variant"]: r for r in result.rows}
    assert rows["torch"]["accuracy"] > 0.9 and rows["torch"]["n"] == 120
    assert "fp32" in rows and rows["fp32"]["agreement"] == 1.0 and rows["fp32"]["gate"] == "pass"
    for row in rows.values():
        assert row["status"] == "ok"
    assert result.fingerprint["rows"] == 120 and result.data_source.startswith("demo")
