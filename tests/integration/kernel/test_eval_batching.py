"""%evaluate scores a variant as it runs when served: every row says its batch size and padding, and a
variant whose predictions depend on the batch (dynamic int8) is marked so and scored at batch 1, what
one request runs at, unless --batch-sizes asks for more; the dashboard and %optimize say the same."""


import numpy as np
import pytest
from IPython.core.error import UsageError


def cell(shell, code: str, name: str):
    """Run ``code`` in the shell, which must succeed, and return what it bound to ``name``."""
    res = shell.run_cell(code, store_history=False)
    assert res.success, res.error_in_exec
    return shell.user_ns[name]


def one_at_a_time(dyn) -> dict[str, np.ndarray]:
    """Each text's logits run alone (batch 1, no padding), from transformers and from onnxruntime
    on the int8 file: what a single request gets, computed without hfmagic."""
    import onnxruntime as ort
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(dyn["folder"])
    model = AutoModelForSequenceClassification.from_pretrained(dyn["folder"]).eval()
    session = ort.InferenceSession(str(dyn["variants"]["int8"].path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    out = {"torch": [], "int8": []}
    for text in dyn["texts"]:
        enc = tok(text, truncation=True, return_tensors="np")
        out["int8"].append(session.run(["logits"], {k: enc[k].astype(np.int64) for k in names})[0][0])
        with torch.inference_mode():
            out["torch"].append(model(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits[0].numpy())
    return {k: np.stack(v) for k, v in out.items()}


def test_dynamic_int8_is_marked_and_scored_at_batch_one_by_default(shell, dyn, capsys):
    from hfmagic import Dashboard

    ev = cell(shell, "%evaluate batch_onnx --data batch_texts --name batch_ev", "batch_ev")
    rows = {r["variant"]: r for r in ev.rows}
    assert all(r["status"] == "ok" for r in rows.values())
    assert [(v, rows[v]["batch_size"], rows[v]["batch_dependent"]) for v in rows] == [
        ("torch", 32, False), ("fp32", 32, False), ("int8", 1, True)]
    assert {r["padding"] for r in rows.values()} == {"texts sorted by length, each batch padded to its own longest"}
    # int8's figures are a single request's: its logits against torch's, each text run alone without hfmagic
    alone = one_at_a_time(dyn)
    assert rows["int8"]["max_logit_diff"] == pytest.approx(float(np.abs(alone["int8"] - alone["torch"]).max()),
                                                            abs=1e-4)
    assert list(ev.predictions["int8"]) == list(alone["int8"].argmax(1))
    # the table marks it, and its notes say why and at which batch each variant was scored
    text = str(ev)
    int8_line = next(line for line in text.splitlines() if line.startswith("int8 "))
    assert " 1* " in int8_line
    assert ("note: int8 (batch marked *): dynamic int8 takes each activation's quantization range over the whole "
            "padded batch, so the predictions depend on the batch they run in: scored at batch 1, the batch of a "
            "single request") in text
    assert "note: torch, fp32: scored at batch 32, larger than one request for speed" in text
    assert "note: batches: texts sorted by length, each batch padded to its own longest" in text
    # the dashboard takes the rows as an evaluation's (they say their batch size, as benchmark rows do)
    dash = Dashboard(ev)
    assert {r["variant"]: r["metric"] for r in dash.rows}["int8"] == pytest.approx(rows["int8"]["accuracy"])


def test_a_list_of_batch_sizes_scores_int8_at_each_and_its_row_shows_the_worst(shell, dyn):
    ev = cell(shell, "%evaluate batch_onnx --data batch_texts --batch-size 4,1 --no-widget -q --name batch_ev2",
              "batch_ev2")
    rows = {r["variant"]: r for r in ev.rows}
    assert rows["torch"]["batch_size"] == rows["fp32"]["batch_size"] == 4  # the others once, at the largest
    int8 = rows["int8"]
    scores = {s["batch_size"]: s for s in int8["batch_scores"]}
    assert int8["batch_sizes"] == [1, 4] and set(scores) == {1, 4}
    worst = min(scores.values(), key=lambda s: s["accuracy"])
    assert (int8["batch_size"], int8["accuracy"], int8["gate"]) == (worst["batch_size"], worst["accuracy"],
                                                                    worst["gate"])
    assert int8["gate"] == ("fail" if any(s["gate"] == "fail" for s in scores.values()) else "pass")
    # its batch-1 figures are the default run's: one truth whichever way it was asked for
    default = cell(shell, "%evaluate batch_onnx --data batch_texts --variants int8 --no-widget -q --name batch_ev3",
                   "batch_ev3")
    assert scores[1]["accuracy"] == default.rows[1]["accuracy"] and scores[1]["flips"] == default.rows[1]["flips"]
    # the sizes really differ for dynamic int8 (another batch, other activation ranges) and not for fp32
    assert scores[1]["agreement"] != scores[4]["agreement"] or int8["max_logit_diff"] != default.rows[1]["max_logit_diff"]
    text = str(ev)
    assert f" {int8['batch_size']}* of 1,4 " in next(line for line in text.splitlines() if line.startswith("int8 "))
    assert "scored at batch 1, 4 (--batch-size); each row shows its worst size" in text
    assert "torch, fp32: scored at batch 4 (the largest --batch-size)" in text


def test_the_dashboard_says_whose_accuracy_was_scored_at_another_batch(shell, dyn):
    from hfmagic import Dashboard
    from hfmagic.benchmarking.api import benchmark

    ev = cell(shell, "%evaluate batch_onnx --data batch_texts --no-widget -q --name batch_ev4", "batch_ev4")
    bench = benchmark(dyn["variants"], variants=["fp32", "int8"], batch_sizes=[1, 2], seq_lens=[8], threads=1,
                      warmup=0, min_runs=3, min_time=0.05, inline=True, progress=False)
    dash = Dashboard(bench, ev)
    rows = {(r["variant"], r["batch_size"]): r for r in dash.rows}
    assert rows[("int8", 2)]["metric"] == rows[("int8", 1)]["metric"] == ev.rows[2]["accuracy"]
    assert [n for n in dash.notes if "batch it runs in" in n] == [
        "the accuracy of batch_clf/int8 (scored at batch 1) depends on the batch it runs in (dynamic int8 takes "
        "each activation's quantization range over the whole padded batch): its rows at other batch sizes show "
        "that accuracy, not one measured at theirs"]


@pytest.mark.parametrize("value, message", [
    ("0", "batch sizes must be positive whole numbers, got '0'"),
    ("1,,8", "could not read batch sizes from '1,,8': item 2 of 3 is empty"),
    ("eight", "could not read batch sizes from 'eight'"),
])
def test_a_bad_batch_size_is_one_line_before_any_work(shell, dyn, capsys, value, message):
    from hfmagic.store.db import default_store

    runs = len(default_store().runs(kind="evaluate"))
    res = shell.run_cell(f"%evaluate batch_onnx --data batch_texts --batch-size {value}", store_history=False)
    assert not res.success and isinstance(res.error_in_exec, UsageError)
    assert message in str(res.error_in_exec)
    said = capsys.readouterr()
    assert "Traceback" not in said.out + said.err
    assert len(default_store().runs(kind="evaluate")) == runs


@pytest.mark.slow  # every recipe built, screened and confirmed: about a minute on 2 cores
def test_optimize_gates_each_candidate_at_the_batch_size_it_timed(shell, dyn):
    opt = cell(shell, "%optimize batch_clf --data batch_texts --shape 2x16 --backends onnxruntime --threads 1 "
                      "--min-time 0.05 -q --name batch_opt", "batch_opt")
    rows = opt.evaluation
    assert rows and {r["batch_size"] for r in rows} == {2}
    assert any(r["batch_dependent"] for r in rows)  # its dynamic int8 candidates, gated at the timed batch
    assert "the gate scored every candidate at batch 2, the batch size timed" in " ".join(opt.notes)


@pytest.mark.slow
def test_the_demos_int8_is_scored_at_batch_one_and_at_each_size_asked(shell, demo_folder):
    default = shell.run_line_magic("evaluate", "demo --variants int8 --limit 120 --no-widget -o -q")
    listed = shell.run_line_magic("evaluate", "demo --variants int8 --limit 120 --batch-size 1,8 --no-widget -o -q")
    (torch, int8), (torch8, int8_listed) = default.rows, listed.rows
    assert (torch["batch_size"], int8["batch_size"], int8["batch_dependent"]) == (32, 1, True)
    assert torch8["batch_size"] == 8 and int8_listed["batch_sizes"] == [1, 8]
    at_one = next(s for s in int8_listed["batch_scores"] if s["batch_size"] == 1)
    assert (at_one["accuracy"], at_one["gate"]) == (int8["accuracy"], int8["gate"])
    assert int8_listed["accuracy"] == min(s["accuracy"] for s in int8_listed["batch_scores"])


def test_compare_says_when_a_batch_dependent_variant_was_scored_at_other_batch_sizes(shell, store_in_shell, dyn):
    at_one = cell(shell, "%evaluate batch_onnx --data batch_texts --no-widget -q --name cmp_one", "cmp_one")
    listed = cell(shell, "%evaluate batch_onnx --data batch_texts --batch-size 4,1 --no-widget -q --name cmp_list",
                  "cmp_list")
    cmp = shell.run_line_magic("hfmagic", f"compare {at_one.run_id} {listed.run_id}")
    notes = {(line["config"], line["figure"]): line["note"] for line in cmp.figures.rows}
    assert notes[("int8", "accuracy")] == ("scored at batch 1 in A, 1/4 in B: its predictions depend on the batch, "
                                           "so part of the change is the batch size's")
    assert "batch" not in notes[("fp32", "accuracy")]  # fp32 at 32 and at 4: the same predictions
