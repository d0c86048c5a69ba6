"""``loadtest()``: what users of an endpoint see at a given request rate, measured open-loop.

At each offered rate the generator sends real examples on a schedule drawn in advance (Poisson
arrivals by default: exponential gaps; ``constant`` evenly spaced) and never waits for an answer
before the next send, so a slow server cannot slow the arrivals down. Each request's latency runs
from its **intended** send time to its answer: a server that queues shows its queue, where a
closed loop (send, wait, send) would hide it (coordinated omission). The client is aiohttp on an
asyncio loop of its own thread (a notebook's kernel runs a loop already), one connection pool,
no limit on connections in flight.

The generator measures itself: how late each send left against its schedule, and the CPU its
process used; a rate it could not keep to is marked in its row, and its figures are not called
the server's. Per rate: offered and achieved requests/s, p50/p90/p99/max latency, the server's own
median time for a request (``server_ms`` in each answer: the cross-check), errors and timeouts by
kind. Over the rates: the knee (the first rate where achieved falls below 95% of offered, errors
appear or p99 crosses the SLO) and the highest rate inside the SLO.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import resource
import threading
import time

from hfmagic.core.errors import UsageProblem
from hfmagic.serving.record import accuracy_of, provenance
from hfmagic.serving.result import LoadTestResult, figures
from hfmagic.tasks.base import STREAM_TYPE  # a served decoder's answer (hfmagic.tasks.generation.requests)
from hfmagic.store.db import default_store

REQUEST_TIMEOUT_S = 30.0
NEW_TOKENS = 64  # a decoder's new tokens per request unless --new-tokens says


def parse_ms(text, what: str = "--slo-p99") -> float:
    """``100ms``, ``0.1s``, ``250`` (milliseconds) -> milliseconds; anything else one line."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s)?\s*", str(text))
        if not found:
            raise UsageProblem(f"{what} takes a time such as 100ms or 0.1s, got {text!r}")
        value = float(found.group(1)) * (1000 if found.group(2) == "s" else 1)
    if value <= 0:
        raise UsageProblem(f"{what} must be a positive time, got {text!r}")
    return value


def schedule(rate: float, duration: float, arrival: str, seed: int) -> list[float]:
    """Send times (seconds from the start) of one rate: Poisson (exponential gaps) or constant."""
    import numpy as np

    if arrival == "constant":
        return list(np.arange(0.0, duration, 1.0 / rate))
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate, size=int(rate * duration * 2) + 16)
    times = np.cumsum(gaps) - gaps[0]
    return list(times[times < duration])


