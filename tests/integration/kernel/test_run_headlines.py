"""One truth per figure in the run store's views: the run list's headline reads the figures its
result showed (its reference, its gate verdicts); `compare` sets two speed-ups against each other
only on the same baseline; e2e p50 beside p50."""

import contextlib
import json
import re
import sqlite3
import time

import pytest

from tests.support.fast import HEADLINE_SWEEP as SWEEP
from tests.support.tiny import labelled


@pytest.fixture(scope="module")
def models(shell, tiny_bert):
    """A TF-IDF baseline (tf_df) and a tiny transformer (sent) on the same labelled texts (df)."""
    shell.user_ns["df"] = labelled()
    shell.run_line_magic("load_model", "tfidf --data df --name tf_df -o -q")
    shell.run_line_magic("load_model", f"{tiny_bert} --name sent -q")
    yield
    for name in ("df", "tf_df", "sent"):
        shell.user_ns.pop(name, None)


def headline(shell, run_id: str) -> str:
    listed = shell.run_line_magic("hfmagic", "runs --limit 0")
    return next(r["headline"] for r in listed.rows if r["id"] == run_id)


def test_a_multi_model_evaluation_is_headlined_against_the_reference_it_used(shell, store_in_shell, models, tmp_path):
    ev = shell.run_line_magic("evaluate", "tf_df sent --data df --variants torch,fp32 --limit 40 --no-widget -o -q")
    assert ev.reference == "tf_df/sklearn"  # a classical baseline first: its sklearn is the reference
    ref = next(r for r in ev.rows if (r["model"], r["variant"]) == ("tf_df", "sklearn"))
    judged = [r for r in ev.rows if r.get("gate") in ("pass", "fail")]  # the result's own verdicts
    assert len(judged) == 2
    low = min(judged, key=lambda r: r["pct_of_reference"])
    passed = sum(r["gate"] == "pass" for r in judged)
    assert headline(shell, ev.run_id) == (f"accuracy {ref['accuracy']:.4f} (tf_df/sklearn); "
                                          f"lowest sent/{low['variant']} {low['pct_of_reference']:.2f}%; "
                                          f"gate {passed}/2 pass")
    # the report's summary and dashboard mark the same reference and show the same verdicts
    gates = {(r["model"], r["variant"]): r.get("gate") or "reference" for r in ev.rows}
    report = shell.run_line_magic("hfmagic", f"report {ev.run_id} --html {tmp_path / 'report.html'}")
    assert {(r["model"], r["variant"]): r["gate"] for r in report.summary.rows} == gates
    page = (tmp_path / "report.html").read_text()
    state = json.loads(re.search(r'id="hfmagic-state">(.*?)</script>', page, re.S).group(1))
    assert {(r["model"], r["variant"]): r["gate"] for r in state["rows"]} == gates


@pytest.mark.slow
def test_the_trace_keeps_every_screened_candidate_when_the_budget_runs_out_at_the_gate(shell, store_in_shell, models,
                                                                                      monkeypatch):
    from hfmagic.optimizing.search import Search

    screen = Search.screen

    def screen_then_run_out(self):  # the budget runs out the moment the screening sweep is done
        screen(self)
        self.deadline = time.time()

    monkeypatch.setattr(Search, "screen", screen_then_run_out)
    opt = shell.run_line_magic("optimize", "sent --data df --limit 40 --samples 16 --threads 1 "
                                           "--backends onnxruntime,torch --budget 3600 -o -q")
    assert opt.winner is None and not opt.points  # nothing was confirmed
    # the screening sweep, recorded as its own run: the newest (the build stage's sweep of each level's
    # preset int8, which picks the levels the named settings are built on, comes before it)
    sweep, *earlier = store_in_shell.runs(kind="benchmark")
    assert len(earlier) == 1
    ok = {f"{r['variant']}/{r['backend']}" for r in store_in_shell.rows(sweep["id"]) if r["status"] == "ok"}
    ok.discard("torch/torch")  # the reference, timed in every sweep
    assert ok
    stopped = {t["candidate"]: t for t in opt.trace if t["outcome"] == "not reached"}
    assert set(stopped) == ok  # every screened candidate, none lost
    assert all(t["stage"] == "gate" and t["objective"] is not None and "budget ran out" in t["reason"]
               for t in stopped.values())
    fastest = min(stopped.values(), key=lambda t: t["objective"])["candidate"].split("/")[0]  # the gate's first
    expected = (f"stopped by the budget before evaluating {fastest} after {len(ok)} screened; "
                "no candidate reached the gate")
    assert opt.outcome == expected
    assert headline(shell, opt.run_id) == expected
    assert len(store_in_shell.get(opt.run_id)["rows"]) == len(opt.trace)


