"""%serve for every task it answers, on a real Ray Serve on 127.0.0.1 with real HTTP: an answer is
the prediction %evaluate scores (the same path, checked against it), images and audio arrive as
files or base64, and a request the task cannot read gets HTTP 400 with one line."""

import base64
import io
import json
import urllib.error
import urllib.request

import pytest

pytest.importorskip("ray.serve")


def post(url: str, body, content_type: str = "application/json") -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture(scope="module")
def serving():
    from hfmagic.serving.api import stop_all

    stop_all()  # another module's configurations hold this machine's CPUs
    yield
    stop_all()


def evaluated(model, data, limit: int):
    """%evaluate's own prediction for ``model`` (torch) on the first ``limit`` examples of ``data``."""
    from hfmagic.measure.runner import Runner
    from hfmagic.models.variants import Variant

    evaluator = model.task_plugin.evaluator()
    read = evaluator.read(model, data, {"limit": limit})
    runner = Runner(Variant("torch", model, size_bytes=model.weights_bytes))
    batches = evaluator.batches(model, read, 4)
    per_row = [None] * sum(len(i) for i, _ in batches)
    for idx, feed in batches:
        for j, out in zip(idx, evaluator.outputs(runner.run(feed), feed)):
            per_row[int(j)] = out
    return read, evaluator.finish(model, read, per_row)


def test_text_tasks_answer_what_evaluate_predicts(serving, ner_folder, qa_folder):
    from hfmagic.models.handle import load_model
    from hfmagic.serving.api import serve
    from hfmagic.serving.loadtest import loadtest

    ner, qa = load_model(ner_folder), load_model(qa_folder)
    tagger, answerer = serve(ner, name="ner", max_batch=4, batch_wait_ms=20), serve(qa, name="qa")
    read, prediction = evaluated(ner, "wnut16", 6)
    sentences = [" ".join(words) for words, _ in read.examples["sentences"]]
    status, answer = post(tagger.url, {"inputs": sentences})
    assert status == 200, answer
    assert [p["tags"] for p in answer["predictions"]] == prediction["tags"]  # exactly %evaluate's tags
    for p in answer["predictions"]:  # and its entities are spans of them
        for e in p["entities"]:
            assert e["text"] == " ".join(p["words"][e["start"]:e["end"]]) and p["tags"][e["start"]].endswith(e["type"])

    read, prediction = evaluated(qa, "squad-bbc", 5)
    for example, expected in zip(read.examples["examples"], prediction["answers"]):
        status, answer = post(answerer.url, {"inputs": {"question": example["question"], "context": example["context"]}})
        assert status == 200 and answer["predictions"] == [{"answer": expected}], answer
    status, answer = post(answerer.url, {"inputs": "a bare text"})
    assert status == 400 and answer["error"].startswith('send JSON {"inputs": {"question"') and "\n" not in answer["error"]

    result = loadtest([tagger, answerer], rates=[4], duration=1.5, progress=False)
    assert {r["config"]: r["errors"] for r in result.rows} == {"ner": 0, "qa": 0}, result.rows
    assert any("examples from squad-bbc" in n for n in result.notes), result.notes
    tagger.stop()
    answerer.stop()


