"""%serve and %loadtest on a real Ray Serve bound to 127.0.0.1, with real HTTP requests: predictions,
dynamic batching seen in the answers, open-loop timing that shows a slow server's queue, the knee
and the highest rate inside the SLO, bad input in one line. No mock of Ray or of HTTP anywhere."""

import json
import urllib.error
import urllib.request

import pytest

from tests.support.tiny import LABELS

pytest.importorskip("ray.serve")


@pytest.fixture(scope="module")
def served(shell, tiny_bert):
    """The tiny classifier's fp32 served twice: as it is, and 40 ms slower per batch with no batching."""
    from hfmagic.serving.api import stop_all

    shell.user_ns["tiny_dir"] = str(tiny_bert)
    shell.run_line_magic("load_model", "$tiny_dir --name tiny_served -q")
    shell.run_line_magic("export_onnx", "tiny_served --levels fp32 --quantize none --name tiny_v -q")
    fast = shell.run_line_magic("serve", "tiny_v --variant fp32 --max-batch 8 --batch-wait-ms 30 --route fast -o -q")
    slow = shell.run_line_magic("serve", "tiny_v --variant fp32 --delay-ms 40 --route slow -o -q")
    yield fast, slow
    stop_all()


def post(url: str, body) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_a_served_variant_answers_http_with_predictions(served):
    fast, _ = served
    assert fast.url.startswith("http://127.0.0.1:") and fast.url.endswith("/fast") and fast.replicas == 1
    status, answer = post(fast.url, {"inputs": "the markets rallied"})
    assert status == 200 and len(answer["predictions"]) == 1, answer
    prediction = answer["predictions"][0]
    assert prediction["label"] in LABELS and 0 < prediction["score"] <= 1 and answer["server_ms"] > 0
    status, answer = post(fast.url, {"inputs": ["one text", "another text", "a third"]})
    assert status == 200 and len(answer["predictions"]) == 3
    assert max(answer["batch_sizes"]) > 1  # sent together, they waited for each other: one batch
    status, answer = post(fast.url, {"text": "wrong key"})
    assert status == 400 and "inputs" in answer["error"]
    assert "POST JSON" in str(fast) and "fast" in str(fast)


def test_open_loop_latency_shows_a_slow_servers_queue(served):
    """40 ms a request, one at a time: 25/s at most. At 10/s it keeps up; at 40/s the queue grows,
    and latency counted from each request's intended send time shows it."""
    from hfmagic.serving.loadtest import loadtest

    _, slow = served
    result = loadtest(slow, rates=[10, 40], duration=3, slo_p99="250ms", arrival="constant", progress=False)
    rows = {r["rate"]: r for r in result.rows}
    assert rows[10]["status"] == "ok", rows[10]
    assert rows[10]["achieved_rps"] == pytest.approx(10, rel=0.15)
    assert rows[40]["status"] != "ok" and rows[40]["p99_ms"] > 4 * rows[10]["p99_ms"], rows
    assert rows[40]["p99_ms"] > 250 and rows[40]["achieved_rps"] < 30
    # the server's own time per request stays near its 40 ms at 10/s: the client's p50 is close to it
    assert rows[10]["server_p50_ms"] == pytest.approx(rows[10]["p50_ms"], abs=25)
    assert result.best() == {"slow": 10} and result.knee() == {"slow": 40}
    text = str(result)
    assert "highest rate inside the SLO (250 ms p99): 10/s" in text and "knee at 40/s" in text
    # one request at a time, before the rates: the client's time split into the replica's (40 ms a
    # batch), the empty loopback HTTP's and the rest (Ray Serve's proxy)
    split = result.splits["slow"]
    assert split["server_ms"] >= 40 and split["client_ms"] > split["server_ms"] > 0 and split["floor_ms"] > 0, split
    assert split["proxy_ms"] == pytest.approx(split["client_ms"] - split["server_ms"] - split["floor_ms"])
    assert "slow: one request at a time" in text and "Ray Serve's proxy and its hop to the replica" in text


def test_dynamic_batching_groups_concurrent_requests(served):
    from hfmagic.serving.loadtest import loadtest

    fast, slow = served
    result = loadtest([fast, slow], rates=[30], duration=2, slo_p99="1s", price_per_hour=2.0, progress=False)
    rows = {r["config"]: r for r in result.rows}
    assert rows["fast"]["max_batch_seen"] > 1 and rows["slow"]["max_batch_seen"] == 1, rows
    assert rows["fast"]["max_batch"] == 8 and rows["slow"]["max_batch"] == 1
    assert "per million requests" in str(result)