@pytest.mark.slow
def test_the_confirming_sweep_has_pytorch_eager_and_the_headline_is_the_winners(shell, store_in_shell, models):
    opt = shell.run_line_magic("optimize", "sent --data df --limit 40 --samples 16 --threads 1 "
                                           "--backends onnxruntime,torch --min-time 0.1 -o -q")
    eager = [t for t in opt.trace if t["candidate"] == "torch/torch" and t["stage"] == "confirm"]
    assert len(eager) == 1 and eager[0]["outcome"] == "reference" and eager[0]["objective"] > 0
    assert opt.winner is not None
    sweep = {(r["variant"], r["backend"]): r for r in opt.benchmark.rows}
    won = sweep[(opt.winner["variant"], opt.winner["backend"])]
    from hfmagic.core.stats import speedup_text

    assert opt.against_reference["text"] == speedup_text(won)  # the sweep's own figure, with its interval
    assert any(f"the winner is {speedup_text(won)} as fast" in n for n in opt.notes)
    assert headline(shell, opt.run_id) == opt.outcome
    assert opt.outcome.startswith(f"winner {opt.winner['candidate']}: p50_ms ") and \
        opt.outcome.endswith(f"; {speedup_text(won)} vs torch/torch")


def test_compare_sets_speed_ups_against_each_other_only_on_the_same_baseline(shell, store_in_shell, models):
    a = shell.run_line_magic("benchmark", f"sent --variants torch,fp32 {SWEEP}")
    b = shell.run_line_magic("benchmark", f"sent --variants torch,fp32 --baseline fp32/onnxruntime {SWEEP}")
    c = shell.run_line_magic("benchmark", f"tf_df sent --variants torch,fp32 {SWEEP}")
    assert b.baseline == "fp32/onnxruntime" and c.baseline == "tf_df/sklearn/sklearn"
    for other, said in ((b, "different baselines: torch/torch vs fp32/onnxruntime"),
                        (c, "different baselines: torch/torch vs tf_df/sklearn/sklearn")):
        cmp = shell.run_line_magic("hfmagic", f"compare {a.run_id} {other.run_id}")
        speedups = [f for f in cmp.figures.rows if f["figure"] == "speedup"]
        assert speedups and all(f["change"] is None and f["note"] == said for f in speedups), speedups
        p50 = [f for f in cmp.figures.rows if f["figure"] == "p50_ms"]
        assert p50 and all(f["change"] is not None for f in p50)  # the times themselves are comparable
    # the same baseline: the change is shown, each speed-up with its interval, and said to be unpaired
    again = shell.run_line_magic("benchmark", f"sent --variants torch,fp32 {SWEEP}")
    cmp = shell.run_line_magic("hfmagic", f"compare {a.run_id} {again.run_id}")
    fp32 = next(f for f in cmp.figures.rows if f["figure"] == "speedup" and f["config"].startswith("fp32/"))
    from hfmagic.core.stats import speedup_text

    rows = [next(r for r in run.rows if r["variant"] == "fp32") for run in (a, again)]
    assert fp32["change"] == pytest.approx((rows[1]["speedup"] - rows[0]["speedup"]) / rows[0]["speedup"] * 100)
    assert (fp32["a"], fp32["b"]) == tuple(speedup_text(r) for r in rows)
    assert any("measured apart" in n and "each with its own 95% interval" in n for n in cmp.notes)
    assert not any("different machines" in n for n in cmp.notes)
    # a run recorded on another machine (a store brought from elsewhere): its timings are said to be the machine's too
    with contextlib.closing(sqlite3.connect(store_in_shell.path)) as con, con:
        env = json.loads(con.execute("SELECT environment FROM runs WHERE id = ?", (again.run_id,)).fetchone()[0])
        con.execute("UPDATE runs SET environment = ?, host = ? WHERE id = ?",
                    (json.dumps({**env, "cpu": "Another CPU"}), "elsewhere", again.run_id))
    cmp = shell.run_line_magic("hfmagic", f"compare {a.run_id} {again.run_id}")
    machines = next(n for n in cmp.notes if "different machines" in n)
    assert "cpu: " in machines and "Another CPU" in machines and "host: " in machines and "elsewhere" in machines


def test_e2e_p50_sits_beside_p50_and_says_it_includes_the_tokenizer(shell, store_in_shell, models):
    bench = shell.run_line_magic("benchmark", f"sent --variants torch --inputs df {SWEEP}")
    table = bench.table()
    titles = [c.heading() for c in table.columns]
    assert titles[titles.index("p50 ms") + 1] == "e2e p50 ms (+tokenizer)" and "e2e p50 ms (+tokenizer)" in str(bench)
    said = table.notes
    assert any(n.startswith("e2e p50 ms: the tokenizer and the model, per run") and "p50 ms is the model alone" in n
               for n in said), said
    again = shell.run_line_magic("benchmark", f"sent --variants torch --inputs df {SWEEP}")
    cmp = shell.run_line_magic("hfmagic", f"compare {bench.run_id} {again.run_id}")
    figures = [f["figure"] for f in cmp.figures.rows]
    assert figures[figures.index("p50_ms") + 1] == "e2e_p50_ms"  # read right after the model's own p50
    e2e = next(f for f in cmp.figures.rows if f["figure"] == "e2e_p50_ms")
    assert e2e["note"] == "tokenizer + model per run (p50_ms: the model alone)"
    assert any("p50 ms is the model alone" in n for n in cmp.notes)
