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
import re
import resource
import threading
import time
from dataclasses import dataclass, field

from hfmagic.core.errors import UsageProblem
from hfmagic.core.results import Column, Table

ACHIEVED_SHARE = 0.95  # achieved under this share of offered: the server (or the generator) did not keep up
LATE_MS = 10.0         # a send this much behind its schedule is late
LATE_SHARE = 0.05      # more than this share of late sends: the generator could not keep to the rate
REQUEST_TIMEOUT_S = 30.0


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
            body = await response.json(content_type=None) if response.status == 200 else await response.text()
            done = clock()
            if response.status != 200:
                return {"intended": intended, "sent": sent, "done": done, "error": f"HTTP {response.status}"}
            return {"intended": intended, "sent": sent, "done": done, "server_ms": body.get("server_ms"),
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


def figures(results: list[dict], rate: float, duration: float, slo_ms: float | None, cpu_s: float,
            wall_s: float) -> dict:
    """One rate's row from its requests (each with its intended, sent and done times)."""
    import numpy as np

    ok = [r for r in results if "error" not in r]
    errors: dict[str, int] = {}
    for r in results:
        if "error" in r:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    latency = np.array([(r["done"] - r["intended"]) * 1000 for r in ok])
    late = np.array([(r["sent"] - r["intended"]) * 1000 for r in results])
    span = (max(r["done"] for r in ok) - ok[0]["start"]) if ok else float("nan")
    server = [r["server_ms"] for r in ok if r.get("server_ms") is not None]
    batches = [b for r in ok for b in (r.get("batch_sizes") or [])]
    row = {"rate": rate, "sent": len(results), "ok": len(ok), "offered_rps": len(results) / duration,
           "achieved_rps": len(ok) / max(span, duration) if ok else 0.0,
           "errors": sum(errors.values()), "error_kinds": errors,
           "p50_ms": float(np.percentile(latency, 50)) if ok else None,
           "p90_ms": float(np.percentile(latency, 90)) if ok else None,
           "p99_ms": float(np.percentile(latency, 99)) if ok else None,
           "max_ms": float(latency.max()) if ok else None,
           "server_p50_ms": float(np.median(server)) if server else None,
           "mean_batch": float(np.mean(batches)) if batches else None, "max_batch_seen": max(batches, default=None),
           "late_p99_ms": float(np.percentile(late, 99)) if len(late) else None,
           "late_share": float(np.mean(late > LATE_MS)) if len(late) else 0.0,
           "generator_cpu": cpu_s / wall_s if wall_s else None}
    row["status"] = verdict(row, slo_ms)
    return row


def verdict(row: dict, slo_ms: float | None) -> str:
    """What a rate's row says: ok, or why its figures are not the server's, or what broke."""
    if row["late_share"] > LATE_SHARE:
        return (f"generator behind: {row['late_share']:.0%} of sends over {LATE_MS:g} ms late (p99 "
                f"{row['late_p99_ms']:.0f} ms); this rate is beyond what it can send here")
    if row["errors"]:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(row["error_kinds"].items()))
        return f"errors: {kinds}"
    if row["achieved_rps"] < ACHIEVED_SHARE * row["offered_rps"]:
        return "saturated: achieved under 95% of offered"
    if slo_ms is not None and row["p99_ms"] is not None and row["p99_ms"] > slo_ms:
        return f"over SLO: p99 {row['p99_ms']:.0f} ms > {slo_ms:.0f} ms"
    return "ok"


@dataclass
class LoadTestResult:
    """Rows per configuration and rate, the knee and the highest rate inside the SLO of each."""

    rows: list[dict]
    slo_ms: float | None
    duration: float
    arrival: str
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False
    price_per_hour: float | None = None

    def best(self) -> dict[str, float | None]:
        """Each configuration's highest offered rate whose row is ok (inside the SLO, no errors,
        achieved what was offered, the generator on schedule)."""
        out: dict[str, float | None] = {}
        for r in self.rows:
            out.setdefault(r["config"], None)
            if r["status"] == "ok" and (out[r["config"]] is None or r["rate"] > out[r["config"]]):
                out[r["config"]] = r["rate"]
        return out

    def knee(self) -> dict[str, float | None]:
        """Each configuration's first rate (lowest first) whose row is not ok."""
        out: dict[str, float | None] = {}
        for r in sorted(self.rows, key=lambda r: r["rate"]):
            out.setdefault(r["config"], None)
            if r["status"] != "ok" and out[r["config"]] is None:
                out[r["config"]] = r["rate"]
        return out

    def table(self) -> Table:
        columns = [Column("config"), Column("rate", "rate /s", "g", "right"),
                   Column("offered_rps", "offered /s", ".1f", "right"),
                   Column("achieved_rps", "achieved /s", ".1f", "right"),
                   Column("p50_ms", "p50 ms", ".1f", "right"), Column("p90_ms", "p90 ms", ".1f", "right"),
                   Column("p99_ms", "p99 ms", ".1f", "right"), Column("max_ms", "max ms", ".1f", "right"),
                   Column("server_p50_ms", "server p50 ms", ".1f", "right"),
                   Column("mean_batch", "mean batch", ".2f", "right"), Column("errors", "errors", "d", "right"),
                   Column("late_p99_ms", "send late p99 ms", ".1f", "right"), Column("status")]
        best, knee = self.best(), self.knee()
        notes = [f"open loop, {self.arrival} arrivals, {self.duration:g} s per rate; latency from each request's "
                 "intended send time to its answer (a queue shows); server p50: the replica's own median time per "
                 "request (batching wait included), the cross-check of the client's"]
        for config in best:
            rate = best[config]
            cost = (f"; at {self.price_per_hour:g}/hour: {self.price_per_hour / (rate * 3600) * 1e6:.2f} per million "
                    "requests" if rate and self.price_per_hour else "")
            inside = f"highest rate inside the SLO ({self.slo_ms:.0f} ms p99)" if self.slo_ms else "highest rate ok"
            none = "no rate was inside the SLO" if self.slo_ms else "no rate was ok"
            notes.append(f"{config}: {inside}: {rate:g}/s{cost}" if rate else f"{config}: {none}")
            if knee[config] is not None:
                notes.append(f"{config}: knee at {knee[config]:g}/s")
        return Table(self.rows, columns, title="load test", notes=notes + self.notes)

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    def __str__(self) -> str:
        return str(self.table())

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()


