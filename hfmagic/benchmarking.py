"""``benchmark()``: latency, throughput and memory of every variant x backend x batch size x sequence length.

The request is checked in full before anything heavy starts (names, shapes, backends, extras,
the baseline, the input data) and planned as jobs (:mod:`hfmagic.benchplan`). Then, for a model,
its ONNX variants are exported (through the export cache). The sweep runs one job per variant x
backend: by default in a worker process (:mod:`hfmagic.worker`) that loads the variant once and
streams each shape's raw samples back; the figures are computed here from those samples
(:mod:`hfmagic.stats`). A crash, an out-of-memory kill or a hang is reported in its
configuration's row and a fresh worker takes the remaining shapes. Ctrl-C stops the sweep and
returns every finished row. Each row is recorded in the run store as it finishes.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from hfmagic import benchplan, stats
from hfmagic.benchplan import Job
from hfmagic.errors import UsageProblem
from hfmagic.results import Column, Table

LOAD_TIMEOUT_S = 600.0
BUDGET_GRACE_S = 1.0  # how long past --budget a shape in flight may take to report before it is cut
MAX_TEXTS = 256  # real texts sent to a worker (--inputs)

SHORT_SHA = 12  # a row's model_sha: the start of its weights' sha256
ROW_KEYS = ("model", "model_sha", "variant", "backend", "batch_size", "seq_len", "status", "mean_ms", "std_ms", "p50_ms",
            "p90_ms", "p95_ms", "p99_ms", "min_ms", "max_ms", "cv", "runs", "samples_per_s",
            "tokens_per_s", "peak_mem_mb", "startup_s", "load_s", "first_ms", "size_mb", "speedup", "speedup_low",
            "speedup_high", "e2e_p50_ms", "threads", "isolation", "pid", "samples_ms", "e2e_samples_ms")


def _speedup_text(row: dict) -> str | None:
    if row.get("speedup") is None:
        return None
    if row.get("speedup_low") is None:
        return f"{row['speedup']:.2f}x"
    return f"{row['speedup']:.2f}x [{row['speedup_low']:.2f}, {row['speedup_high']:.2f}]"


COLUMNS = [
    Column("variant"), Column("backend"), Column("batch_size", "batch", "d", "right"),
    Column("seq_len", "seq", "d", "right"), Column("p50_ms", "p50 ms", ".2f", "right"),
    Column("p90_ms", "p90 ms", ".2f", "right"), Column("p95_ms", "p95 ms", ".2f", "right"),
    Column("p99_ms", "p99 ms", ".2f", "right"), Column("mean_ms", "mean ms", ".2f", "right"),
    Column("std_ms", "std ms", ".2f", "right"), Column("samples_per_s", "samples/s", ".1f", "right"),
    Column("tokens_per_s", "tokens/s", ".0f", "right"), Column("peak_mem_mb", "peak MB", ".0f", "right"),
    Column("startup_s", "start s", ".2f", "right"), Column("load_s", "load s", ".2f", "right"), Column("first_ms", "first ms", ".1f", "right"),
    Column("size_mb", "size MB", ".1f", "right"), Column("runs", "runs", "d", "right"),
    Column("speedup_text", "speed-up [95% CI]", None, "right"),
    Column("e2e_p50_ms", "e2e p50 ms", ".2f", "right"), Column("status"),
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
    weights_sha256: str | None = None  # the model's (a dashboard refuses to mix two models)

    def table(self) -> Table:
        columns = [c for c in COLUMNS if c.key != "e2e_p50_ms" or any(r["e2e_p50_ms"] for r in self.rows)]
        if len({r.get("model") for r in self.rows}) > 1:
            columns.insert(0, Column("model"))
        shown = [{**r, "speedup_text": _speedup_text(r)} for r in self.rows]
        return Table(shown, columns, title=self.title, notes=list(self.notes))

    def to_pandas(self):
        return Table(self.rows, [Column(k) for k in ROW_KEYS]).to_pandas()

    def to_json(self, **kwargs) -> str:
        import json

        return json.dumps({"title": self.title, "run_id": self.run_id, "params": self.params,
                           "notes": self.notes, "rows": self.rows}, default=str, **kwargs)

    def __str__(self) -> str:
        return str(self.table())

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()


def benchmark(target, variants=None, backends=None, batch_sizes=None, seq_lens=None, threads=None,
              warmup=10, min_runs=10, min_time=1.0, budget=None, baseline=None, inputs=None,
              inputs_source=None, inline=False, callback=None, timeout=None,
              progress=True, force=False) -> BenchmarkResult:
    """Benchmark ``target`` (a model handle or source: torch and the ONNX variants exported for it;
    or a ``Variants``) over variants x backends x batch sizes x sequence lengths.

    ``timeout``: seconds a shape may take before its worker is called hung and killed (default
    180 + 10 x min_time). ``progress``: show a progress bar. ``force``: measure shapes whose
    memory estimate (:func:`hfmagic.benchplan.estimate_memory`) exceeds the memory available,
    which are otherwise refused before anything runs. See the module docstring.
    """
    from hfmagic.config import settings
    from hfmagic.models import check_distinct, load_model
    from hfmagic.variants import Variants

    started = time.time()  # --budget counts from here: an export on the way is part of the sweep
    targets = list(target) if isinstance(target, (list, tuple)) else [target]
    if not targets:
        raise UsageProblem("benchmark needs at least one model or variants object")
    models = [t.model if isinstance(t, Variants) else load_model(t) for t in targets]
    check_distinct(models)
    from hfmagic.variants import own_variants

    targets = [own_variants(m) or t for m, t in zip(models, targets)]  # a baseline's one variant
    several = len(models) > 1
    batch_sizes = benchplan.positive(batch_sizes or settings().batch_sizes, "batch size")
    seq_lens = benchplan.positive(seq_lens or settings().seq_lens, "sequence length")
    for model in models:
        benchplan.check_positions(model, seq_lens)
    threads = benchplan.check_number(threads, "threads", 0) or settings().resolved_threads()
    benchplan.check_number(warmup, "warmup", 0)
    benchplan.check_number(min_runs, "min-runs", 1)
    benchplan.check_number(min_time, "min-time", 0)
    if budget is not None and budget <= 0:
        raise UsageProblem(f"--budget must be a positive number of seconds, got {budget}")
    if timeout is not None and timeout <= 0:
        raise UsageProblem(f"--timeout must be a positive number of seconds, got {timeout}")
    base_model, base_rest = benchplan.split_baseline(baseline, models)
    plans = []  # (model, target, variant names asked for, kinds)
    for model, one in zip(models, targets):
        if model.framework != "transformers":  # its one variant, whatever --variants names
            plans.append((model, one, None, {v.name: v.kind for v in one}))
            continue
        names = benchplan.check_variants(one, variants)
        if isinstance(one, Variants):
            kinds = {v.name: v.kind for v in one.select(names)}
        else:
            from hfmagic.export import DEFAULT_LEVELS

            default = ["torch", *DEFAULT_LEVELS, "int8", *(f"{lv}-int8" for lv in DEFAULT_LEVELS if lv != "fp32")]
            kinds = {n: "torch" if n == "torch" else "onnx" for n in names or default}
        benchplan.check_backends(backends, kinds, bool(names))
        if model is base_model:
            benchplan.check_baseline(base_rest, kinds, backends)
        plans.append((model, one, names, kinds))
    guards, memory_notes = {}, []
    for model, _, _, kinds in plans:
        guards[model.name], notes = benchplan.check_memory(model, batch_sizes, seq_lens, kinds, backends, force)
        memory_notes += [f"{model.name}: {n}" if several else n for n in notes]
    data = benchplan.load_inputs(inputs, inputs_source)
    requests = [None if isinstance(one, Variants) else benchplan.export_request(model, names, data)
                for model, one, names, _ in plans]
    # nothing heavy before this line; now build the variants (through the export cache) and plan
    # the export's bar shows unless asked for quiet (a live dashboard, which takes over the sweep's
    # progress, is never shown with -q)
    shapes = sorted(((b, s) for b in batch_sizes for s in seq_lens), key=lambda bs: (bs[0] * bs[1], bs[0]))
    jobs, unavailable, plan_notes, chosen_sets = [], {}, [], []
    for (model, one, names, _), request in zip(plans, requests):
        vset = one if request is None else _export(model, names, {**request,
                                                                  "progress": progress or callback is not None})
        chosen = vset.select(names) if names else vset
        chosen_sets.append(chosen)
        found, missing, notes = benchplan.plan(chosen, backends, shapes)
        for job in found:
            job.several = several
        jobs += found
        unavailable.update(missing)
        plan_notes += [n for n in notes if n not in plan_notes]
    jobs, base, base_note = benchplan.order_baseline_first(jobs, base_rest, base_model)
    params = {"target": str(models[0].path), "variants": [v.name for v in chosen_sets[0]], "backends": backends,
              "batch_sizes": batch_sizes, "seq_lens": seq_lens, "threads": threads, "warmup": warmup,
              "min_runs": min_runs, "min_time": min_time, "budget": budget, "baseline": baseline,
              "inputs_source": inputs_source or (data.source if data else None), "inline": inline,
              "timeout": timeout, "force": force}
    if several:
        params["targets"] = [str(m.path) for m in models]
        params["variants_by_model"] = {m.name: [v.name for v in c] for m, c in zip(models, chosen_sets)}
    sweep = Sweep(models, jobs, base, params, data, callback, progress, timeout or 180 + 10 * min_time,
                  None if budget is None else started + budget, unavailable)
    sweep.notes += plan_notes + ([base_note] if base_note else []) + memory_notes
    sweep.memory = guards
    from hfmagic.store import default_store

    store = default_store()
    if store is None:
        return sweep.run(None)
    with store.recording("benchmark", params, _provenance(models, chosen_sets, data)) as run:
        result = sweep.run(run)
        result.run_id = run.id
        run.finish("interrupted" if sweep.interrupted else "ok", {"notes": result.notes})
    return result


class Sweep:
    """Runs the jobs in order, turns raw samples into rows, reports progress, records each row."""

    def __init__(self, models, jobs: list[Job], baseline: tuple[str, str, str] | None, params: dict, data,
                 callback: Callable[[dict], None] | None, progress: bool, timeout: float,
                 deadline: float | None, unavailable: dict[str, str]):
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
        self.memory: dict = {}  # model name -> its benchplan.MemoryGuard: names the rows that ran out of memory

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
            from hfmagic.worker import InlineRun, WorkerProcess

            source = (InlineRun if self.params["inline"] else WorkerProcess)(self._job_spec(job, remaining))
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
                if not loaded:
                    return self._fail_all(job, remaining, f"crashed while loading: worker {reason}")
                return self._add(job, remaining.pop(0), {"status": f"crashed: worker {reason}"})
            if message["type"] == "error":  # a GPU provider that did not start is unavailable, not failed
                what = "unavailable" if message.get("unavailable") else "failed to load"
                return self._fail_all(job, remaining, f"{what}: {message['error']}")
            if message["type"] == "ready":
                loaded, startup = True, message["startup_s"]
                self.startups[job.backend] = max(self.startups.get(job.backend, 0.0), startup)
                for key, value in message["threads_used"].items():
                    self.threads_seen.setdefault(key, set()).add(value)
            elif message["type"] == "row":
                shape = remaining.pop(0)
                assert (message["row"]["batch_size"], message["row"]["seq_len"]) == shape, "out of order"
                self._add(job, shape, {**message["row"], "startup_s": startup})

    def _fail_all(self, job: Job, remaining: list, status: str) -> None:
        while remaining:
            self._add(job, remaining.pop(0), {"status": status})

    def _job_spec(self, job: Job, shapes: list) -> dict:
        v, p, model = job.variant, self.params, job.model
        return {
            "variant": {"name": v.name, "path": str(v.path) if v.path else None,
                        "model_path": str(model.path), "task": model.task,
                        "task_origin": _task_origin(model.task),
                        "model_name": model.name, "trust_remote_code": model.trust_remote_code},
            "backend": job.backend, "threads": p["threads"], "warmup": p["warmup"],
            "min_runs": p["min_runs"], "min_time": p["min_time"], "shapes": [list(s) for s in shapes],
            "deadline": self.deadline, "vocab_size": model.config.get("vocab_size", 2),
            "texts": self._texts(model),
        }

    def _texts(self, model) -> list[str] | None:
        """Real texts for the job: --inputs; for a classical baseline, which reads texts end to end,
        its own held-out texts when no --inputs were given."""
        if self.data:
            return self.data.texts[:MAX_TEXTS]
        if model.framework == "sklearn" and model.dataset is not None:
            return [str(t) for t in list(model.dataset["text"])[:MAX_TEXTS]]
        return None

    # -- rows ----------------------------------------------------------------------------------
    def _add(self, job: Job, shape: tuple[int, int], raw: dict) -> None:
        row = self._row(job, shape, raw)
        self.rows[(*job.key, *shape)] = row
        if self.run_record is not None:
            self.run_record.add_row(row)
        self.bar.update(1)
        self.bar.set_postfix_str(f"{job.label} {shape[0]}x{shape[1]}")
        self._event({"type": "row", "row": row})
        self._event({"type": "progress", "done": len(self.rows), "total": self.total,
                     "label": f"{job.label} {shape[0]}x{shape[1]}: {row['status']}"})

    def _row(self, job: Job, shape: tuple[int, int], raw: dict) -> dict:
        batch, seq = shape
        row = dict.fromkeys(ROW_KEYS)
        row.update(model=job.model.name, model_sha=job.model.weights_sha256[:SHORT_SHA],
                   variant=job.variant.name, backend=job.backend, batch_size=batch, seq_len=seq,
                   size_mb=_size_mb(job.variant), threads=self.params["threads"], samples_ms=[],
                   isolation="inline" if self.params["inline"] else "worker", status=raw["status"])
        guard = self.memory.get(job.model.name)
        if guard is not None:
            row["status"] = guard.row_status(raw["status"], batch, seq, job.variant.kind, job.backend)
        for key in ("startup_s", "load_s", "pid", "first_ms", "peak_mem_mb"):
            row[key] = raw.get(key)
        if raw["status"] != "ok":
            return row
        row.update(stats.summarize(raw["samples_ms"], batch, seq), samples_ms=raw["samples_ms"])
        if raw.get("e2e_samples_ms"):
            import numpy as np

            row["e2e_samples_ms"] = raw["e2e_samples_ms"]
            row["e2e_p50_ms"] = float(np.median(raw["e2e_samples_ms"]))
        if not raw.get("peak_mem_exact", True):
            self._note_once("peak_mem_mb is the worker's lifetime peak (ru_maxrss): its per-shape "
                            "reset is not possible on this system")
        if flags := stats.noise(row):
            self.noisy.append(f"{job.label} {batch}x{seq} ({', '.join(flags)})")
        if self.baseline:
            base = self.rows.get((*self.baseline, batch, seq))
            if job.key == self.baseline:
                row.update(speedup=1.0, speedup_low=1.0, speedup_high=1.0)
            elif base and base["status"] == "ok":
                ratio, low, high = stats.speedup(base["samples_ms"], row["samples_ms"])
                row.update(speedup=ratio, speedup_low=low, speedup_high=high)
        return row

    def _event(self, event: dict) -> None:
        if self.callback is not None:
            self.callback(event)

    # -- notes and the result ------------------------------------------------------------------
    def _note_once(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _context_notes(self) -> None:
        from hfmagic.envcard import physical_cores

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
        if self.data is not None:
            self.notes.append(f"inputs: {len(self.data.texts)} real texts from {self.data.source}, tokenized "
                              "(padded/truncated) to each shape; e2e_p50_ms adds the tokenizer to each run")

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
        several = len(self.models) > 1
        skipped = [f"{r['model'] + '/' if several else ''}{r['variant']}/{r['backend']} {r['batch_size']}x{r['seq_len']}"
                   for r in rows if r["status"] == "skipped: budget"]
        if skipped:
            notes.append(f"budget {self.params['budget']:g} s: skipped {len(skipped)} of {len(rows)} "
                         f"configurations: {', '.join(skipped)}")
        if self.interrupted:
            done = sum(r["status"] != "skipped: interrupted" for r in rows)
            notes.append(f"interrupted: {done} of {len(rows)} configurations finished; the rest were not measured")
        base = None
        if self.baseline:
            base = "/".join(self.baseline if several else self.baseline[1:])
        names = ", ".join(m.name for m in self.models)
        title = f"benchmark of {names}" + (f" (speed-up vs {base})" if base else "")
        return BenchmarkResult(rows, notes, title, self.params,
                               baseline=base, model_name=names,
                               weights_sha256=None if several else self.model.weights_sha256)


# -- rows' helpers -------------------------------------------------------------------------------

def _export(model, names: list[str] | None, request: dict):
    """The variants to measure for a model: torch, plus the ONNX ones (through the export cache)."""
    from hfmagic.variants import Variant, Variants

    if names == ["torch"]:
        return Variants(model, [Variant("torch", model, size_bytes=model.weights_bytes)])
    from hfmagic.export import export_onnx

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
    from hfmagic.models import file_sha256

    several = len(models) > 1
    files = {(f"{m.name}/{v.name}" if several else v.name): v.sha256 or file_sha256(v.path)
             for m, chosen in zip(models, chosen_sets) for v in chosen if v.path is not None and v.path.exists()}
    out = {"model": _model_card(models[0]), "files": files, "dataset": data.fingerprint if data else None}
    if several:
        out["models"] = [_model_card(m) for m in models]
    return out


def _task_origin(name: str) -> dict:
    from hfmagic.tasks import origin

    return origin(name)


def _model_card(model) -> dict:
    return {"source": model.source, "path": str(model.path), "revision": model.revision,
            "weights_sha256": model.weights_sha256, "task": model.task, "name": model.name}
