"""Interleaved rounds, the default order of a sweep: workers kept loaded, every configuration
visited in a fresh random order each round, speed-ups paired by round, until their intervals are
narrow enough (or max-time, or the budget)."""

from __future__ import annotations

import time

from hfmagic.benchmarking.plan import Job
from hfmagic.core import stats
from hfmagic.measure import memory

LOAD_TIMEOUT_S = 600.0
MAX_TIME_FACTOR = 60  # interleaved rounds end after 60 x min-time (--max-time), at least MAX_TIME_MIN_S,
MAX_TIME_MIN_S = 2.0  # even if an interval is still wider than the target
CI_TARGET = 0.03    # ... and as soon as every speed-up's 95% interval is within +-3% of it
SLICE_MIN_S = 0.02  # a slice runs about min-time / 10 seconds, at least this long
BUDGET_GRACE_S = 1.0  # how long past --budget a shape in flight may take to report before it is cut


class Rounds:
    """Interleaved rounds (the default order): every variant x backend keeps its worker, loaded once;
    each round visits every configuration (job x shape) in a fresh random order for a short slice,
    so a load that comes and goes lands on all of them alike. Rounds go on until every speed-up's
    95% interval is within +-``ci_target`` of it (and every configuration has at least min-runs
    runs and min-time seconds), or until max-time or the budget. Workers that would not fit in
    memory together run in groups, the baseline's in each."""

    MIN_ROUNDS = 5

    def __init__(self, sweep):  # the Sweep it measures for
        import numpy as np

        self.sweep, self.p = sweep, sweep.params
        self.rng = np.random.default_rng(0)
        self.samples: dict[tuple, list[float]] = {}
        self.rounds_of: dict[tuple, list[int]] = {}
        self.meta: dict[tuple, dict] = {}   # per configuration: first_ms, peak, load_s, startup_s, pid
        self.failed: dict[tuple, str] = {}
        self.e2e: dict[tuple, list[float]] = {}  # with --inputs: end-to-end samples (tokenizer included)
        self.extra: dict[tuple, dict[str, list]] = {}  # a task's other samples (a generation's TTFT, gaps, ...)
        self.seconds: dict[tuple, float] = {}  # time spent in timed runs, per configuration
        self.sources: dict[int, object] = {}
        self.runs: dict[tuple, int] = {}    # runs per slice, per configuration
        self.round = 0
        self.schedule: list[tuple[int, str]] = []  # (round, configuration) in the order measured

    # -- the plan ------------------------------------------------------------------------------
    def run(self) -> None:
        sweep = self.sweep
        for job in sweep.jobs:
            if job.blocked:
                for shape in job.shapes:
                    sweep.add(job, shape, {"status": job.blocked})
        runnable = [j for j in sweep.jobs if not j.blocked]
        if not runnable:
            return
        groups = self._groups(runnable)
        base_job = runnable[0] if sweep.baseline and runnable[0].key == sweep.baseline else None
        sources = self.sources = {}
        try:
            for number, group in enumerate(groups, 1):
                self._measure(group, sources, f"group {number} of {len(groups)}: " if len(groups) > 1 else "")
                for job in group:  # the baseline's worker stays for the next group
                    if job is not base_job and id(job) in sources:
                        sources.pop(id(job)).close()
        finally:
            for source in sources.values():  # first: nothing below may leave a worker behind
                source.close()
            bar = sweep.bar  # it counted rounds; now the rows, as a sequential sweep's does
            bar.unit = "config"
            bar.set_postfix_str("", refresh=False)
            bar.reset(total=sweep.total)
            bar.update(len(sweep.rows))
            for job in runnable:
                self._rows(job)
        done = self.round
        if done:
            sweep.notes.append(self._note(runnable))
        sweep.schedule = self.schedule

    def _groups(self, jobs: list[Job]) -> list[list[Job]]:
        """Jobs whose workers fit in memory together (estimates of each one's largest shape); the
        first job (the baseline's) is in every group."""

        def need(job):
            guard = self.sweep.memory.get(job.model.name)
            if guard is None or job.variant.kind not in ("torch", "onnx"):
                return 0
            return max(guard.needed(b, s, job.variant.kind) for b, s in job.shapes)

        room = 0.8 * memory.available_memory()
        first, rest = jobs[0], jobs[1:]
        groups, current, used = [], [first], need(first)
        for job in rest:
            if len(current) > 1 and used + need(job) > room:
                groups.append(current)
                current, used = [first], need(first)
            current.append(job)
            used += need(job)
        groups.append(current)
        if len(groups) > 1:
            self.sweep.notes.append(f"memory: the {len(jobs)} workers would not fit together "
                                    f"({room / 1e9:.1f} GB to use), so rounds ran in {len(groups)} groups, "
                                    f"{jobs[0].label} in each")
        return groups

    # -- measuring -----------------------------------------------------------------------------
    def _start(self, job: Job):
        spec = {**self.sweep.job_spec(job, job.shapes), "serve": True}
        return self.sweep.source(spec, share=1 / max(1, len(self.sweep.jobs)))

    def _measure(self, group: list[Job], sources: dict, prefix: str = "") -> None:
        sweep = self.sweep
        live = []
        started = {}
        if sweep.place is not None:  # a node's workers start together there (each is told apart by its own
            started = {id(j): self._start(j) for j in group if id(j) not in sources}  # clock)
        for job in group:
            if id(job) in sources:
                live.append(job)
                continue
            if self._load(job, sources, source=started.get(id(job))):
                live.append(job)
        configs = [(job, shape) for job in live for shape in job.shapes]
        began = time.time()
        deadline = self._deadline(began)  # max-time counts the rounds, not the workers' start
        first, rounds = True, 0
        sweep.bar.unit = "round"  # what moves while rounds go on: rounds, against the stopping rule's estimate
        sweep.bar.reset(total=self.MIN_ROUNDS)
        while configs:
            self.round += 1
            order = self.rng.permutation(len(configs))
            if first:  # each worker meets its shapes smallest first, so each one's peak memory is its own
                order = sorted(order, key=lambda i: (configs[i][1][0] * configs[i][1][1], configs[i][1][1]))
                first = False
            for i in order:
                job, shape = configs[i]
                if (id(job), shape) in self.failed:
                    continue
                if self.sweep.deadline is not None and time.time() > self.sweep.deadline:
                    return  # the budget: the rounds end here, even mid-round
                if id(job) not in sources:  # its worker died at another shape: a fresh one takes the rest
                    rest = [sh for sh in job.shapes if (id(job), sh) not in self.failed]
                    if not self._load(job, sources, rest):
                        continue
                self.schedule.append((self.round, f"{job.label}/{shape[0]}x{shape[1]}"))
                self._slice(job, shape, sources[id(job)])
            rounds += 1
            self._live(configs)
            widths = list(self._widths(configs))
            # max-time ends the rounds between rounds only, so every configuration gets every round
            last = self._done(configs, widths) or time.time() > deadline
            total, left = (rounds, 0.0) if last else self._expected(configs, widths, rounds, began, deadline)
            label = prefix + self._progress_label(widths, left)
            sweep.event({"type": "progress", "done": rounds, "total": total, "label": label, "round": self.round})
            sweep.bar.total = total
            sweep.bar.set_postfix_str(label, refresh=False)
            sweep.bar.update(1)
            if last:
                return

    def _expected(self, configs, widths: list[float], rounds: int, began: float, deadline: float) -> tuple[int, float]:
        """How many rounds the stopping rule will likely take, and the seconds left: at least
        MIN_ROUNDS; enough for each configuration's min-runs and min-time at its pace so far; enough
        for the widest speed-up interval to reach the target (it narrows as one over the square root
        of the rounds); no more than max-time (and the budget) leaves room for."""
        import math

        now = time.time()
        per_round = (now - began) / rounds
        need = self.MIN_ROUNDS
        for job, shape in configs:
            key = (id(job), shape)
            if key in self.failed or not self.samples.get(key):
                continue
            need = max(need, math.ceil(rounds * self.p["min_runs"] / len(self.samples[key])))
            if self.seconds.get(key):
                need = max(need, math.ceil(rounds * self.p["min_time"] / self.seconds[key]))
        finite = [w for w in widths if math.isfinite(w)]
        if finite:
            need = max(need, math.ceil(rounds * (max(finite) / self.p.get("ci_target", CI_TARGET)) ** 2))
        fits = rounds + max(1, math.ceil((deadline - now) / per_round)) if per_round > 0 else need
        total = max(rounds, min(need, fits))
        return total, (total - rounds) * per_round

    def _progress_label(self, widths: list[float], left: float) -> str:
        import math

        finite = [w for w in widths if math.isfinite(w)]
        text = f"round {self.round}, about {left:.0f} s left"
        if finite:
            target = 100 * self.p.get("ci_target", CI_TARGET)
            text += f" (widest speed-up interval +-{max(finite):.1%}, target +-{target:g}%)"
        return text

    def _load(self, job: Job, sources: dict, shapes=None, source=None) -> bool:
        """Start the job's worker (unless ``source`` is it, started already) and wait for it to
        load; on failure its shapes' rows say why."""
        sweep = self.sweep
        shapes = shapes or job.shapes
        sweep.event({"type": "progress", "done": len(sweep.rows), "total": sweep.total,
                      "label": f"loading {job.label}"})
        source = sources[id(job)] = source or self._start(job)
        try:
            message = source.next(max(LOAD_TIMEOUT_S, sweep.timeout))
        except TimeoutError:
            message = {"type": "error", "error": f"loading took over {LOAD_TIMEOUT_S:.0f} s (worker killed)"}
        if message is None:
            lost = getattr(source, "lost", False)
            message = {"type": "error", "error": f"lost: {source.exit_reason()}" if lost else
                       f"crashed while loading: worker {source.exit_reason()}"}
        if message["type"] != "ready":
            what = "unavailable" if message.get("unavailable") else "failed to load"
            for shape in shapes:
                self.failed.setdefault((id(job), shape), message["error"] if message["error"].startswith(("crashed", "lost"))
                                       else f"{what}: {message['error']}")
            sources.pop(id(job)).close()
            return False
        sweep.startups[job.backend] = max(sweep.startups.get(job.backend, 0.0), message["startup_s"])
        sweep.starting_s += message["startup_s"]
        for key, value in message["threads_used"].items():
            sweep.threads_seen.setdefault(key, set()).add(value)
        for shape in shapes:
            meta = self.meta.setdefault((id(job), shape), {})
            meta.setdefault("load_s", message["load_s"])
            meta.setdefault("startup_s", message["startup_s"])
            for key in ("transfer_mb", "transfer_s"):
                if key in message:
                    meta.setdefault(key, message[key])
            meta["pid"] = message["pid"]
        return True

    def _deadline(self, start: float) -> float:
        end = start + (self.p.get("max_time") or max(MAX_TIME_MIN_S, MAX_TIME_FACTOR * self.p["min_time"]))
        if self.sweep.deadline is not None:
            end = min(end, self.sweep.deadline)
        return end

    def _slice(self, job: Job, shape: tuple[int, int], source) -> None:
        key = (id(job), shape)
        runs = self.runs.get(key, max(3, min(self.p["min_runs"], 10)))
        source.send({"cmd": "slice", "shape": list(shape), "runs": runs, "round": self.round})
        wait = self.sweep.timeout
        if self.sweep.deadline is not None:  # the budget bounds the sweep: a slice in flight at its end is cut
            wait = min(wait, max(0.0, self.sweep.deadline - time.time()) + BUDGET_GRACE_S)
        try:
            message = source.next(wait)
        except TimeoutError:
            self.sources.pop(id(job)).close()
            if self.sweep.deadline is not None and time.time() >= self.sweep.deadline:
                if key not in self.samples:
                    self.failed[key] = "skipped: budget"
                return
            self.failed[key] = (f"timeout: no result within {self.sweep.timeout:.0f} s (worker killed; a fresh "
                                "one measures the rest)")
            return
        if message is None:
            if getattr(source, "lost", False):  # its node died: every shape it had left is lost with it
                for other in job.shapes:  # rounds it finished there included: the node's rows go with it
                    self.failed[(id(job), other)] = f"lost: {source.exit_reason()}"
            else:
                self.failed[key] = f"crashed: worker {source.exit_reason()}"
            self.sources.pop(id(job)).close()
            return
        if "error" in message:
            self.failed[key] = message["error"]
            return
        samples = message["samples_ms"]
        if message.get("e2e_samples_ms"):
            self.e2e.setdefault(key, []).extend(message["e2e_samples_ms"])
        self.samples.setdefault(key, []).extend(samples)
        self.rounds_of.setdefault(key, []).extend([self.round] * len(samples))
        for name, values in message.items():
            if name.endswith("_samples_ms") and name not in ("samples_ms", "e2e_samples_ms") and values:
                self.extra.setdefault(key, {}).setdefault(name, []).extend(values)
        wall = message.get("wall_ms") or samples  # a run's time, where a sample is not one (TPOT)
        self.seconds[key] = self.seconds.get(key, 0.0) + sum(wall) / 1000
        meta = self.meta.setdefault(key, {})
        if message.get("first_ms") is not None:
            meta["first_ms"] = message["first_ms"]
        if "peak_mem_mb" in message:  # a shape's first slice in a worker measures its peak memory
            meta["peak_mem_mb"] = message["peak_mem_mb"]
            meta["peak_mem_exact"] = message["peak_mem_exact"]
            meta["peak_mem_after_larger"] = message["peak_mem_after_larger"]
        import numpy as np

        per_run = float(np.median(wall)) / 1000
        slice_s = max(SLICE_MIN_S, self.p["min_time"] / 10)
        self.runs[key] = int(min(1000, max(1, round(slice_s / max(per_run, 1e-6)))))

    def _done(self, configs, widths: list[float]) -> bool:
        """Enough runs and time everywhere, and every speed-up interval (``widths``) within the target."""
        if self.round < self.MIN_ROUNDS:
            return False
        for job, shape in configs:
            key = (id(job), shape)
            if key in self.failed:
                continue
            got = self.samples.get(key, [])
            if len(got) < self.p["min_runs"] or self.seconds.get(key, 0.0) < self.p["min_time"]:
                return False
        return all(w <= self.p.get("ci_target", CI_TARGET) for w in widths)

    def _widths(self, configs):
        """Each configuration's speed-up interval half-width, relative to the speed-up."""
        sweep = self.sweep
        by_key = {(job.key, shape): (id(job), shape) for job, shape in configs}
        for job, shape in configs:
            base = by_key.get((sweep.baseline, shape)) if sweep.baseline else None
            key = (id(job), shape)
            if base is None or base == key or key in self.failed or base in self.failed or \
                    not self.samples.get(key) or not self.samples.get(base):
                continue
            mb = stats.slice_medians(self.samples[base], self.rounds_of[base])
            mr = stats.slice_medians(self.samples[key], self.rounds_of[key])
            found = stats.paired_speedup(mb, mr, stats.disturbed(mb) | stats.disturbed(mr), resamples=400)
            if found["low"] is None:
                yield float("inf")
            else:
                yield (found["high"] - found["low"]) / 2 / found["ratio"]

    # -- rows ----------------------------------------------------------------------------------
    def _live(self, configs) -> None:
        """After each round, a live dashboard gets every configuration's row so far (the baseline's
        first), each replacing the last; the store and the result get the final rows only."""
        sweep = self.sweep
        if sweep.callback is None:
            return
        so_far: dict[tuple, dict] = {}
        for job, shape in sorted(configs, key=lambda c: c[0].key != sweep.baseline):
            raw = self._raw(job, shape)
            if raw is not None:
                so_far[(*job.key, *shape)] = row = sweep.row(job, shape, raw, so_far)
                sweep.event({"type": "row", "row": row})

    def _raw(self, job: Job, shape) -> dict | None:
        """A configuration's measurements so far, as a worker's result; None before its first slice."""
        key = (id(job), shape)
        if not self.samples.get(key):
            return None
        rounds = self.rounds_of[key]
        medians = stats.slice_medians(self.samples[key], rounds)
        return {"status": "ok", "samples_ms": self.samples[key], "sample_rounds": rounds, **self.meta.get(key, {}),
                "e2e_samples_ms": self.e2e.get(key), **self.extra.get(key, {}),
                "rounds": len(medians), "disturbed_rounds": len(stats.disturbed(medians))}

    def _rows(self, job: Job) -> None:
        """The job's rows from the slices it got (the baseline's first: speed-ups need it)."""
        for shape in job.shapes:
            key = (id(job), shape)
            if (*job.key, *shape) in self.sweep.rows:
                continue
            meta = self.meta.get(key, {})
            if self.failed.get(key, "").startswith("lost"):
                raw = {"status": self.failed[key], **meta}
            elif self.samples.get(key):
                raw = self._raw(job, shape)
            elif key in self.failed:
                raw = {"status": self.failed[key], **meta}
            elif self.sweep.deadline is not None and time.time() >= self.sweep.deadline:
                raw = {"status": "skipped: budget", **meta}
            else:
                raw = {"status": "skipped: interrupted", **meta}
            self.sweep.add(job, shape, raw)

    def _note(self, jobs: list[Job]) -> str:
        """How the rounds went: their number, the disturbed ones, whether the fastest held."""
        import numpy as np

        disturbed = set()
        for key, values in self.samples.items():
            disturbed |= stats.disturbed(stats.slice_medians(values, self.rounds_of[key]))
        text = (f"interleaved: {self.round} rounds, each visiting every configuration in a fresh random "
                f"order; speed-ups are paired by round (geometric mean of the per-round ratios of slice "
                f"medians, 95% interval from resampled rounds, disturbed rounds left out); "
                f"{len(disturbed)} of {self.round} rounds had a disturbed slice (over {stats.DISTURBED:g}x its "
                "configuration's best)")
        shapes = sorted({shape for j in jobs for shape in j.shapes})
        blocks = np.array_split(np.arange(1, self.round + 1), 3) if self.round >= 3 else []
        unstable = []
        for shape in shapes:
            winners = set()
            for block in blocks:
                best, name = float("inf"), None
                for job in jobs:
                    key = (id(job), shape)
                    if key not in self.samples:
                        continue
                    medians = stats.slice_medians(self.samples[key], self.rounds_of[key])
                    inside = [m for r, m in medians.items() if r in set(block.tolist())]
                    if inside and float(np.median(inside)) < best:
                        best, name = float(np.median(inside)), job.label
                if name:
                    winners.add(name)
            if len(winners) > 1:
                unstable.append(f"{shape[0]}x{shape[1]} ({' / '.join(sorted(winners))})")
        if blocks:
            text += ("; the fastest configuration was the same in each third of the rounds" if not unstable else
                     f"; the fastest configuration changed between thirds of the rounds at {', '.join(unstable)}")
        return text