def _targets(target) -> list[tuple[str, str, dict]]:
    """(name, url, config) of each target: a served configuration or a URL."""
    from hfmagic.serving.api import Served

    out = []
    for t in target if isinstance(target, (list, tuple)) else [target]:
        if isinstance(t, Served):
            if t.stopped:
                raise UsageProblem(f"{t.name} was stopped; serve it again before load-testing it")
            out.append((t.name, t.url, t.config()))
        elif isinstance(t, str) and re.match(r"https?://[^/\s]+", t):
            out.append((t, t, {"config": t}))
        else:
            raise UsageProblem(f"load-test a served handle (from %serve) or a URL such as http://127.0.0.1:8000/x; "
                               f"got {t!r}")
    return out


def loadtest(target, rates=(5, 10, 20, 40), duration: float = 30.0, slo_p99=None, data=None,
             arrival: str = "poisson", timeout: float = REQUEST_TIMEOUT_S, price_per_hour: float | None = None,
             seed: int = 0, progress: bool = True, callback=None) -> LoadTestResult:
    """Load-test ``target`` (a :class:`~hfmagic.serving.api.Served`, a URL, or a list of them) at
    each of ``rates`` requests/s for ``duration`` seconds, open-loop (see the module docstring).
    ``slo_p99``: the p99 latency budget (``"100ms"``); ``data``: the texts sent (what %evaluate's
    --data takes; default hfmagic's sample sentences); ``price_per_hour``: the machine's price,
    for the cost per million requests at the highest rate inside the SLO. ``callback``: called with
    ``{"type": "progress", "done", "total", "label"}`` as each rate starts (a bar shows unless
    ``progress`` is False)."""
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
    texts, source = _texts(data)
    payloads = [{"inputs": t} for t in texts]
    result = LoadTestResult([], slo_ms, duration, arrival, price_per_hour=price_per_hour)
    result.notes.append(f"requests: {len(texts)} texts from {source}, one per request, in turn")
    stop = threading.Event()
    from tqdm.auto import tqdm

    total = len(targets) * len(rates)
    bar = tqdm(total=total, desc="loadtest", unit="rate", disable=not progress, leave=False)
    for name, url, config in targets:
        for rate in sorted(rates):
            label = f"{name} at {rate:g}/s"
            bar.set_postfix_str(label)
            if callback is not None:
                callback({"type": "progress", "done": len(result.rows), "total": total, "label": label})
            times = schedule(rate, duration, arrival, seed)
            cpu0, wall0 = _cpu_s(), time.perf_counter()
            answers, interrupted = _run_in_thread(lambda: _rate(url, payloads, times, timeout, stop), stop)
            if answers:
                row = figures(answers, rate, duration, slo_ms, _cpu_s() - cpu0, time.perf_counter() - wall0)
                if interrupted:
                    row["status"] = "interrupted: the rate was cut short (its figures cover what was sent)"
                result.rows.append({**config, **row})
            bar.update(1)
            if interrupted:
                bar.close()
                result.interrupted = True
                result.notes.append("interrupted (Ctrl-C): every rate before it finished is kept")
                return result
    bar.close()
    cpus = [r["generator_cpu"] for r in result.rows if r.get("generator_cpu") is not None]
    if cpus:
        result.notes.append(f"the generator's own CPU: up to {max(cpus):.0%} of one core (it shares this machine's "
                            "cores with the server)")
    return result


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _texts(data) -> tuple[list[str], str]:
    if data is None:
        from hfmagic.tasks.tokens import SAMPLE_TEXTS

        return list(SAMPLE_TEXTS), "hfmagic's sample sentences"
    from hfmagic.data.tables import load_data

    read = load_data(data, require_labels=False)
    if not read.texts:
        raise UsageProblem(f"{read.source} has no texts to send")
    return list(read.texts), read.source
