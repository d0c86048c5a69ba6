"""One sweep: the jobs run in order (or in interleaved :class:`~hfmagic.benchmarking.rounds.Rounds`),
each worker's raw samples turned into rows, progress reported, each row recorded as it finishes."""

from __future__ import annotations

import os
import sys
import time
from typing import Callable

from hfmagic.benchmarking.plan import Job
from hfmagic.benchmarking.result import SHORT_SHA, BenchmarkResult, row_keys
from hfmagic.benchmarking.rounds import BUDGET_GRACE_S, LOAD_TIMEOUT_S, Rounds
from hfmagic.cluster.actors import RayWorker
from hfmagic.cluster.connect import local_fields
from hfmagic.core import stats
from hfmagic.core.backend import get_backend
from hfmagic.core.backend import origin as backend_origin
from hfmagic.core.envcard import physical_cores
from hfmagic.core.records import BenchmarkRow
from hfmagic.core.shapes import shape_of, shape_text
from hfmagic.measure.spec import variant_spec
from hfmagic.measure.worker import InlineRun, InlineServer, WorkerProcess

MAX_TEXTS = 256  # real texts sent to a worker (--inputs)


class Sweep:
    """Runs the jobs in order, turns raw samples into rows, reports progress, records each row."""

    def __init__(self, models, jobs: list[Job], baseline: tuple[str, str, str] | None, params: dict, data,
                 callback: Callable[[dict], None] | None, progress: bool, timeout: float,
                 deadline: float | None, unavailable: dict[str, str], place=None, cluster=None):
        self.models = models if isinstance(models, list) else [models]
        self.model = self.models[0]
        self.jobs, self.baseline, self.params = jobs, baseline, params
        self.data, self.callback, self.progress, self.timeout = data, callback, progress, timeout
        self.rows: dict[tuple, dict] = {}
        self.notes: list[str] = []
        self.noisy: list[str] = []
        self.threads_seen: dict[str, set] = {}
        self.interrupted = False
        self.total = sum(len(j.shapes) for j in jobs)
        self.deadline = deadline
        self.startups: dict[str, float] = {}  # backend -> its slowest worker start (--budget takes the max)
        self.began: float | None = None  # when the sweep itself started (a budget's note says where it went)
        self.starting_s = 0.0  # the workers' starts, summed: spawn, imports, loading the variant
        self.unavailable = unavailable  # backend -> why it cannot run here (its rows say so too)
        self.run_record = None
        self.schedule: list = []
        self.memory: dict = {}  # model name -> its measure.memory.MemoryGuard: names the rows that ran out of memory
        self.place, self.cluster = place, cluster  # the node the workers run on (a Ray cluster's); None: here

        self.where = place.row_fields() if place is not None else local_fields()

    @property
    def label(self) -> str:
        """What tells this sweep's notes from its siblings' in one result: its node, its new tokens."""
        new = self.params.get("new_tokens")
        return " ".join(filter(None, [self.place.label if self.place is not None else "",
                                      f"{new} new tokens" if new is not None else ""]))

    def source(self, spec: dict, share: float = 1.0):
        """A worker for ``spec``: a process here, this process (--inline), or a Ray actor on the
        sweep's node (``share``: its part of the node's CPUs the sweep's workers take)."""

        if self.place is not None:
            return RayWorker(self.cluster, self.place, spec, share)
        if self.params["inline"]:
            return InlineServer(spec) if spec.get("serve") else InlineRun(spec)
        return WorkerProcess(spec)

    # -- the sweep -----------------------------------------------------------------------------
    def run(self, run_record) -> BenchmarkResult:
        from tqdm.auto import tqdm

        self.run_record = run_record
        self.began = time.time()
        self._context_notes()
        for backend, why in self.unavailable.items():
            if self.progress:  # said before measuring starts; the rows and notes say it again
                tqdm.write(f"hfmagic: {backend} {why}", file=sys.stderr)
        self.bar = tqdm(total=self.total, desc=f"benchmark {', '.join(m.name for m in self.models)}", unit="config",
                        delay=1.5, disable=not self.progress, file=sys.stderr)
        try:
            if self.params.get("order", "interleaved") == "interleaved":
                Rounds(self).run()
            else:
                for job in self.jobs:
                    self._run_job(job)
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            self.bar.close()
        return self.result()

    def _run_job(self, job: Job) -> None:
        if job.blocked:
            for shape in job.shapes:
                self.add(job, shape, {"status": job.blocked})
            return
        remaining = list(job.shapes)
        while remaining:
            # a new worker first starts and loads: as long as the slowest start seen in this sweep
            start = 0.0 if self.params["inline"] else max(self.startups.values(), default=0.0)
            if self.deadline is not None and time.time() + start + self.params["min_time"] > self.deadline:
                for shape in remaining:
                    self.add(job, shape, {"status": "skipped: budget"})
                return
            self.event({"type": "progress", "done": len(self.rows), "total": self.total,
                         "label": f"loading {job.label}"})
            source = self.source(self.job_spec(job, remaining))
            try:
                self._consume(job, remaining, source)
            finally:
                source.close()

    def _consume(self, job: Job, remaining: list, source) -> None:
        """Turn a job's messages into rows; on a crash or a hang, fail the shape in flight and
        return (the caller starts a fresh worker for what remains)."""
        loaded = False
        while remaining:
            wait = self.timeout if loaded else max(LOAD_TIMEOUT_S, self.timeout)
            if self.deadline is not None:  # the budget bounds the sweep: a shape in flight at its end is cut
                wait = min(wait, max(0.0, self.deadline - time.time()) + BUDGET_GRACE_S)
            try:
                message = source.next(wait)
            except TimeoutError:
                source.close()
                if self.deadline is not None and time.time() >= self.deadline:
                    return self._fail_all(job, remaining, "skipped: budget")
                if not loaded:
                    return self._fail_all(job, remaining, f"failed: loading took over {wait:.0f} s (worker killed)")
                return self.add(job, remaining.pop(0), {"status": f"timeout: no result within {self.timeout:.0f} "
                                                                   "s (worker killed; a fresh one measures the rest)"})
            if message is None:
                reason = source.exit_reason()
                if getattr(source, "lost", False):  # its node died: so did every shape left for it
                    return self._fail_all(job, remaining, f"lost: {reason}")
                if not loaded:
                    return self._fail_all(job, remaining, f"crashed while loading: worker {reason}")
                return self.add(job, remaining.pop(0), {"status": f"crashed: worker {reason}"})
            if message["type"] == "error":  # a GPU provider that did not start is unavailable, not failed
                what = "unavailable" if message.get("unavailable") else "failed to load"
                return self._fail_all(job, remaining, f"{what}: {message['error']}")
            if message["type"] == "ready":
                loaded, startup = True, message["startup_s"]
                transfer = {k: message[k] for k in ("transfer_mb", "transfer_s") if k in message}
                self.startups[job.backend] = max(self.startups.get(job.backend, 0.0), startup)
                self.starting_s += startup
                for key, value in message["threads_used"].items():
                    self.threads_seen.setdefault(key, set()).add(value)
            elif message["type"] == "row":
                shape = remaining.pop(0)
                assert shape_of(message["row"])[:2] == tuple(shape), "out of order"
                self.add(job, shape, {**message["row"], "startup_s": startup, **transfer})

    def _budget_spent(self) -> str:
        """Where the budget went: what ran before the sweep (exports, validation, the checks), the
        workers' starts and the measuring, so a user sees which to cut or to give more time."""
        before = self.began - (self.deadline - self.params["budget"])
        measuring = max(0.0, time.time() - self.began - self.starting_s)
        return (f"it went to {before:.1f} s before the sweep (exports, validation, checks), "
                f"{self.starting_s:.1f} s starting workers (each imports its runtime and loads its variant) and "
                f"{measuring:.1f} s measuring")

    def _fail_all(self, job: Job, remaining: list, status: str) -> None:
        while remaining:
            self.add(job, remaining.pop(0), {"status": status})

    def job_spec(self, job: Job, shapes: list) -> dict:
        v, p, model = job.variant, self.params, job.model
        return {
            "variant": variant_spec(v),
            "backend": job.backend, "backend_origin": backend_origin(job.backend), "threads": p["threads"],
            "warmup": p["warmup"],
            "min_runs": p["min_runs"], "min_time": p["min_time"], "shapes": [list(s) for s in shapes],
            "deadline": self.deadline, "vocab_size": model.config.get("vocab_size", 2),
            "texts": self._texts(model), "new_tokens": p.get("new_tokens"), "chat_template": p.get("chat_template"),
        }

    def _texts(self, model) -> list[str] | None:
        """Real texts for the job: --inputs; for a classical baseline, which reads texts end to end,
        its own held-out texts when no --inputs were given."""
        if self.data:
            return model.task_plugin.inputs.payload(self.data, MAX_TEXTS)
        return model.kind.own_examples(model, MAX_TEXTS)

    # -- rows ----------------------------------------------------------------------------------
    def add(self, job: Job, shape: tuple[int, int], raw: dict) -> None:
        row = self.row(job, shape, raw)
        self.rows[(*job.key, *shape)] = row
        if row["status"] == "ok":
            if not raw.get("peak_mem_exact", True):
                self._note_once("peak_mem_mb is the worker's lifetime peak (ru_maxrss): its per-shape "
                                "reset is not possible on this system")
            if raw.get("peak_mem_after_larger"):
                self._note_once("peak_mem_mb is an upper bound where a restarted worker met a shape after a "
                                "larger one: memory its allocator kept from that shape counts too")
            if flags := stats.noise(row):
                self.noisy.append(f"{job.label} {shape_text(row)} ({', '.join(flags)})")
        if self.run_record is not None:
            self.run_record.add_row(row)
        self.bar.update(1)
        self.bar.set_postfix_str(f"{job.label} {shape_text(row)}")
        self.event({"type": "row", "row": row})
        self.event({"type": "progress", "done": len(self.rows), "total": self.total,
                     "label": f"{job.label} {shape_text(row)}: {row['status']}"})

    def row(self, job: Job, shape: tuple[int, int], raw: dict, rows: dict | None = None) -> BenchmarkRow:
        """The row of ``raw`` (a worker's result); speed-ups against the baseline's row in ``rows``
        (the sweep's finished rows unless given)."""
        batch, seq = shape
        task = job.model.task_plugin
        row = BenchmarkRow.from_dict(dict.fromkeys(row_keys()))  # every task's figures: None until measured
        row.update({task.inputs.AXIS.key: seq, "new_tokens": self.params.get("new_tokens")})
        row.update(model=job.model.name, model_sha=job.model.weights_sha256[:SHORT_SHA],
                   variant=job.variant.name, backend=job.backend, batch_size=batch,
                   size_mb=_size_mb(job.variant), threads=self.params["threads"], samples_ms=[],
                   isolation="inline" if self.params["inline"] else "ray actor" if self.place else "worker",
                   status=raw["status"], **self.where)
        guard = self.memory.get(job.model.name)
        if guard is not None:
            row["status"] = guard.row_status(raw["status"], batch, seq, job.variant.kind, job.backend)
        for key in ("startup_s", "load_s", "pid", "first_ms", "peak_mem_mb", "sample_rounds", "rounds",
                    "disturbed_rounds", "transfer_mb", "transfer_s"):
            row[key] = raw.get(key)
        if raw["status"] != "ok":
            return row
        row.update(stats.summarize(raw["samples_ms"], batch), samples_ms=raw["samples_ms"])
        row.update(stats.two_modes(raw["samples_ms"]) or {})  # a run at one speed or another: both reported
        row.update(task.measurement.throughput(row["samples_per_s"], seq))
        if self.params.get("new_tokens") is not None:  # a generation's, a transcription's
            raw = {**raw, "new_tokens": self.params.get("new_tokens")}
        row.update(task.measurement.row_figures(raw, batch, seq))
        if raw.get("e2e_samples_ms"):
            import numpy as np

            row["e2e_samples_ms"] = raw["e2e_samples_ms"]
            row["e2e_p50_ms"] = float(np.median(raw["e2e_samples_ms"]))
        if self.baseline:
            base = (self.rows if rows is None else rows).get((*self.baseline, batch, seq))
            if job.key == self.baseline:
                row.update(speedup=1.0, speedup_low=1.0, speedup_high=1.0)
            elif base and base["status"] == "ok":
                row.update(stats.speedup_of(base, row))
        return row

    def event(self, event: dict) -> None:
        if self.callback is not None:
            self.callback(event)

    # -- notes and the result ------------------------------------------------------------------
    def _note_once(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _context_notes(self) -> None:
        threads, cores = self.params["threads"], physical_cores()
        where = ("this kernel process (--inline): it includes everything else the kernel holds"
                 if self.params["inline"] else
                 "its worker process (one per variant x backend): the runtime, that variant and that shape's work")
        settings = dict.fromkeys(t for j in self.jobs if (t := get_backend(j.backend).THREADS))
        self.notes.append(f"threads: {threads} for every backend ({', '.join(settings)}); inter-op 1"
                          + (" (torch's is left as the kernel has it)" if self.params["inline"] else ""))
        self.notes.append(f"peak_mem_mb: peak resident memory while the shape ran, of {where}")
        if threads > cores:
            self.notes.append(f"threads oversubscribed: {threads} threads on {cores} physical cores; "
                              f"latencies suffer (use --threads {cores})")
        if os.environ.get("OMP_NUM_THREADS") not in (None, str(threads)):
            self.notes.append(f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} differs from the "
                              f"{threads} threads applied; some libraries follow it")
        if hasattr(os, "getloadavg") and os.getloadavg()[0] >= (os.cpu_count() or 1):
            self.notes.append(f"the machine was busy when the sweep started (1-minute load average "
                              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs): other processes "
                              "compete for the cores, so latencies may be inflated")
        for kind in {id(j.model.kind): j.model.kind for j in self.jobs if j.model.kind.NOTE}.values():
            models = sorted({j.model.name for j in self.jobs if j.model.kind is kind})  # a classical baseline's rows
            self.notes.append(f"{', '.join(models)}: {kind.NOTE}")
        if self.data is not None:
            self.notes.append(self.model.task_plugin.inputs.note(self.data))

    def result(self) -> BenchmarkResult:
        rows = []
        for job in self.jobs:
            for shape in job.shapes:
                key = (*job.key, *shape)
                if key not in self.rows:  # only after Ctrl-C
                    self.rows[key] = self.row(job, shape, {"status": "skipped: interrupted"})
                    if self.run_record is not None:
                        self.run_record.add_row(self.rows[key])
                rows.append(self.rows[key])
        notes = list(self.notes)
        disagree = {k: sorted(v) for k, v in self.threads_seen.items() if v != {self.params["threads"]}}
        if disagree:
            notes.append(f"threads disagree with the {self.params['threads']} asked for: {disagree}")
        if self.noisy:
            notes.append("noisy timings (CV > 10% or slowest > 4x fastest): " + "; ".join(self.noisy))
        untrusted = [f"{r['variant']}/{r['backend']} {shape_text(r)}" for r in rows
                     if r.get("speedup_trust") is False]
        if untrusted:
            notes.append(f"speed-ups not trustworthy (fewer than {stats.MIN_CLEAN} clean paired rounds; give the "
                         f"rounds more --max-time): {', '.join(untrusted)}")
        several = len(self.models) > 1
        notes += [n for r in rows if (n := stats.modes_note(f"{r['model'] + '/' if several else ''}{r['variant']}/"
                                                            f"{r['backend']} {shape_text(r)}", r))]
        skipped = [f"{r['model'] + '/' if several else ''}{r['variant']}/{r['backend']} {shape_text(r)}"
                   for r in rows if r["status"] == "skipped: budget"]
        if skipped:
            notes.append(f"budget {self.params['budget']:g} s: skipped {len(skipped)} of {len(rows)} "
                         f"configurations: {', '.join(skipped)}; {self._budget_spent()}")
        if any(r.get("e2e_p50_ms") is not None for r in rows):
            notes.append(self.model.task_plugin.measurement.e2e_note())
        if self.interrupted:
            done = sum(r["status"] != "skipped: interrupted" for r in rows)
            notes.append(f"interrupted: {done} of {len(rows)} configurations finished; the rest were not measured")
        base = (self.params.get("baseline_used") or {}).get("key")
        names = ", ".join(m.name for m in self.models)
        title = f"benchmark of {names}" + (f" (speed-up vs {base})" if base else "")
        return BenchmarkResult(rows, notes, title, self.params, task=self.model.task, interrupted=self.interrupted,
                               baseline=base, model_name=names, schedule=self.schedule,
                               weights_sha256=None if several else self.model.weights_sha256)


def _size_mb(variant) -> float | None:
    """The variant's file size (the PyTorch weights for torch; None for a file never built)."""
    if variant.size_bytes is not None:
        return variant.size_bytes / 1e6
    if variant.kind == "torch":
        return variant.model.weights_bytes / 1e6
    path = variant.path
    return path.stat().st_size / 1e6 if path is not None and path.exists() else None