@pytest.mark.slow  # two more models served: 30 s
def test_images_and_audio_arrive_as_files_or_base64(serving, tmp_path_factory, tiny_speech):
    from tests.support.tiny import make_tiny_image

    from hfmagic.models.handle import load_model
    from hfmagic.serving.api import serve
    from hfmagic.serving.loadtest import loadtest
    from hfmagic.tasks.speech.audio import encode as encode_audio, synthetic_clips
    from hfmagic.tasks.vision.images import digits, encode as encode_image

    images = load_model(make_tiny_image(tmp_path_factory.mktemp("serve-image")))
    speech = load_model(tiny_speech())
    seer, listener = serve(images, name="image"), serve(speech, name="speech")
    read, prediction = evaluated(images, digits(), 3)
    pictures = read.examples["data"].images
    status, answer = post(seer.url, {"inputs": [encode_image(p) for p in pictures]})
    labels = [images.labels[int(k)] for k in prediction["pred"]]
    assert status == 200 and [p["label"] for p in answer["predictions"]] == labels, answer
    png = io.BytesIO()
    pictures[0].save(png, format="PNG")
    status, answer = post(seer.url, png.getvalue(), "image/png")  # the file itself as the body
    assert status == 200 and answer["predictions"][0]["label"] == labels[0], answer
    status, answer = post(seer.url, {"inputs": base64.b64encode(b"not an image").decode()})
    assert status == 400 and "cannot be read" in answer["error"], answer

    clip = synthetic_clips(16000, 1)[0]
    status, answer = post(listener.url, {"inputs": encode_audio(clip, 16000)})
    assert status == 200 and isinstance(answer["predictions"][0]["text"], str), answer
    status, answer = post(listener.url, base64.b64decode(encode_audio(clip, 16000)), "audio/wav")
    assert status == 200 and answer["predictions"][0]["text"] == answer["predictions"][0]["text"]
    import numpy as np
    import soundfile

    stereo = io.BytesIO()
    soundfile.write(stereo, np.stack([clip, clip], 1), 16000, format="WAV")
    status, answer = post(listener.url, stereo.getvalue(), "audio/wav")
    assert status == 400 and "2 channels" in answer["error"], answer
    status, answer = post(listener.url, {"inputs": "%%%"})
    assert status == 400 and "base64" in answer["error"], answer

    result = loadtest([seer, listener], rates=[3], duration=1.5, progress=False)
    assert all(r["errors"] == 0 and r["ok"] > 0 for r in result.rows), result.rows
    seer.stop()
    listener.stop()


