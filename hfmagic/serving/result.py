"""A load test's figures: one rate's row from its requests' times (:func:`figures`; a streamed
answer's TTFT and TPOT too), what the row says (:func:`verdict`), and the result over every
configuration and rate (:class:`LoadTestResult`: the knee, the highest rate inside the SLO, the
accuracy gate beside it, the table, the curves)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hfmagic.core.results import Column, Table
from hfmagic.serving.record import accuracy_note

ACHIEVED_SHARE = 0.95  # achieved under this share of offered: the server (or the generator) did not keep up
LATE_MS = 10.0         # a send this much behind its schedule is late
LATE_SHARE = 0.05      # more than this share of late sends: the generator could not keep to the rate


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
    streamed = [r for r in ok if r.get("tokens")]
    if streamed:
        row.update(token_figures(streamed, span if ok else duration))
    row["status"] = verdict(row, slo_ms)
    return row


def token_figures(streamed: list[dict], span: float) -> dict:
    """A streamed rate's figures, as vLLM's serving benchmark defines them: TTFT (here from the
    intended send time, so the queue counts), TPOT (each request's time after its first token over
    its other tokens), inter-token gaps, and output tokens per second over the rate's span."""
    import numpy as np

    ttft = np.array([(r["tokens"][0] - r["intended"]) * 1000 for r in streamed])
    tpot = np.array([(r["tokens"][-1] - r["tokens"][0]) * 1000 / (len(r["tokens"]) - 1)
                     for r in streamed if len(r["tokens"]) > 1])
    gaps = np.concatenate([np.diff(r["tokens"]) * 1000 for r in streamed]) if streamed else np.array([])
    server = [r["server_ttft_ms"] for r in streamed if r.get("server_ttft_ms") is not None]
    pct = lambda a, q: float(np.percentile(a, q)) if len(a) else None  # noqa: E731
    return {"ttft_p50_ms": pct(ttft, 50), "ttft_p99_ms": pct(ttft, 99), "tpot_p50_ms": pct(tpot, 50),
            "tpot_p99_ms": pct(tpot, 99), "itl_p99_ms": pct(gaps, 99),
            "server_ttft_p50_ms": float(np.median(server)) if server else None,
            "output_tokens": int(sum(len(r["tokens"]) for r in streamed)),
            "output_tps": sum(len(r["tokens"]) for r in streamed) / span if span else None}


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
    judged, what = ("ttft_p99_ms", "TTFT p99") if row.get("ttft_p99_ms") is not None else ("p99_ms", "p99")
    if slo_ms is not None and row[judged] is not None and row[judged] > slo_ms:
        return f"over SLO: {what} {row[judged]:.0f} ms > {slo_ms:.0f} ms"
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
    accuracy: dict = field(default_factory=dict)  # each served configuration's %evaluate verdict, or None
    splits: dict = field(default_factory=dict)  # each configuration's one-at-a-time latency split (latency_split)
    run_id: str | None = None

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
        notes = [f"open loop, {self.arrival} arrivals, {self.duration:g} s per rate; latency from each request's "
                 "intended send time to its answer (a queue shows); server p50: the replica's own median time per "
                 "request (batching wait included), the cross-check of the client's"]
        if any(r.get("ttft_p50_ms") is not None for r in self.rows):  # streamed tokens: vLLM's figures
            at = columns.index(next(c for c in columns if c.key == "server_p50_ms"))
            columns[at:at + 2] = [Column("ttft_p50_ms", "TTFT p50 ms", ".1f", "right"),
                                  Column("ttft_p99_ms", "TTFT p99 ms", ".1f", "right"),
                                  Column("tpot_p50_ms", "TPOT p50 ms", ".1f", "right"),
                                  Column("tpot_p99_ms", "TPOT p99 ms", ".1f", "right"),
                                  Column("output_tps", "output tok/s", ".1f", "right"),
                                  Column("server_ttft_p50_ms", "server TTFT p50 ms", ".1f", "right")]
            notes.append("streamed answers: TTFT from the intended send time to the first token, TPOT each request's "
                         "time after its first token over its other tokens (vLLM's serving benchmark's definitions); "
                         "p50/p99 are the whole answer's; the SLO is judged on TTFT's p99")
        best, knee = self.best(), self.knee()
        for config in best:
            rate = best[config]
            cost = (f"; at {self.price_per_hour:g}/hour: {self.price_per_hour / (rate * 3600) * 1e6:.2f} per million "
                    "requests" if rate and self.price_per_hour else "")
            inside = f"highest rate inside the SLO ({self.slo_ms:.0f} ms p99)" if self.slo_ms else "highest rate ok"
            none = "no rate was inside the SLO" if self.slo_ms else "no rate was ok"
            notes.append(f"{config}: {inside}: {rate:g}/s{cost}" if rate else f"{config}: {none}")
            if knee[config] is not None:
                notes.append(f"{config}: knee at {knee[config]:g}/s")
            if config in self.accuracy:
                notes.append(accuracy_note(config, self.accuracy[config]))
            if self.splits.get(config):
                notes.append(split_note(config, self.splits[config]))
        if any(self.accuracy.values()):  # a verdict to show (unknown ones: their notes say so)
            columns.insert(-1, Column("gate"))
        notes += self.winner()
        return Table(self.rows, columns, title="load test", notes=notes + self.notes)

    def winner(self) -> list[str]:
        """The configuration with the highest rate inside the SLO, marked when it fails %evaluate's
        accuracy gate (then the best one that passes is named too)."""
        best = {c: r for c, r in self.best().items() if r}
        if len(best) < 2 and not any((self.accuracy.get(c) or {}).get("gate") == "fail" for c in best):
            return []
        top = max(best, key=best.get)
        lines = [f"the most requests inside the SLO: {top} at {best[top]:g}/s"]
        verdict = self.accuracy.get(top)
        if verdict and verdict.get("gate") == "fail":
            passing = [c for c in best if (self.accuracy.get(c) or {}).get("gate") in ("pass", "reference")]
            fallback = max(passing, key=best.get) if passing else None
            lines[0] += (f", but it fails the accuracy gate ({verdict['pct_of_reference']:.2f}% of the reference); "
                         + (f"the most that passes: {fallback} at {best[fallback]:g}/s" if fallback
                            else "no configuration that passes stays inside the SLO"))
        elif top in self.accuracy and verdict is None:
            lines[0] += " (its accuracy unknown: no %evaluate of it)"
        return lines

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    def dashboard(self):
        """The curves of p99 against achieved throughput, one per configuration, with the SLO and the
        table (:class:`hfmagic.ui.loadtest.LoadTestView`; a notebook shows it after %loadtest)."""
        from hfmagic.ui.loadtest import LoadTestView

        return LoadTestView(self)

    def __str__(self) -> str:
        return str(self.table())

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()


def split_note(config: str, split: dict) -> str:
    """Where one request's time went, one at a time, in a line of the notes."""
    head = f"{config}: one request at a time, {split['client_ms']:.1f} ms at the client"
    empty = f"the client and loopback HTTP {split['floor_ms']:.1f} ms (an empty aiohttp server's answer here)"
    if split.get("server_ms") is None:
        return f"{head}; {empty}; the server's own share is unknown (its answers carry no server_ms)"
    return (f"{head} = the replica {split['server_ms']:.1f} ms + Ray Serve's proxy and its hop to the replica "
            f"{split['proxy_ms']:.1f} ms + {empty}")
