"""``benchmark()``: latency, throughput and memory of every variant x backend x batch size x sequence length.

The request is checked in full before anything heavy starts (names, shapes, backends, extras,
the baseline, the input data) and planned as jobs (:mod:`hfmagic.benchmarking.plan`). Then, for a model,
its ONNX variants are exported (through the export cache). The sweep runs one job per variant x
backend: by default in a worker process (:mod:`hfmagic.measure.worker`) that loads the variant once and
streams each shape's raw samples back; the figures are computed here from those samples
(:mod:`hfmagic.core.stats`). A crash, an out-of-memory kill or a hang is reported in its
configuration's row and a fresh worker takes the remaining shapes. Ctrl-C stops the sweep and
returns every finished row. Each row is recorded in the run store as it finishes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from hfmagic.benchmarking import plan as benchplan
from hfmagic.core import stats
from hfmagic.benchmarking.plan import Job
from hfmagic.core.errors import UsageProblem
from hfmagic.core.listargs import BACKENDS, VARIANTS, list_arguments
from hfmagic.core.results import Column, Table
from hfmagic.core.shapes import shape_of, shape_text
from hfmagic.measure.memory import check_memory
from hfmagic.core.backend import origin as backend_origin
from hfmagic.tasks import origin

LOAD_TIMEOUT_S = 600.0
MAX_TIME_FACTOR = 60  # interleaved rounds end after 60 x min-time (--max-time), at least MAX_TIME_MIN_S,
MAX_TIME_MIN_S = 2.0  # even if an interval is still wider than the target
CI_TARGET = 0.03    # ... and as soon as every speed-up's 95% interval is within +-3% of it
SLICE_MIN_S = 0.02  # a slice runs about min-time / 10 seconds, at least this long
BUDGET_GRACE_S = 1.0  # how long past --budget a shape in flight may take to report before it is cut
MAX_TEXTS = 256  # real texts sent to a worker (--inputs)

SHORT_SHA = 12  # a row's model_sha: the start of its weights' sha256
ROW_KEYS = ("model", "model_sha", "variant", "backend", "node", "batch_size", "seq_len", "image_size", "audio_seconds",
            "status", "mean_ms", "std_ms", "p50_ms",
            "p90_ms", "p95_ms", "p99_ms", "min_ms", "max_ms", "cv", "runs", "samples_per_s",
            "tokens_per_s", "peak_mem_mb", "startup_s", "load_s", "first_ms", "size_mb", "speedup", "speedup_low",
            "speedup_high", "e2e_p50_ms", "threads", "isolation", "pid", "rounds", "disturbed_rounds", "speedup_rounds",
            "speedup_trust", "host", "hardware", "node_id", "transfer_mb", "transfer_s", "samples_ms", "sample_rounds",
            "e2e_samples_ms")


def row_keys() -> tuple[str, ...]:
    """Every key a benchmark row has: the shared ones, then each registered task's own (None on
    other tasks' rows; a generation's TTFT and TPOT)."""
    from hfmagic.tasks import get_task, names

    extra = [k for n in names() for k in get_task(n).measurement.ROW_KEYS if k not in ROW_KEYS]
    return ROW_KEYS + tuple(dict.fromkeys(extra))



COLUMNS = [
    Column("variant"), Column("backend"), Column("batch_size", "batch", "d", "right"),
    Column("seq_len", "seq", "d", "right"), Column("p50_ms", "p50 ms", ".2f", "right"),
    Column("e2e_p50_ms", "e2e p50 ms", ".2f", "right"),  # beside the model's own p50, titled by the task
    Column("p90_ms", "p90 ms", ".2f", "right"), Column("p95_ms", "p95 ms", ".2f", "right"),
    Column("p99_ms", "p99 ms", ".2f", "right"), Column("mean_ms", "mean ms", ".2f", "right"),
    Column("std_ms", "std ms", ".2f", "right"), Column("samples_per_s", "samples/s", ".1f", "right"),
    Column("tokens_per_s", "tokens/s", ".0f", "right"), Column("peak_mem_mb", "peak MB", ".0f", "right"),
    Column("startup_s", "start s", ".2f", "right"), Column("load_s", "load s", ".2f", "right"), Column("first_ms", "first ms", ".1f", "right"),
    Column("size_mb", "size MB", ".1f", "right"), Column("runs", "runs", "d", "right"),
    Column("speedup_text", "speed-up [95% CI]", None, "right"), Column("status"),
]


@dataclass
class BenchmarkResult:
    """The rows of a sweep (one per configuration, raw samples kept) and what to know about them."""

    rows: list[dict]
    notes: list[str]
    title: str
    params: dict = field(default_factory=dict)
    run_id: str | None = None
    baseline: str | None = None  # "variant/backend" the speed-ups are against
    model_name: str | None = None
    weights_sha256: str | None = None  # the model's; None when several models are compared
    schedule: list = field(default_factory=list)  # interleaved: (round, configuration) as measured
    task: str | None = None  # the models' task: its table's columns
    interrupted: bool = False  # Ctrl-C stopped it: the rows not measured say so

    def table(self) -> Table:
        from hfmagic.tasks import get_task

        task = get_task(self.task or "text-classification")
        e2e = Column("e2e_p50_ms", f"e2e p50 ms (+{task.inputs.PREPROCESSOR})", ".2f", "right")
        columns = [e2e if c.key == "e2e_p50_ms" else c for c in COLUMNS
                   if c.key != "e2e_p50_ms" or any(r["e2e_p50_ms"] for r in self.rows)]
        columns = task.measurement.columns(columns)
        if len({r.get("node") for r in self.rows}) > 1:  # --on each: which kind of node measured it
            columns.insert(0, Column("node"))
        if len({r.get("model") for r in self.rows}) > 1:
            columns.insert(0, Column("model"))
        shown = [{**r, "speedup_text": stats.speedup_text(r)} for r in self.rows]
        return Table(shown, columns, title=self.title, notes=list(self.notes))

    def to_pandas(self):
        keys = [k for k in row_keys() if any(r.get(k) is not None for r in self.rows) or k in ROW_KEYS]
        return Table(self.rows, [Column(k) for k in keys]).to_pandas()

    def to_json(self, **kwargs) -> str:
        import json

        return json.dumps({"title": self.title, "run_id": self.run_id, "params": self.params,
                           "notes": self.notes, "rows": self.rows}, default=str, **kwargs)

    def __str__(self) -> str:
        return str(self.table())

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()


@list_arguments(variants=VARIANTS, backends=BACKENDS, batch_sizes=(int, "batch size"),
                seq_lens=(int, "sequence length"), prompt_lens=(int, "prompt length"),
                image_sizes=(int, "image size"), audio_seconds=(int, "audio length"))
def benchmark(target, variants=None, backends=None, batch_sizes=None, seq_lens=None, image_sizes=None,
              audio_seconds=None, threads=None,
              warmup=10, min_runs=10, min_time=1.0, budget=None, baseline=None, inputs=None,
              inputs_source=None, inline=False, callback=None, timeout=None,
              progress=True, force=False, order="interleaved", max_time=None, ci_target=CI_TARGET,
              new_tokens=None, prompt_lens=None, cluster=None, on=None) -> BenchmarkResult:
    """Benchmark ``target`` (a model handle or source: torch and the ONNX variants exported for it;
    or a ``Variants``) over variants x backends x batch sizes x the task's sizes: ``seq_lens``
    (tokens; text models), ``image_sizes`` (pixels per side; image models, default the image
    processor's size) or ``audio_seconds`` (speech models, default 5).

    ``timeout``: seconds a shape may take before its worker is called hung and killed (default
    180 + 10 x min_time). ``progress``: show a progress bar. ``order``: ``interleaved`` (rounds that
    visit every configuration in a fresh random order, speed-ups paired by round; see
    :class:`Rounds`) or ``sequential`` (one configuration after another). ``max_time``: seconds the
    rounds may take (default 60 x min_time, at least 2); ``ci_target``: they end once every speed-up's 95% interval is
    within +-ci_target of it (0.03). ``force``: measure shapes whose
    memory estimate (:func:`hfmagic.benchmarking.plan.estimate_memory`) exceeds the memory available,
    which are otherwise refused before anything runs. ``new_tokens``: text-generation models
    generate this many tokens per run (default 64; ``seq_lens`` are then the prompts' lengths, and
    ``prompt_lens`` is another name for them). ``cluster``: a Ray cluster's address (default
    ``%config HFMagic.cluster``; ``auto``: the one started on this machine): every worker runs there
    as a Ray actor, on the node ``on`` picks (``GPU:1``, ``xeon:1``, ``accelerator_type:H100``;
    default the head node), or once on every kind of node (``on="each"``), side by side
    (:mod:`hfmagic.cluster.connect`). See the module docstring.
    """
    if prompt_lens is not None:
        if seq_lens is not None:
            raise UsageProblem("give prompt_lens or seq_lens, not both: they are the same axis")
        seq_lens = prompt_lens
    from hfmagic.core.config import settings
    from hfmagic.models.handle import check_distinct
    from hfmagic.models.variants import Variants, model_of

    started = time.time()  # --budget counts from here: an export on the way is part of the sweep
    targets = list(target) if isinstance(target, (list, tuple)) else [target]
    if not targets:
        raise UsageProblem("benchmark needs at least one model or variants object")
    models = [model_of(t) for t in targets]
    check_distinct(models)
    from hfmagic.models.variants import own_variants

    targets = [own_variants(m) or t for m, t in zip(models, targets)]  # a baseline's one variant
    several = len(models) > 1
    batch_sizes = benchplan.positive(batch_sizes or settings().batch_sizes, "batch size")
    new_tokens = benchplan.check_new_tokens(models, new_tokens)
    axis, sizes = benchplan.check_sizes(models, {"seq_lens": seq_lens, "image_sizes": image_sizes,
                                                 "audio_seconds": audio_seconds}, new_tokens)
    threads = benchplan.check_number(threads, "threads", 0) or settings().resolved_threads()
    benchplan.check_number(warmup, "warmup", 0)
    benchplan.check_number(min_runs, "min-runs", 1)
    benchplan.check_number(min_time, "min-time", 0)
    if budget is not None and budget <= 0:
        raise UsageProblem(f"--budget must be a positive number of seconds, got {budget}")
    if timeout is not None and timeout <= 0:
        raise UsageProblem(f"--timeout must be a positive number of seconds, got {timeout}")
    if order not in ("interleaved", "sequential"):
        raise UsageProblem(f"--order must be interleaved or sequential, got {order!r}")
    if max_time is not None and max_time <= 0:
        raise UsageProblem(f"--max-time must be a positive number of seconds, got {max_time}")
    if not 0 < ci_target < 1:
        raise UsageProblem(f"--ci-target must be a fraction between 0 and 1 (0.03 is +-3%), got {ci_target}")
    from hfmagic.cluster import connect as clusters

    address = clusters.resolve(cluster)
    if on is not None and not address:
        raise UsageProblem("--on places the workers on a Ray cluster's nodes; give --cluster ADDRESS too "
                           "(or %config HFMagic.cluster)")
    if address and inline:
        raise UsageProblem("--inline measures in this process; on a cluster the workers run on its nodes: "
                           "leave out one of --inline and --cluster")
    if on is not None and on != "each":
        clusters.parse_on(on)  # a malformed --on is refused before anything runs
    base_model, base_rest = benchplan.split_baseline(baseline, models)
    plans = []  # (model, target, variant names asked for, kinds)
    for model, one in zip(models, targets):
        if model.kind.RUNTIME:  # one way to run (a classical baseline): its one variant, whatever --variants names
            plans.append((model, one, None, {v.name: v.kind for v in one}))
            continue
        names = benchplan.check_variants(one, variants, model)
        if isinstance(one, Variants):
            kinds = {v.name: v.kind for v in one.select(names)}
        else:
            default = model.task_plugin.export.default_variants(model)
            kinds = {n: "torch" if n == "torch" else "onnx" for n in names or default}
        benchplan.check_backends(backends, kinds, bool(names), here=not address)
        if model is base_model:
            benchplan.check_baseline(base_rest, kinds, backends)
        plans.append((model, one, names, kinds))
    guards, memory_notes = {}, []
    for model, _, _, kinds in plans if not address else ():  # a node's memory is not this machine's
        guards[model.name], notes = check_memory(model, batch_sizes, sizes[model.name], kinds, backends,
                                                           force)
        memory_notes += [f"{model.name}: {n}" if several else n for n in notes]
    data = benchplan.load_inputs(models[0], inputs, inputs_source)
    places, conn, dropped = [None], None, []
    if address:  # the cluster is reached, and its nodes probed, before the variants are built
        conn = clusters.connect(address)
        places = conn.places(on, threads)
        dropped = conn.left_out_for(on)  # nodes it would have used, whose probe failed: said, not skipped over
    requests = [None if isinstance(one, Variants) else benchplan.export_request(model, names, data)
                for model, one, names, _ in plans]
    # nothing heavy before this line; now build the variants (through the export cache) and plan
    # the export's bar shows unless asked for quiet (a live dashboard, which takes over the sweep's
    # progress, is never shown with -q)
    jobs, unavailable, plan_notes, chosen_sets = [], {}, [], []
    for (model, one, names, _), request in zip(plans, requests):
        shapes = sorted(((b, s) for b in batch_sizes for s in sizes[model.name]), key=lambda bs: (bs[0] * bs[1], bs[0]))
        vset = one if request is None else _export(model, names, {**request,
                                                                  "progress": progress or callback is not None})
        chosen = vset.select(names) if names else vset
        chosen_sets.append(chosen)
        found, missing, notes = benchplan.plan(chosen, backends, shapes, here=conn is None)
        for job in found:
            job.several = several
        jobs += found
        unavailable.update(missing)
        plan_notes += [n for n in notes if n not in plan_notes]
    jobs, base, base_note = benchplan.order_baseline_first(jobs, base_rest, base_model)
    params = {"target": str(models[0].path), "variants": [v.name for v in chosen_sets[0]], "backends": backends,
              "batch_sizes": batch_sizes, "threads": threads, "warmup": warmup,
              "min_runs": min_runs, "min_time": min_time, "budget": budget, "baseline": baseline,
              "inputs_source": inputs_source or (data.source if data else None), "inline": inline,
              "timeout": timeout, "force": force, "order": order, "max_time": max_time, "ci_target": ci_target,
              "new_tokens": new_tokens, "cluster": address, "on": on}
    if base:  # the baseline as resolved: what the run list and compare read the speed-ups against
        owner = next(m for m in models if m.name == base[0])
        params["baseline_used"] = {"key": "/".join(base if several else base[1:]), "model": owner.name,
                                   "weights_sha256": owner.weights_sha256, "variant": base[1], "backend": base[2]}
    distinct = {tuple(v) for v in sizes.values()}  # the sizes swept; None: each model's own default
    params[axis.argument] = list(distinct.pop()) if len(distinct) == 1 else None
    if several:
        params["targets"] = [str(m.path) for m in models]
        params["variants_by_model"] = {m.name: [v.name for v in c] for m, c in zip(models, chosen_sets)}
    sweeps = []
    for place in places:  # one sweep per node (--on each: per kind of node), one after another
        sweep = Sweep(models, jobs, base, params, data, callback, progress, timeout or 180 + 10 * min_time,
                      None if budget is None else started + budget, unavailable, place=place, cluster=conn)
        sweep.notes += plan_notes + ([base_note] if base_note else []) + memory_notes
        sweep.memory = guards
        sweeps.append(sweep)
    for place in clusters.left_out_places(dropped) if on == "each" else ():  # its kind's rows say why
        why = f"skipped: node left out: {place.node.left_out_because}"
        sweeps.append(Sweep(models, [dataclasses.replace(j, blocked=why) for j in jobs], base, params, data, callback,
                            False, 0, None, unavailable, place=place, cluster=conn))
    provenance = _provenance(models, chosen_sets, data)
    if conn is not None:  # each node's environment card, as that node gave it
        provenance["nodes"] = {p.label: {"node_id": p.node.id, **p.node.card} for p in places}
        if dropped:
            provenance["nodes_left_out"] = {n.id[:12]: {"node_id": n.id, "host": n.host, "resources": n.custom,
                                                        "why": n.left_out_because} for n in dropped}
    from hfmagic.store.db import default_store

    store = default_store()
    with store.recording("benchmark", params, provenance) if store else contextlib.nullcontext() as run:
        result = _run_sweeps(sweeps, run)
        if conn is not None:
            result.notes.append(clusters.sweep_note(places, result.rows))
        if dropped:
            result.notes.append(f"cluster: {clusters.left_out_text(dropped)}"
                                + ("; its rows say so" if on == "each" else ""))
        if run is not None:
            result.run_id = run.id
            run.finish("interrupted" if result.interrupted else "ok", {"notes": result.notes})
    return result


def _run_sweeps(sweeps: list["Sweep"], run) -> BenchmarkResult:
    """Run each place's sweep in turn (after a Ctrl-C, the places not reached say so in their rows):
    one result of every row. A note every sweep gave once; a place's own notes name it."""
    results = []
    for sweep in sweeps:
        if results and results[-1].interrupted:
            sweep.run_record, sweep.interrupted = run, True
            results.append(sweep._result())
        else:
            results.append(sweep.run(run))
    if len(results) == 1:
        return results[0]
    first = results[0]
    shared = [n for n in first.notes if all(n in r.notes for r in results)]
    own = [f"{sweep.place.label}: {n}" for sweep, r in zip(sweeps, results) for n in r.notes if n not in shared]
    first.rows = [row for r in results for row in r.rows]
    first.notes = shared + own
    first.interrupted = any(r.interrupted for r in results)
    return first


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
        self.unavailable = unavailable  # backend -> why it cannot run here (its rows say so too)
        self.run_record = None
        self.schedule: list = []
        self.memory: dict = {}  # model name -> its measure.memory.MemoryGuard: names the rows that ran out of memory
        self.place, self.cluster = place, cluster  # the node the workers run on (a Ray cluster's); None: here
        from hfmagic.cluster.connect import local_fields

        self.where = place.row_fields() if place is not None else local_fields()

    def source(self, spec: dict, share: float = 1.0):
        """A worker for ``spec``: a process here, this process (--inline), or a Ray actor on the
        sweep's node (``share``: its part of the node's CPUs the sweep's workers take)."""
        from hfmagic.measure.worker import InlineRun, InlineServer, WorkerProcess

        if self.place is not None:
            from hfmagic.cluster.connect import RayWorker

            return RayWorker(self.cluster, self.place, spec, share)
        if self.params["inline"]:
            return InlineServer(spec) if spec.get("serve") else InlineRun(spec)
        return WorkerProcess(spec)

    # -- the sweep -----------------------------------------------------------------------------
    def run(self, run_record) -> BenchmarkResult:
        from tqdm.auto import tqdm

        self.run_record = run_record
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
        return self._result()

    def _run_job(self, job: Job) -> None:
        if job.blocked:
            for shape in job.shapes:
                self._add(job, shape, {"status": job.blocked})
            return
        remaining = list(job.shapes)
        while remaining:
            # a new worker first starts and loads: as long as the slowest start seen in this sweep
            start = 0.0 if self.params["inline"] else max(self.startups.values(), default=0.0)
            if self.deadline is not None and time.time() + start + self.params["min_time"] > self.deadline:
                for shape in remaining:
                    self._add(job, shape, {"status": "skipped: budget"})
                return
            self._event({"type": "progress", "done": len(self.rows), "total": self.total,
                         "label": f"loading {job.label}"})
            source = self.source(self._job_spec(job, remaining))
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
                return self._add(job, remaining.pop(0), {"status": f"timeout: no result within {self.timeout:.0f} "
                                                                   "s (worker killed; a fresh one measures the rest)"})
            if message is None:
                reason = source.exit_reason()
                if getattr(source, "lost", False):  # its node died: so did every shape left for it
                    return self._fail_all(job, remaining, f"lost: {reason}")
                if not loaded:
                    return self._fail_all(job, remaining, f"crashed while loading: worker {reason}")
                return self._add(job, remaining.pop(0), {"status": f"crashed: worker {reason}"})
            if message["type"] == "error":  # a GPU provider that did not start is unavailable, not failed
                what = "unavailable" if message.get("unavailable") else "failed to load"
                return self._fail_all(job, remaining, f"{what}: {message['error']}")
            if message["type"] == "ready":
                loaded, startup = True, message["startup_s"]
                transfer = {k: message[k] for k in ("transfer_mb", "transfer_s") if k in message}
                self.startups[job.backend] = max(self.startups.get(job.backend, 0.0), startup)
                for key, value in message["threads_used"].items():
                    self.threads_seen.setdefault(key, set()).add(value)
            elif message["type"] == "row":
                shape = remaining.pop(0)
                assert shape_of(message["row"]) == tuple(shape), "out of order"
                self._add(job, shape, {**message["row"], "startup_s": startup, **transfer})

    def _fail_all(self, job: Job, remaining: list, status: str) -> None:
        while remaining:
            self._add(job, remaining.pop(0), {"status": status})

    def _job_spec(self, job: Job, shapes: list) -> dict:
        v, p, model = job.variant, self.params, job.model
        return {
            "variant": {"name": v.name, "path": str(v.path) if v.path else None,
                        "model_path": str(model.path), "task": model.task,
                        "task_origin": origin(model.task),
                        "model_name": model.name, "trust_remote_code": model.trust_remote_code},
            "backend": job.backend, "backend_origin": backend_origin(job.backend), "threads": p["threads"],
            "warmup": p["warmup"],
            "min_runs": p["min_runs"], "min_time": p["min_time"], "shapes": [list(s) for s in shapes],
            "deadline": self.deadline, "vocab_size": model.config.get("vocab_size", 2),
            "texts": self._texts(model), "new_tokens": p.get("new_tokens"),
        }

    def _texts(self, model) -> list[str] | None:
        """Real texts for the job: --inputs; for a classical baseline, which reads texts end to end,
        its own held-out texts when no --inputs were given."""
        if self.data:
            return model.task_plugin.inputs.payload(self.data, MAX_TEXTS)
        return model.kind.own_examples(model, MAX_TEXTS)

    # -- rows ----------------------------------------------------------------------------------
    def _add(self, job: Job, shape: tuple[int, int], raw: dict) -> None:
        row = self._row(job, shape, raw)
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
        self._event({"type": "row", "row": row})
        self._event({"type": "progress", "done": len(self.rows), "total": self.total,
                     "label": f"{job.label} {shape_text(row)}: {row['status']}"})

    def _row(self, job: Job, shape: tuple[int, int], raw: dict, rows: dict | None = None) -> dict:
        """The row of ``raw`` (a worker's result); speed-ups against the baseline's row in ``rows``
        (the sweep's finished rows unless given)."""
        batch, seq = shape
        task = job.model.task_plugin
        row = dict.fromkeys(row_keys())
        row.update({task.inputs.AXIS.key: seq})
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

    def _event(self, event: dict) -> None:
        if self.callback is not None:
            self.callback(event)

    # -- notes and the result ------------------------------------------------------------------
    def _note_once(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _context_notes(self) -> None:
        from hfmagic.core.envcard import physical_cores

        threads, cores = self.params["threads"], physical_cores()
        where = ("this kernel process (--inline): it includes everything else the kernel holds"
                 if self.params["inline"] else
                 "its worker process (one per variant x backend): the runtime, that variant and that shape's work")
        self.notes.append(f"threads: {threads} for every backend (torch.set_num_threads, onnxruntime "
                          "intra_op_num_threads, OpenVINO INFERENCE_NUM_THREADS); inter-op 1"
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

    def _result(self) -> BenchmarkResult:
        rows = []
        for job in self.jobs:
            for shape in job.shapes:
                key = (*job.key, *shape)
                if key not in self.rows:  # only after Ctrl-C
                    self.rows[key] = self._row(job, shape, {"status": "skipped: interrupted"})
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
        skipped = [f"{r['model'] + '/' if several else ''}{r['variant']}/{r['backend']} {shape_text(r)}"
                   for r in rows if r["status"] == "skipped: budget"]
        if skipped:
            notes.append(f"budget {self.params['budget']:g} s: skipped {len(skipped)} of {len(rows)} "
                         f"configurations: {', '.join(skipped)}")
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


class Rounds:
    """Interleaved rounds (the default order): every variant x backend keeps its worker, loaded once;
    each round visits every configuration (job x shape) in a fresh random order for a short slice,
    so a load that comes and goes lands on all of them alike. Rounds go on until every speed-up's
    95% interval is within +-``ci_target`` of it (and every configuration has at least min-runs
    runs and min-time seconds), or until max-time or the budget. Workers that would not fit in
    memory together run in groups, the baseline's in each."""

    MIN_ROUNDS = 5

    def __init__(self, sweep: "Sweep"):
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
                    sweep._add(job, shape, {"status": job.blocked})
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
        from hfmagic.measure.memory import available_memory

        def need(job):
            guard = self.sweep.memory.get(job.model.name)
            if guard is None or job.variant.kind not in ("torch", "onnx"):
                return 0
            return max(guard.needed(b, s, job.variant.kind) for b, s in job.shapes)

        room = 0.8 * available_memory()
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
        spec = {**self.sweep._job_spec(job, job.shapes), "serve": True}
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
            sweep._event({"type": "progress", "done": rounds, "total": total, "label": label})
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
        sweep._event({"type": "progress", "done": len(sweep.rows), "total": sweep.total,
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
                so_far[(*job.key, *shape)] = row = sweep._row(job, shape, raw, so_far)
                sweep._event({"type": "row", "row": row})

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
            self.sweep._add(job, shape, raw)

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


# -- rows' helpers -------------------------------------------------------------------------------

def _export(model, names: list[str] | None, request: dict):
    """The variants to measure for a model: torch, plus the ONNX ones (through the export cache)."""
    from hfmagic.models.variants import Variant, Variants

    if names == ["torch"]:
        return Variants(model, [Variant("torch", model, size_bytes=model.weights_bytes)])
    from hfmagic.export.api import export_onnx

    return export_onnx(model, **request)


def _size_mb(variant) -> float | None:
    """The variant's file size (the PyTorch weights for torch; None for a file never built)."""
    if variant.size_bytes is not None:
        return variant.size_bytes / 1e6
    if variant.kind == "torch":
        return variant.model.weights_bytes / 1e6
    path = variant.path
    return path.stat().st_size / 1e6 if path is not None and path.exists() else None


def _provenance(models, chosen_sets, data) -> dict:
    """The models, the files measured (their sha256) and the input data's fingerprint. With several
    models, ``models`` lists each and ``files`` keys name the model (``model/variant``)."""
    from hfmagic.core.hashing import file_sha256

    several = len(models) > 1
    files = {(f"{m.name}/{v.name}" if several else v.name): v.sha256 or file_sha256(v.path)
             for m, chosen in zip(models, chosen_sets) for v in chosen if v.path is not None and v.path.exists()}
    out = {"model": _model_card(models[0]), "files": files, "dataset": data.fingerprint if data else None}
    if several:
        out["models"] = [_model_card(m) for m in models]
    return out


def _model_card(model) -> dict:
    return {"source": model.source, "path": str(model.path), "revision": model.revision,
            "weights_sha256": model.weights_sha256, "task": model.task, "name": model.name}