async def _one(session, url: str, payload: dict, intended: float, timeout: float, clock) -> dict:
    import aiohttp

    sent = clock()
    try:
        async with session.post(url, json=payload, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status != 200:
                await response.read()
                return {"intended": intended, "sent": sent, "done": clock(), "error": f"HTTP {response.status}"}
            if response.content_type == STREAM_TYPE:  # a decoder's tokens, a line each as they come
                stamps, last = [], {}
                async for line in response.content:
                    if line.strip():
                        item = json.loads(line)
                        if "token" in item:
                            stamps.append(clock())
                        else:
                            last = item
                done = clock()
                if "error" in last or not last.get("done"):
                    return {"intended": intended, "sent": sent, "done": done, "error": "stream broken"}
                return {"intended": intended, "sent": sent, "done": done, "tokens": stamps,
                        "server_ms": last.get("server_ms"), "server_ttft_ms": last.get("server_ttft_ms")}
            body = await response.json(content_type=None)
            return {"intended": intended, "sent": sent, "done": clock(), "server_ms": body.get("server_ms"),
                    "batch_sizes": body.get("batch_sizes")}
    except asyncio.TimeoutError:
        return {"intended": intended, "sent": sent, "done": clock(), "error": "timeout"}
    except aiohttp.ClientConnectorError:
        return {"intended": intended, "sent": sent, "done": clock(), "error": "connection refused"}
    except aiohttp.ClientError as exc:
        return {"intended": intended, "sent": sent, "done": clock(), "error": type(exc).__name__}


async def _rate(url: str, payloads: list[dict], times: list[float], timeout: float, stop: threading.Event) -> list:
    """Send one request per scheduled time (open loop) and gather every answer."""
    import aiohttp

    loop = asyncio.get_running_loop()
    clock = loop.time
    pending = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        start = clock() + 0.05
        for i, offset in enumerate(times):
            if stop.is_set():
                break
            intended = start + offset
            wait = intended - clock()
            if wait > 0:
                await asyncio.sleep(wait)
            pending.append(asyncio.ensure_future(
                _one(session, url, payloads[i % len(payloads)], intended, timeout, clock)))
        results = await asyncio.gather(*pending)
    return [{**r, "start": start} for r in results]


async def _sequential(url: str, payloads: list[dict], count: int, timeout: float) -> list[dict]:
    """``count`` requests one after another (one user, no queue), each timed as the load test times one."""
    import aiohttp

    clock = asyncio.get_running_loop().time
    async with aiohttp.ClientSession() as session:
        return [await _one(session, url, payloads[i % len(payloads)], clock(), timeout, clock) for i in range(count)]


async def _empty_server(count: int) -> list[dict]:
    """The client and loopback HTTP alone: ``count`` requests to an aiohttp server on 127.0.0.1 of
    this loop's own that answers at once."""
    import socket

    from aiohttp import web

    async def answer(request):
        await request.read()
        return web.json_response({"server_ms": 0.0})

    app = web.Application()
    app.router.add_post("/", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    try:
        return await _sequential(f"http://127.0.0.1:{sock.getsockname()[1]}/", [{"inputs": ""}], count, 10.0)
    finally:
        await runner.cleanup()


def _one_by_one(url: str, payloads: list[dict], count: int, warmups: int, timeout: float,
                empty: bool = False) -> tuple[list[dict], list[dict]]:
    """``count`` answered-or-not requests sent one after another (after ``warmups``), and with
    ``empty`` as many to an empty server of the client's own (see :func:`latency_split`)."""
    async def both():
        served = await _sequential(url, payloads, count + warmups, timeout)
        floor = await _empty_server(count + warmups) if empty else []
        return served[warmups:], floor[warmups:]

    return _run_in_thread(both, threading.Event())[0]


def _median_ms(results: list[dict]) -> float:
    import statistics

    return statistics.median((r["done"] - r["sent"]) * 1000 for r in results)


def latency_split(url: str, payloads: list[dict], count: int = 10, warmups: int = 3,
                  timeout: float = REQUEST_TIMEOUT_S) -> dict:
    """Where one request's time goes, one at a time (no queue): the client's median, the replica's
    own (``server_ms``), the client and loopback HTTP (an empty aiohttp server's answer here), and
    the rest: Ray Serve's proxy and its hop to the replica."""
    import statistics

    served, empty = _one_by_one(url, payloads, count, warmups, timeout, empty=True)
    ok = [r for r in served if "error" not in r]
    if not ok:
        return {}
    client, floor = _median_ms(ok), _median_ms(empty)
    server = [r["server_ms"] for r in ok if r.get("server_ms") is not None]
    out = {"client_ms": client, "floor_ms": floor, "server_ms": statistics.median(server) if server else None}
    if out["server_ms"] is not None:
        out["proxy_ms"] = client - out["server_ms"] - floor
    return out


def _run_in_thread(coro_factory, stop: threading.Event):
    """Run an asyncio coroutine on a loop of its own thread (a kernel's loop is running already);
    Ctrl-C in the caller sets ``stop`` and waits for the answers in flight."""
    out: dict = {}
    finished = threading.Event()  # not Thread.join: interrupted by Ctrl-C, it can leave is_alive() False early

    def target():
        try:
            out["value"] = asyncio.run(coro_factory())
        except BaseException as exc:  # handed to the caller
            out["error"] = exc
        finally:
            finished.set()

    threading.Thread(target=target, daemon=True).start()
    interrupted = False
    while not finished.is_set():
        try:
            finished.wait(0.1)
        except KeyboardInterrupt:
            stop.set()
            interrupted = True
    if "error" in out:
        raise out["error"]
    return out.get("value"), interrupted


def _targets(target) -> list[tuple[str, str, dict, object]]:
    """(name, url, config, model) of each target: a served configuration (its model) or a URL (None)."""
    from hfmagic.serving.api import Served

    out = []
    for t in target if isinstance(target, (list, tuple)) else [target]:
        if isinstance(t, Served):
            if t.stopped:
                raise UsageProblem(f"{t.name} was stopped; serve it again before load-testing it")
            out.append((t.name, t.url, t.config(), t.handle))
        elif isinstance(t, str) and re.match(r"https?://[^/\s]+", t):
            out.append((t, t, {"config": t}, None))
        else:
            raise UsageProblem(f"load-test a served handle (from %serve) or a URL such as http://127.0.0.1:8000/x; "
                               f"got {t!r}")
    return out


def loadtest(target, rates=(5, 10, 20, 40), duration: float = 30.0, slo_p99=None, data=None,
             arrival: str = "poisson", timeout: float = REQUEST_TIMEOUT_S, price_per_hour: float | None = None,
             seed: int = 0, progress: bool = True, callback=None, new_tokens: int | None = None,
             accuracy=None, record: bool = True, split: bool = True) -> LoadTestResult:
    """Load-test ``target`` (a :class:`~hfmagic.serving.api.Served`, a URL, or a list of them) at
    each of ``rates`` requests/s for ``duration`` seconds, open-loop (see the module docstring).
    ``slo_p99``: the p99 latency budget (``"100ms"``); ``data``: the examples sent (what %evaluate's
    --data takes for the served model's task; by default its task's samples: hfmagic's sample
    sentences, scikit-learn's digits, LibriVox clips, questions on BBC articles; a URL is sent
    texts); ``price_per_hour``: the machine's price,
    for the cost per million requests at the highest rate inside the SLO. ``callback``: called with
    ``{"type": "progress", "done", "total", "label"}`` as each rate starts and ``{"type": "row",
    "row"}`` as it finishes (as %benchmark's callback is; a bar shows unless
    ``progress`` is False). ``new_tokens``: what a served decoder is asked to generate per request
    (default 64; every request generates exactly that many). ``accuracy``: the %evaluate result(s)
    each served variant's accuracy and gate come from (default: the newest evaluation of its
    weights in the run store; :mod:`hfmagic.serving.record`). The run is recorded in the store
    (``record=False``: not, nor is the store read; a search that records its own run). ``split``:
    first, each target's one-request latency split into the replica's, the proxy's and the
    client's (:func:`latency_split`; the notes say it)."""
    from hfmagic.core.listargs import as_list

    targets = _targets(target)
    rates = as_list(rates, float, "rate")
    if not rates or any(isinstance(r, bool) or not isinstance(r, (int, float)) or r <= 0 for r in rates):
        raise UsageProblem(f"--rates must be positive requests per second, e.g. 5,10,20; got {rates!r}")
    if not isinstance(duration, (int, float)) or duration <= 0:
        raise UsageProblem(f"--duration must be a positive number of seconds, got {duration!r}")
    if arrival not in ("poisson", "constant"):
        raise UsageProblem(f"--arrival must be poisson or constant, got {arrival!r}")
    slo_ms = parse_ms(slo_p99) if slo_p99 is not None else None
    if price_per_hour is not None and price_per_hour <= 0:
        raise UsageProblem(f"--price-per-hour must be a positive price, got {price_per_hour!r}")
    if new_tokens is not None and (isinstance(new_tokens, bool) or not isinstance(new_tokens, int) or new_tokens < 1):
        raise UsageProblem(f"--new-tokens must be a whole number of tokens, at least 1; got {new_tokens!r}")
    sent = _sent(targets, data, new_tokens)
    targets_given = target
    result = LoadTestResult([], slo_ms, duration, arrival, price_per_hour=price_per_hour)
    for what in dict.fromkeys(what for _, what in sent.values()):
        result.notes.append(f"requests: {what}, one per request, in turn")
    served = target_list(targets_given)
    store = default_store() if record else None
    result.accuracy = accuracy_of(served, accuracy, store) if served and (record or accuracy) else {}
    params = {"targets": [c for _, _, c, _ in targets], "rates": sorted(rates), "duration": duration,
              "slo_ms": slo_ms, "arrival": arrival, "price_per_hour": price_per_hour, "new_tokens": new_tokens,
              "timeout": timeout, "seed": seed, "sent": {name: what for name, (_, what) in sent.items()}}
    with store.recording("loadtest", params, provenance(served) if served else {"served": {n: u for n, u, _, _ in targets}}) \
            if store else contextlib.nullcontext() as run:
        result.run_id = run.id if run else None
        _run_rates(targets, sorted(rates), sent, result, run, timeout, seed, progress, callback, split)
        cpus = [r["generator_cpu"] for r in result.rows if r.get("generator_cpu") is not None]
        if cpus:
            result.notes.append(f"the generator's own CPU: up to {max(cpus):.0%} of one core (it shares this "
                                "machine's cores with the server)")
        if run:
            run.finish("interrupted" if result.interrupted else "ok",
                       {"notes": result.notes, "best": result.best(), "knee": result.knee()})
    return result


def target_list(targets) -> list:
    """The served configurations among the targets (URLs have no model to know the accuracy of)."""
    from hfmagic.serving.api import Served

    return [t for t in (targets if isinstance(targets, (list, tuple)) else [targets]) if isinstance(t, Served)]


def _run_rates(targets, rates, sent, result, run, timeout, seed, progress, callback, split=True) -> None:
    """Every target at every rate in turn (lowest first), each row recorded as it finishes; Ctrl-C
    ends the rate in flight (its row says so) and the test."""
    from tqdm.auto import tqdm

    stop = threading.Event()
    total = len(targets) * len(rates)
    bar = tqdm(total=total, desc="loadtest", unit="rate", disable=not progress, leave=False)
    try:
        for name, url, config, model in targets:
            streams = model is not None and model.task_plugin.requests.STREAMS
            if split:
                result.splits[name] = latency_split(url, sent[name][0], count=3 if streams else 10,
                                                    warmups=1 if streams else 3, timeout=timeout)
            found = result.accuracy.get(name)
            judged = {"gate": found["gate"], "pct_of_reference": found["pct_of_reference"]} if found else {}
            for rate in rates:
                label = f"{name} at {rate:g}/s"
                bar.set_postfix_str(label)
                if callback is not None:
                    callback({"type": "progress", "done": len(result.rows), "total": total, "label": label})
                times = schedule(rate, result.duration, result.arrival, seed)
                cpu0, wall0 = _cpu_s(), time.perf_counter()
                payloads = sent[name][0]
                answers, interrupted = _run_in_thread(lambda: _rate(url, payloads, times, timeout, stop), stop)
                if answers:
                    row = figures(answers, rate, result.duration, result.slo_ms, _cpu_s() - cpu0,
                                  time.perf_counter() - wall0)
                    if interrupted:
                        row["status"] = "interrupted: the rate was cut short (its figures cover what was sent)"
                    row = {**config, **row, **judged}
                    result.rows.append(row)
                    if run:
                        run.add_row(row)
                    if callback is not None:
                        callback({"type": "row", "row": row})
                bar.update(1)
                if interrupted:
                    result.interrupted = True
                    result.notes.append("interrupted (Ctrl-C): every rate before it finished is kept")
                    return
    finally:
        bar.close()


def one_at_a_time(target, data=None, count: int = 30, warmups: int = 3, new_tokens: int | None = None) -> float:
    """The median milliseconds of ``count`` requests sent one after another (after ``warmups``):
    one user, no queue; what a served configuration answers in, HTTP and the proxy included (a
    load test's rates and SLO are read against it). The examples are the load test's (``data``;
    a decoder's ``new_tokens`` as the load test will ask)."""
    targets = _targets(target)[:1]
    name, url = targets[0][0], targets[0][1]
    served, _ = _one_by_one(url, _sent(targets, data, new_tokens)[name][0], count, warmups, REQUEST_TIMEOUT_S)
    ok = [r for r in served if "error" not in r]
    if not ok:
        raise UsageProblem(f"{name} answered none of {count + warmups} requests sent one at a time")
    return _median_ms(ok)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _sent(targets: list[tuple[str, str, dict, object]], data, new_tokens: int | None = None
          ) -> dict[str, tuple[list[dict], str]]:
    """What each target is sent, and what that is in words: a served model the examples of its task
    (its Requests: ``data`` read as %evaluate reads it, by default its task's samples); a URL texts
    (``data``'s, by default hfmagic's sample sentences). A decoder is asked for ``new_tokens`` each
    (default :data:`NEW_TOKENS`); a URL too when ``new_tokens`` is given."""
    out: dict[str, tuple[list[dict], str]] = {}
    read: dict[int, tuple[list, str]] = {}
    for name, _, _, model in targets:
        if model is None:
            values, source = _texts(data)
        else:
            if id(model) not in read:
                read[id(model)] = model.task_plugin.requests.sent(model, data)
            values, source = read[id(model)]
        if not values:
            raise UsageProblem(f"{source} has no examples to send")
        streams = model is not None and model.task_plugin.requests.STREAMS
        extra = {"max_new_tokens": new_tokens or NEW_TOKENS} if streams or new_tokens else {}
        what = f"{len(values)} {'prompts' if streams else 'examples'} from {source}" + (
            f", {extra['max_new_tokens']} new tokens each" if extra else "")
        out[name] = ([{"inputs": v, **extra} for v in values], what)
    return out


def _texts(data) -> tuple[list[str], str]:
    if data is None:
        from hfmagic.tasks.tokens import SAMPLE_TEXTS

        return list(SAMPLE_TEXTS), "hfmagic's sample sentences"
    from hfmagic.data.tables import texts_of

    return texts_of(data)
