"""``optimize(objective="serve")``: the served configuration with the most requests per second
inside a p99 SLO, among the variants that keep the accuracy.

The search runs as for p50 at batch 1 (build, screen, gate, confirm: :mod:`hfmagic.optimizing.search`),
then serves what it found: the fastest candidates that passed the gate (and fp32 on onnxruntime,
the baseline every served figure is read against), each with one replica and no batching, with
Ray Serve's dynamic batching (up to :data:`MAX_BATCH`, :data:`BATCH_WAIT_MS` ms), and with as many
replicas as this machine's CPUs hold at the search's thread count. Each configuration is
load-tested open-loop (:func:`hfmagic.serving.loadtest.loadtest`) on a ladder of rates, from half
of what its one-request latency says its replicas answer, up by :data:`STEP` until a rate is not
inside the SLO (or :data:`RUNGS` rates); when the first rate is over, halving it (up to three
times) finds one inside. A configuration's one-request capacity is its *served* latency (ten
requests one after another, HTTP and Ray Serve's proxy included), not %benchmark's: a tiny model
answers in a fraction of a millisecond and the proxy adds several. The winner is the most requests/s inside the SLO (ties:
fewer replicas, then no batching); the recipe rebuilds its variant and serves it as it was served.
Every rate's row is kept (``result.loadtest``: the dashboard's curves).
"""

from __future__ import annotations

import os

from hfmagic.serving.loadtest import loadtest, one_at_a_time
from hfmagic.serving.result import LoadTestResult

SERVED = 2          # the fastest passing candidates served, beside fp32
MAX_BATCH = 8       # the dynamic batching tried
BATCH_WAIT_MS = 5.0
STEP = 1.5          # each rung of the rate ladder this much above the last
RUNGS = 6           # rates at most per configuration
DURATION_S = 5.0    # seconds per rate


