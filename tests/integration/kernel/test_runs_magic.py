"""runs, compare, rerun and report through the shell's %hfmagic."""

import json

import pytest
from IPython.core.error import UsageError

from tests.support.store import record


def bench_row(variant, backend, p50, speedup, batch=1):
    return {"variant": variant, "backend": backend, "batch_size": batch, "seq_len": 128, "status": "ok",
            "p50_ms": p50, "samples_per_s": 1000 / p50, "speedup": speedup}


def test_runs_and_compare_in_the_shell(shell, store_in_shell):
    store = store_in_shell
    a = record(store, "benchmark", {"batch_sizes": [1], "threads": 2},
               [bench_row("torch", "torch", 10.0, 1.0), bench_row("int8", "onnxruntime", 5.0, 2.0)])
    b = record(store, "benchmark", {"batch_sizes": [1, 8], "threads": 1},
               [bench_row("torch", "torch", 12.5, 1.0), bench_row("int8", "onnxruntime", 4.0, 3.125),
                bench_row("int8", "onnxruntime", 20.0, 3.0, batch=8)],
               env_change={"cpu": "Another CPU", "packages": {"onnxruntime": "9.9.9"}})
    e = record(store, "evaluate", {"metrics": ["accuracy"], "reference": "torch"},
               [{"variant": "torch", "status": "ok", "accuracy": 0.95},
                {"variant": "int8", "status": "ok", "accuracy": 0.94, "pct_of_reference": 98.9, "gate": "fail"},
                {"variant": "O2", "status": "BuildError: no"}])

    table = shell.run_line_magic("hfmagic", "runs")
    assert [r["id"] for r in table.rows] == [e, b, a]
    text = str(table)
    assert "best int8/onnxruntime b1 s128: 3.12x vs torch/torch, p50 4.00 ms" in text
    assert "best int8/onnxruntime b1 s128: 2.00x vs torch/torch, p50 5.00 ms" in text
    assert "accuracy 0.9500 (torch); lowest int8 98.90%; gate 0/1 pass; 1 failed" in text  # as the table writes it
    assert [r["rows"] for r in table.rows] == [3, 3, 2] and {r["model"] for r in table.rows} == {"tiny"}
    assert len(shell.run_line_magic("hfmagic", "runs --kind evaluate").rows) == 1

    cmp = shell.run_line_magic("hfmagic", f"compare {a[-6:]} {b[-6:]}")
    diffs = {(d["what"], d["key"]): (d["a"], d["b"]) for d in cmp.differences.rows}
    assert diffs[("params", "threads")] == ("2", "1") and diffs[("params", "batch_sizes")] == ("[1]", "[1, 8]")
    assert diffs[("environment", "cpu")][1] == "Another CPU"
    assert diffs[("environment", "packages.onnxruntime")][1] == "9.9.9"
    assert ("environment", "python") not in diffs  # what is the same is not listed
    figs = {(f["config"], f["figure"]): f for f in cmp.figures.rows}
    assert figs[("torch/torch b1 s128", "p50_ms")]["change"] == pytest.approx(25.0)
    assert figs[("int8/onnxruntime b1 s128", "p50_ms")]["change"] == pytest.approx(-20.0)
    assert figs[("int8/onnxruntime b1 s128", "speedup")]["a"] == "2.00x"
    assert figs[("int8/onnxruntime b8 s128", "-")]["note"] == "only in B"
    html = cmp._repr_html_()
    assert "Another CPU" in html and "+25.0" in html and "-20.0" in str(cmp)

    with pytest.raises(UsageError, match="a benchmark run and .* a evaluate run"):
        shell.run_line_magic("hfmagic", f"compare {a} {e}")
    with pytest.raises(UsageError, match="no run 'zzz'"):
        shell.run_line_magic("hfmagic", "compare zzz " + a)


# -- rerun, for real ---------------------------------------------------------------------------------
def test_rerun_repeats_an_evaluation_and_refuses_an_in_memory_dataframe(shell, store_in_shell, tiny_bert,
                                                                       tmp_path):
    import pandas as pd

    from tests.support.tiny import LABELS, sentences

    frame = pd.DataFrame({"text": sentences(24, seed=3), "label": [LABELS[i % 3] for i in range(24)]})
    csv = tmp_path / "data.csv"
    frame.to_csv(csv, index=False)
    shell.user_ns["frame"] = frame
    shell.run_line_magic("load_model", f"{tiny_bert} --name rr -q")
    first = shell.run_line_magic("evaluate", f"rr --data {csv} --variants torch --no-widget -o -q")
    again = shell.run_line_magic("hfmagic", f"rerun {first.run_id[-6:]} -q")
    assert again.run_id and again.run_id != first.run_id
    a, b = store_in_shell.get(first.run_id), store_in_shell.get(again.run_id)
    assert b["params"] == a["params"] and b["provenance"]["rerun_of"] == a["id"]
    assert b["provenance"]["dataset"]["sha256"] == a["provenance"]["dataset"]["sha256"]
    assert b["provenance"]["model"]["weights_sha256"] == a["provenance"]["model"]["weights_sha256"]
    assert [r["accuracy"] for r in b["rows"]] == [r["accuracy"] for r in a["rows"]]
    assert any(f"rerun of {a['id']}" in n for n in again.notes)

    import datasets

    datasets.DatasetDict(train=datasets.Dataset.from_pandas(frame[:12]),
                         test=datasets.Dataset.from_pandas(frame[12:])).save_to_disk(tmp_path / "saved")
    split = shell.run_line_magic("evaluate", f"rr --data {tmp_path / 'saved'} --split train --metrics f1 "
                                             "--variants torch --no-widget -o -q")
    assert split.data_source == f"{tmp_path / 'saved'} [train]"
    again = shell.run_line_magic("hfmagic", f"rerun {split.run_id} -q")  # the folder, not "saved [train]"
    assert again.rows[0]["f1_macro"] == split.rows[0]["f1_macro"] and again.rows[0]["n"] == 12
    listing = str(shell.run_line_magic("hfmagic", "runs --limit 1"))
    assert f"f1_macro {split.rows[0]['f1_macro']:.4f}" in listing  # the metric asked for as f1
    assert "f1_macro" in str(shell.run_line_magic("hfmagic", f"compare {split.run_id} {again.run_id}"))

    mem = shell.run_line_magic("evaluate", "rr --data frame --variants torch --no-widget -o -q")
    with pytest.raises(UsageError, match="object in memory .*cannot be rerun; save it to a file"):
        shell.run_line_magic("hfmagic", f"rerun {mem.run_id}")


