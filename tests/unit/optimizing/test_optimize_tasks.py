"""%optimize through every task plugin (token classification, question answering, text generation
with its perplexity gate, images, speech), each on a tiny model and real data, to its end: the
trace of every stage, each drop with its reason, the gate's metric the task's own, the run recorded."""

import pytest

from tests.support.fast import OPTIMIZE_SEARCH as FAST
from tests.support.tiny import make_tiny_image, make_tiny_speech


@pytest.fixture(scope="module")
def task_models(tmp_path_factory, tiny_factory, ner_folder, qa_folder):
    """(model folder, the data the gate scores, the task's first metric, options) per task."""
    from hfmagic.tasks.speech.audio import LIBRIVOX

    tmp = tmp_path_factory.mktemp("optimize-tasks")
    out = {"token-classification": (ner_folder, "wnut16", "f1", {"limit": 24}),
           "question-answering": (qa_folder, "squad-bbc", "f1", {"limit": 12}),
           "text-generation": (tiny_factory("llama", "text-generation"), None, "perplexity",
                               {"max_tokens": 128, "objective": "tpot"}),
           "image-classification": (make_tiny_image(tmp / "vit"), "digits", "accuracy", {"limit": 32})}
    if LIBRIVOX.exists():
        out["automatic-speech-recognition"] = (make_tiny_speech(tmp / "w2v"), "librivox", "wer", {"limit": 4})
    return out


@pytest.mark.slow
@pytest.mark.parametrize("task", ["token-classification", "question-answering", "text-generation",
                                  "image-classification", "automatic-speech-recognition"])
def test_optimize_runs_through_every_task(task_models, task):
    from hfmagic.optimizing.api import optimize
    from hfmagic.store.db import default_store

    if task not in task_models:
        pytest.skip("needs Debian's pocketsphinx-testdata (make data)")
    folder, data, metric, options = task_models[task]
    result = optimize(str(folder), data, **FAST, **options)
    assert not result.interrupted
    stages = {t["stage"] for t in result.trace}
    assert {"build", "gate", "confirm"} <= stages, result.trace
    assert all(t["reason"] for t in result.trace if t["outcome"] == "dropped"), result.trace
    gated = [t for t in result.trace if t["stage"] == "gate"]
    assert gated and all(t["metric"] is not None for t in gated if t["outcome"] == "kept"), result.trace
    evaluated = [r for r in result.evaluation if r["variant"] != "torch"]
    assert evaluated and all(metric in r for r in evaluated if r["status"] == "ok")  # the task's own first metric
    reference = next(r for r in result.evaluation if r["variant"] == "torch")
    if not reference.get(metric):  # a tiny random model can score 0: every verdict then says why there is none
        assert all("reference scores" in t["reason"] for t in gated if t["outcome"] == "dropped"
                   and t["metric"] is not None), gated
    if result.winner:
        w = result.winner
        assert w["pct"] is not None and w["variant"] != "torch"
        lower = metric in ("perplexity", "wer")
        assert w["pct"] <= 101 + 1e-9 if lower else w["pct"] >= 99 - 1e-9
        assert result.recipe["sha256"]
    else:
        assert any("kept the accuracy" in n for n in result.notes), result.notes
    run = default_store().get(result.run_id)
    assert run["kind"] == "optimize" and run["status"] == "ok" and len(run["rows"]) == len(result.trace)
