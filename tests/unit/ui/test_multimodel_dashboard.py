"""hfmagic.ui's Dashboard with several models: rows of two real models joined by model and variant, never
by variant name alone; CSV and HTML; the browser's rules (js/dashboard.js) against their Python twins."""

import csv
import json
import random
import shutil
import subprocess

import pytest

from hfmagic.ui.rows import pareto_front, row_id, speedup_cells
from hfmagic.ui.widget import Dashboard
from tests.support.paths import REPO

JS = REPO / "js" / "dashboard.js"


def test_one_model_takes_the_old_variant_backend_baseline(two):
    bench, ev = two["small"]
    dash = Dashboard(bench, ev, baseline="fp32/onnxruntime")
    assert dash.baseline == "small/fp32/onnxruntime"
    dash.set_state({"selected": ["small/fp32/onnxruntime/1x8"]})  # as the browser sends it
    assert [r["variant"] for r in dash.selected_rows] == ["fp32"]


def test_csv_and_html_of_two_models(two, tmp_path):
    dash = Dashboard(*two["big"], *two["small"], baseline="big/torch/torch")
    with dash.to_csv(tmp_path / "d.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["variant"]) for r in rows] == [("big", "torch"), ("big", "fp32"), ("small", "torch"),
                                                          ("small", "fp32")]
    assert rows[2]["model_sha"] == two["small"][0].weights_sha256[:12]
    page = dash.to_html(tmp_path / "d.html").read_text()
    state = json.loads(page.split('id="hfmagic-state">')[1].split("</script>")[0])
    assert {r["model"] for r in state["rows"]} == {"big", "small"} and state["baseline"] == "big/torch/torch"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is missing: `make browser` installs it")
def test_the_browser_applies_the_same_rules_across_models(tmp_path):
    """Rows of three models sharing variant names, two measured on two kinds of nodes: the ids are
    distinct, a speed-up is against the baseline measured on the row's own node, and
    js/dashboard.js's paretoFront (the one rule it applies itself) gives what pareto_front gives."""
    rng = random.Random(2)
    rows = []
    # model a was measured on two kinds of a cluster's nodes (--on each): a row's speed-up is against
    # the baseline measured on its own node
    for model, node in (("a", "kind_a"), ("a", "kind_b"), ("b", "local"), (None, None)):
        for variant, backend in (("torch", "torch"), ("fp32", "onnxruntime"), ("int8", "onnxruntime")):
            for batch in (1, 4):
                ok = rng.random() > 0.15
                rows.append({"model": model, "node": node, "variant": variant, "backend": backend, "batch_size": batch,
                             "seq_len": 16, "status": "ok" if ok else "failed: x",
                             "p50_ms": rng.uniform(1, 50) if ok else None,
                             "ttft_p50_ms": rng.uniform(50, 500) if ok else None,
                             "metric": rng.choice([None, round(rng.uniform(0.8, 0.95), 3)])})
        if node != "kind_b":
            rows.append({"model": model, "variant": "O4", "backend": None, "batch_size": None, "seq_len": None,
                         "status": "ok", "p50_ms": None, "metric": 0.9})
    for r in rows:
        r["id"] = row_id(r)
        r["sweep"] = "one"
        r["samples_ms"] = [r["p50_ms"]] * 3 if r["p50_ms"] is not None else None
    module = tmp_path / "dashboard.mjs"
    shutil.copy(JS, module)
    script = (f"import {{ paretoFront }} from {json.dumps(module.as_uri())};\n"
              "import { readFileSync } from 'node:fs';\n"
              "const rows = JSON.parse(readFileSync(0, 'utf8'));\n"
              "const ok = rows.filter((r) => r.status === 'ok' && r.batch_size === 1);\n"
              "console.log(JSON.stringify({p: paretoFront(ok), t: paretoFront(ok, true, 'ttft_p50_ms')}));")
    got = json.loads(subprocess.run(["node", "--input-type=module", "-e", script], input=json.dumps(rows),
                                    capture_output=True, text=True, timeout=60, check=True).stdout)
    assert len({r["id"] for r in rows}) == len(rows)
    # a row's speed-up is against the baseline measured on its own node (Python computes it)
    on_b, _ = speedup_cells([r for r in rows if r["batch_size"] is not None], "a/fp32/onnxruntime")
    for r in rows:
        base = next((x for x in rows if x["model"] == "a" and x["variant"] == "fp32" and x.get("node") == r.get("node")
                     and x["batch_size"] == r["batch_size"] and x["status"] == "ok"), None)
        if r.get("node") == "kind_b" and base and r["status"] == "ok":
            assert on_b[r["id"]]["value"] == pytest.approx(base["p50_ms"] / r["p50_ms"])
    front = pareto_front([r for r in rows if r["status"] == "ok" and r["batch_size"] == 1])
    assert got["p"] == front and {r["model"] for r in rows if r["id"] in front} - {None}
    # a generation's chart on TTFT with a lower-is-better metric (perplexity): the same rule both sides
    by_ttft = pareto_front([r for r in rows if r["status"] == "ok" and r["batch_size"] == 1], True, "ttft_p50_ms")
    assert got["t"] == by_ttft and by_ttft != front