def test_a_load_test_is_recorded_with_each_configurations_accuracy_gate(shell, served, store_in_shell, tiny_bert):
    """%evaluate first (the store keeps it), then %loadtest: each served configuration carries its
    variant's gate from that evaluation, the run is in the store with its environment card, and the
    run list's headline names the configuration with the most requests inside the SLO."""
    import pandas as pd

    from tests.support.tiny import sentences

    fast, slow = served
    texts = sentences(12, seed=3)
    shell.user_ns["served_texts"] = pd.DataFrame({"text": texts, "label": [LABELS[i % len(LABELS)] for i in range(12)]})
    shell.run_line_magic("evaluate", "tiny_v --data served_texts --reference torch -q")
    shell.user_ns.update(fast_served_again=fast, slow_served_again=slow)
    result = shell.run_line_magic("loadtest", "fast_served_again slow_served_again --rates 5 --duration 1.5 "
                                  "--slo-p99 1s -o -q")
    assert {r["gate"] for r in result.rows} == {"pass"}, result.rows  # fp32 keeps the torch reference's accuracy
    text = str(result)
    assert "fast: accuracy 100.00% of the reference's accuracy, gate pass (evaluate run " in text, text
    run = store_in_shell.get(result.run_id)
    assert run["kind"] == "loadtest" and run["environment"].get("cpu") and len(store_in_shell.rows(run["id"])) == 2
    assert run["provenance"]["model"]["weights_sha256"] and set(run["provenance"]["served"]) == {"fast", "slow"}
    listed = str(shell.run_line_magic("hfmagic", "runs --kind loadtest"))
    assert "most inside 1000 ms p99:" in listed and "(gate pass)" in listed, listed


def test_bad_serving_and_load_input_is_one_line(shell, served, capsys):
    from IPython.core.error import UsageError

    import socket

    fast, _ = served
    shell.user_ns["fast_served"] = fast
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    cases = {
        "serve tiny_v --variant nope": "unknown variant 'nope'",
        "serve tiny_v --variant fp32 --route fast": "fast is served already",
        "serve tiny_v --replicas 0": "--replicas must be a whole number, at least 1",
        f"serve tiny_v --route other --port {taken.getsockname()[1]}": "is in use; give another --port",
        "serve --stop nothing-here": "nothing is served under 'nothing-here'",
        "loadtest fast_served --slo-p99 100 parsecs": "unrecognized arguments",
        "loadtest fast_served --slo-p99 100parsecs --duration 1": "--slo-p99 takes a time such as 100ms",
        "loadtest ftp://example --duration 1": "load-test a served handle",
        "loadtest fast_served --rates 0 --duration 1": "--rates must be positive",
    }
    for line, expected in cases.items():
        res = shell.run_cell(f"%{line}", store_history=False)
        said = capsys.readouterr()
        assert isinstance(res.error_in_exec, UsageError) and "Traceback" not in said.out + said.err, (line, said)
        message = str(res.error_in_exec)
        assert "\n" not in message and expected in message, (line, message)
    taken.close()
    assert post(fast.url, {"inputs": "still here"})[0] == 200  # the served endpoint is untouched


def test_ctrl_c_stops_the_generator_and_keeps_what_finished(served):
    import os
    import signal
    import threading

    from hfmagic.serving.loadtest import loadtest

    fast, _ = served
    def second_rate_started(event):
        if event["type"] == "progress" and event["done"] == 1:  # a second into the second rate: Ctrl-C
            threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()

    result = loadtest(fast, rates=[5, 10, 20], duration=3, callback=second_rate_started, progress=False)
    assert result.interrupted and [r["rate"] for r in result.rows] == [5, 10], result.rows
    assert result.rows[0]["status"] == "ok" and result.rows[1]["status"].startswith("interrupted")
    assert any("interrupted (Ctrl-C)" in n for n in result.notes)


@pytest.mark.slow  # a third deployment and Serve's recovery: 40 s
def test_a_replica_killed_mid_test_costs_its_requests_and_the_test_carries_on(shell, served):
    """Two replicas; one is killed a second into the rate: every request is answered or counted as
    an error by kind (Ray Serve may retry what the dead replica held), Serve starts another replica,
    and the rate and the next one finish."""
    import os
    import threading
    import time

    import ray

    from hfmagic.serving.loadtest import loadtest

    from IPython.core.error import UsageError

    fast, slow = served  # each holds one of this machine's CPUs: all but one more do not fit beside them
    more = (os.cpu_count() or 2) - 1
    with pytest.raises(UsageError, match=rf"need {more} CPUs; this machine's Ray has {more - 1} of"):
        shell.run_line_magic("serve", f"tiny_v --variant fp32 --replicas {more} --route two -q")
    slow.stop()
    fast.stop()
    two = shell.run_line_magic("serve", "tiny_v --variant fp32 --replicas 2 --delay-ms 30 --route two -o -q")
    assert len(two.placement) == 2 and all(p["node"] for p in two.placement), two.placement
    victim = ray.get_actor(two.placement[0]["actor"], namespace="serve")
    threading.Timer(1.0, ray.kill, (victim,)).start()
    result = loadtest(two, rates=[20, 5], duration=3, arrival="constant", progress=False)
    rows = {r["rate"]: r for r in result.rows}
    assert len(rows) == 2 and rows[20]["ok"] > 0 and rows[5]["ok"] > 0, rows  # the survivor kept answering
    for row in rows.values():  # every request is answered or counted as an error of its kind
        assert row["ok"] + row["errors"] == row["sent"] and sum(row["error_kinds"].values()) == row["errors"], row
        assert row["status"] == "ok" or row["status"].startswith("errors:"), row
    from hfmagic.serving.api import _placement

    end = time.monotonic() + 60
    while len(replicas := _placement("two")) < 2 and time.monotonic() < end:  # Serve replaces the killed one
        time.sleep(1)
    assert len(replicas) == 2 and two.placement[0]["actor"] not in {p["actor"] for p in replicas}, replicas
    two.stop()