def configurations(points: list[dict], threads: int) -> list[dict]:
    """What is served: the :data:`SERVED` fastest passing candidates and fp32/onnxruntime, each as
    one replica unbatched, one replica batched, and every CPU's replica (when more than one fits)."""
    passing = sorted((p for p in points if p["passes"] and p["variant"] != "torch"), key=lambda p: p["objective"])
    chosen = passing[:SERVED]
    fp32 = next((p for p in points if (p["variant"], p["backend"]) == ("fp32", "onnxruntime")), None)
    if fp32 is not None and fp32 not in chosen:
        chosen.append(fp32)
    fit = max(1, (os.cpu_count() or 1) // threads)
    shapes = [(1, 1, 0.0), (1, MAX_BATCH, BATCH_WAIT_MS)] + ([(fit, 1, 0.0)] if fit > 1 else [])
    return [{**p, "replicas": r, "max_batch": b, "batch_wait_ms": w, "threads": threads}
            for p in chosen for r, b, w in shapes]


def label(config: dict) -> str:
    return f"{config['variant']}/{config['backend']} r{config['replicas']} b{config['max_batch']}"


def serve_stage(search, result, slo_ms: float, duration: float = DURATION_S, progress: bool = True, data=None):
    """Serve and load-test :func:`configurations` of ``result``'s points; make ``result`` the serving
    search's (its objective, winner, front, recipe and ``loadtest``)."""
    from hfmagic.models.variants import Variants
    from hfmagic.optimizing.recipes import rebuild_recipe
    from hfmagic.serving.api import serve

    tried, rows, notes = [], [], []
    for config in configurations(result.points, search.threads):
        if search.out_of_time(f"serving {label(config)}"):
            break
        variant = search.variants[config["variant"]]
        gate = "reference" if config["variant"] == "torch" else "pass" if config["passes"] else "fail"
        served = serve(Variants(search.model, [variant]), variant=variant.name, replicas=config["replicas"],
                       max_batch=config["max_batch"], batch_wait_ms=config["batch_wait_ms"],
                       backend=config["backend"], threads=config["threads"],
                       name=f"optimize-{label(config)}".replace("/", "-").replace(" ", "-"))
        try:
            single = one_at_a_time(served, data, count=10)  # HTTP and the proxy included: what a user waits
            config["served_ms"] = single
            best, rate, down = None, 0.5 * config["replicas"] * 1000.0 / single, 0
            for _ in range(RUNGS):
                test = loadtest(served, rates=[round(rate, 1)], duration=duration, slo_p99=slo_ms, progress=progress,
                                data=data, timeout=max(2.0, 10 * slo_ms / 1000), split=False,
                                record=False)  # the search's run records the trace
                if test.interrupted:
                    raise KeyboardInterrupt
                rows += [{**r, "config": label(config), "gate": gate} for r in test.rows]
                if test.rows[-1]["status"] == "ok":
                    best, rate = test.rows[-1]["rate"], rate * STEP
                    if down:  # came down to a rate inside: the one above was not
                        break
                elif best is None and down < 3:  # the first rung was over: try lower ones
                    rate, down = rate / 2, down + 1
                else:
                    break
        finally:
            served.stop()
        outcome = f"inside the SLO up to {best:g}/s" if best else "no rate inside the SLO"
        search.step(label(config), "serve", outcome, objective=best, metric=config.get("metric"), pct=config["pct"],
                    reason=None if best else f"p99 over {slo_ms:.0f} ms already at {rows[-1]['rate']:g}/s")
        tried.append({**config, "candidate": label(config), "objective": best or 0.0})
    winner = max(tried, key=lambda c: (c["objective"], -c["replicas"], -c["max_batch"]), default=None)
    if winner is not None and not winner["objective"]:
        winner = None
        notes.append(f"no served configuration stayed inside {slo_ms:.0f} ms p99 at any rate tried")
    front = []
    for p in sorted(tried, key=lambda p: (-p["objective"], -p["pct"])):
        if not front or p["pct"] > front[-1]["pct"]:
            front.append(p)
    result.objective, result.winner, result.front, result.points = "serve", winner, front, tried
    result.loadtest = LoadTestResult(rows, slo_ms, duration, "poisson", accuracy={
        c["candidate"]: {"gate": "pass" if c["passes"] else "fail", "pct_of_reference": c["pct"],
                         "metric": search.metric_name, "value": c.get("metric"), "accuracy_from": "the search's gate"}
        for c in tried})
    if winner:
        recipe = rebuild_recipe(search, winner)
        recipe["serve"] = {k: winner[k] for k in ("replicas", "max_batch", "batch_wait_ms", "threads", "backend")}
        recipe["serve_line"] = (f"%serve VARIANTS --variant {winner['variant']} --backend {winner['backend']} "
                                f"--replicas {winner['replicas']} --max-batch {winner['max_batch']}"
                                + (f" --batch-wait-ms {winner['batch_wait_ms']:g}" if winner["max_batch"] > 1 else "")
                                + f" --threads {winner['threads']}")
        result.recipe = recipe
        base = next((c for c in tried if (c["variant"], c["backend"], c["replicas"], c["max_batch"])
                     == ("fp32", "onnxruntime", 1, 1)), None)
        ratio = f"; {winner['objective'] / base['objective']:.2f}x fp32/onnxruntime r1 b1's {base['objective']:g}/s" \
            if base and base["objective"] else ""
        result.outcome = (f"winner {winner['candidate']}: {winner['objective']:g} requests/s inside {slo_ms:.0f} ms p99, "
                          f"{winner['pct']:.1f}% of the reference{ratio}")
    else:
        result.recipe, result.outcome = None, notes[-1] if notes else "no configuration was served"
    result.notes += notes + [
        f"served: each configuration on Ray Serve on this machine, load-tested open-loop (Poisson) {duration:g} s per "
        f"rate, from half its one-request capacity up by {STEP:g}x until a rate left the SLO; the load generator "
        "shares this machine's cores with the server"]
    return result