def stream(url: str, body: dict) -> list[dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.headers["Content-Type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in response if line.strip()]


def test_a_decoder_streams_its_tokens_and_the_load_test_reads_ttft_and_tpot(serving, shell, llama_variants):
    """onnxruntime-genai's fp32 served: its tokens come a line each, exactly max_new_tokens of them,
    the text PyTorch's greedy generation gives; a load test reports TTFT and TPOT under load."""
    import numpy as np
    from IPython.core.error import UsageError

    from hfmagic.serving.api import serve
    from hfmagic.serving.loadtest import loadtest
    from hfmagic.tasks.generation.decoding import generation_config, greedy

    model = llama_variants.model
    served = serve(llama_variants, variant="genai-fp32", name="decoder")
    prompt = "the markets rallied on friday"
    lines = stream(served.url, {"inputs": prompt, "max_new_tokens": 6})
    tokens, last = [line["token"] for line in lines[:-1]], lines[-1]
    assert len(tokens) == 6 and last["done"] and last["tokens"] == 6 and "".join(tokens) == last["text"], lines
    ids = np.asarray(model.tokenizer()(prompt, return_tensors="np")["input_ids"], dtype=np.int64)
    expected = greedy(model.torch_model(), {"input_ids": ids, "attention_mask": np.ones_like(ids)},
                      generation_config(model, 6))[0].tolist()
    assert last["text"] == model.tokenizer().decode(expected, skip_special_tokens=True)
    assert 0 < last["server_ttft_ms"] <= last["server_ms"]

    status, answer = post(served.url, {"inputs": prompt, "max_new_tokens": 10 ** 6})
    assert status == 400 and "do not fit" in answer["error"] and "\n" not in answer["error"], answer
    status, answer = post(served.url, {"inputs": [prompt, prompt]})
    assert status == 400 and "one non-empty prompt per request" in answer["error"], answer
    shell.user_ns["decoder_variants"] = llama_variants
    with pytest.raises(UsageError, match="leave out --max-batch"):
        shell.run_line_magic("serve", "decoder_variants --variant genai-fp32 --max-batch 4 --route other")

    result = loadtest(served, rates=[4], duration=2, new_tokens=8, slo_p99="2s", arrival="constant", progress=False)
    row = result.rows[0]
    assert row["status"] == "ok" and row["output_tokens"] == 8 * row["ok"], row
    assert 0 < row["ttft_p50_ms"] <= row["p50_ms"] and 0 < row["tpot_p50_ms"] < row["p50_ms"], row
    assert row["output_tps"] > 0 and row["server_ttft_p50_ms"] > 0
    text = str(result)
    assert "TTFT p99 ms" in text and "8 new tokens each" in text and "judged on TTFT's p99" in text
    served.stop()


def test_optimize_for_serving_refuses_bad_settings_in_one_line(shell, tiny_bert):
    from IPython.core.error import UsageError

    shell.user_ns["opt_dir"] = str(tiny_bert)
    cases = {"optimize $opt_dir --objective serve": "--objective serve needs --slo-p99",
             "optimize $opt_dir --slo-p99 100ms": "--slo-p99 is the served p99 budget of --objective serve",
             "optimize $opt_dir --objective serve --slo-p99 fast": "--slo-p99 takes a time such as 100ms",
             "optimize $opt_dir --objective serve --slo-p99 100ms --shape 4x16": "searches at batch 1"}
    for line, expected in cases.items():
        with pytest.raises(UsageError, match=expected):
            shell.run_line_magic(line.split()[0], line.split(" ", 1)[1])


@pytest.mark.slow  # a whole search, then nine served configurations load-tested: 4 min
def test_optimize_finds_the_served_configuration_with_the_most_requests_inside_the_slo(serving, tiny_clf, store_in_shell):
    from hfmagic.optimizing.api import optimize

    folder, data = tiny_clf
    result = optimize(str(folder), data=data, objective="serve", slo_p99="200ms", threads=1, backends=["onnxruntime"],
                      serve_duration=2, progress=False, min_time=0.3)
    served = [t for t in result.trace if t["stage"] == "serve"]
    assert len(served) >= 3 and result.loadtest is not None and result.loadtest.rows, result.trace
    best = result.loadtest.best()
    assert result.winner is not None and result.winner["objective"] == max(v or 0 for v in best.values())
    assert best[result.winner["candidate"]] == result.winner["objective"]  # the table's figure, the winner's
    assert result.recipe["serve_line"].startswith(f"%serve VARIANTS --variant {result.winner['variant']} ")
    assert "requests/s inside 200 ms p99" in result.outcome
    text = str(result)
    assert "serve it as it was served: %serve" in text
    run = store_in_shell.get(result.run_id)
    assert run["kind"] == "optimize" and any(r["stage"] == "serve" for r in store_in_shell.rows(run["id"]))


@pytest.mark.slow  # a two-node Ray cluster of its own: 40 s
def test_serve_on_a_cluster_ships_the_files_to_its_nodes(serving, tiny_variants, tmp_path, monkeypatch):
    """--cluster: a two-node cluster (one CPU each, no shared disk: each node its own file cache);
    two replicas land on both nodes, each with the variant's files received through Ray's object
    store, and answer through the proxy on the head; the kernel's own serving is refused beside it.
    A Ray token file in the home folder (a plain ray.init() anywhere writes one, and `ray start`
    then turns token auth on) does not lock the kernel out of its own local cluster."""
    from hfmagic.cluster.local import LocalCluster
    from hfmagic.core.errors import UsageProblem
    from hfmagic.serving.api import serve, stop_all

    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("0" * 64)
    monkeypatch.setenv("HOME", str(tmp_path))
    stop_all()  # this module's earlier tests served on this machine's own Ray
    lc = LocalCluster([{}, {}], cpus=1).start()  # its own short temporary folder: Ray's socket paths
    try:
        served = serve(tiny_variants, variant="fp32", replicas=2, name="spread", cluster=lc.address)
        assert served.url.startswith("http://127.0.0.1:") and len({p["node"] for p in served.placement}) == 2, \
            served.placement
        status, answer = post(served.url, {"inputs": ["a text", "another", "a third", "a fourth"]})
        assert status == 200 and len(answer["predictions"]) == 4, answer
        for i in range(2):  # each node holds the model's and the variant's folders of its own
            assert len([d for d in lc.node_cache(i).iterdir() if (d / ".hfmagic-complete").exists()]) == 2
        with pytest.raises(UsageProblem, match="serves on the Ray cluster at"):
            serve(tiny_variants, variant="fp32", name="here")
    finally:
        stop_all()
        lc.stop()