def test_rerun_says_when_its_files_are_not_the_recorded_ones(shell, store_in_shell, tiny_bert):
    shell.run_line_magic("load_model", f"{tiny_bert} --name rf -q")
    first = shell.run_line_magic("export_onnx", "rf --levels fp32 --quantize none -o -q")
    same = shell.run_line_magic("hfmagic", f"rerun {first.run_id} -q")
    assert not any("differ from run" in n for n in same.notes)  # the cache gave the very same file
    store_in_shell.annotate(first.run_id, files={"fp32": "0" * 64})  # as if fp32 had been another graph
    again = shell.run_line_magic("hfmagic", f"rerun {first.run_id} -q")
    assert f"the files of fp32 differ from run {first.run_id}'s (sha256): the figures are of different " \
           "graphs" in again.notes


def test_report_is_one_offline_page_with_dashboard_environment_and_rebuild_commands(shell, store_in_shell, tmp_path):
    import re

    store = store_in_shell
    sha = {"fp32": "1" * 64, "int8": "2" * 64}
    cli = {"fp32": "optimum-cli export onnx --model /m --task text-classification onnx/fp32",
           "int8": "optimum-cli onnxruntime quantize --onnx_model onnx/fp32 --avx2 --per_channel -o onnx/int8"}
    record(store, "export", {"levels": ["fp32"]},
           [{"variant": v, "status": "ok", "size_mb": s, "sha256": sha[v], "cli": cli[v]}
            for v, s in (("fp32", 0.8), ("int8", 0.3))])
    prov = {"model": {"name": "tiny", "source": "/m"}, "files": {"fp32": sha["fp32"], "int8": sha["int8"], "O3": "9" * 64}}
    bench = record(store, "benchmark", {}, [bench_row("torch", "torch", 10.0, 1.0), bench_row("int8", "onnxruntime", 4.0, 2.5),
                                            bench_row("O3", "onnxruntime", 9.0, 1.1), bench_row("int8", "onnxruntime", 30.0, 2.0, batch=8)],
                   provenance=prov)
    ev = record(store, "evaluate", {"reference": "torch"},
                [{"variant": "torch", "status": "ok", "accuracy": 0.9, "accuracy_low": 0.8, "accuracy_high": 0.95,
                  "f1_macro": 0.5, "f1_macro_low": 0.4, "f1_macro_high": 0.6},
                 {"variant": "int8", "status": "ok", "accuracy": 0.891, "accuracy_low": 0.8, "accuracy_high": 0.95,
                  "f1_macro": 0.45, "f1_macro_low": 0.4, "f1_macro_high": 0.6, "pct_of_reference": 99.0, "gate": "pass"}],
                env_change={"cpu": "Report CPU 9000"}, provenance=prov)
    out = tmp_path / "sub" / "report.html"
    report = shell.run_line_magic("hfmagic", f"report {bench[-6:]} {ev[-6:]} --html {out}")
    assert report.path == out and out.exists()
    page = out.read_text()
    rebuild = page.split("rebuild each variant with optimum-cli")[1].split("</table>")[0]
    assert cli["int8"] in rebuild and "PyTorch eager" in rebuild
    assert f"no recorded export built this file (sha256 {'9' * 12}" in rebuild
    assert "Report CPU 9000" in page and f"environment of {bench}" in page and f"environment of {ev}" in page
    state = json.loads(re.search(r'id="hfmagic-state">(.*?)</script>', page, re.S).group(1))
    by_id = {r["id"]: r for r in state["rows"]}
    assert by_id["tiny/int8/onnxruntime/1x128"]["p50_ms"] == 4.0 and by_id["tiny/int8/onnxruntime/8x128"]["p50_ms"] == 30.0
    assert by_id["tiny/int8/onnxruntime/1x128"]["metric"] == 0.891  # accuracy: the metric pct_of_reference is of
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//|@import|<link', page)  # nothing fetched
    summary = {r["variant"]: r for r in report.summary.rows}
    assert summary["int8"]["p50_ms"] == 4.0 and summary["int8"]["gate"] == "pass" and summary["int8"]["metric"] == 0.891
    assert f"report of 2 runs written to {out}" in str(report)
    with pytest.raises(UsageError, match="no run 'missing'"):
        shell.run_line_magic("hfmagic", f"report {bench} missing --html {tmp_path / 'no.html'}")
    assert not (tmp_path / "no.html").exists()
