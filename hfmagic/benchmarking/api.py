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
import time

from hfmagic.benchmarking import plan as benchplan
from hfmagic.benchmarking.options import BenchmarkOptions
from hfmagic.benchmarking.result import BenchmarkResult
from hfmagic.benchmarking.sweep import Sweep
from hfmagic.cluster import connect as clusters
from hfmagic.core.config import settings
from hfmagic.core.errors import UsageProblem
from hfmagic.core.hashing import file_sha256
from hfmagic.core.listargs import BACKENDS, VARIANTS, list_arguments
from hfmagic.core.records import takes
from hfmagic.export.api import export_all, kind_of
from hfmagic.measure.memory import check_memory
from hfmagic.models.handle import check_distinct
from hfmagic.models.variants import Variant, Variants, model_of, own_variants
from hfmagic.store.db import default_store


@list_arguments(variants=VARIANTS, backends=BACKENDS, batch_sizes=(int, "batch size"),
                seq_lens=(int, "sequence length"), prompt_lens=(int, "prompt length"),
                image_sizes=(int, "image size"), audio_seconds=(int, "audio length"),
                new_tokens=(int, "new-token count"))
@takes(BenchmarkOptions)
def benchmark(target, options: BenchmarkOptions) -> BenchmarkResult:
    """Benchmark ``target`` (a model handle or source: torch and the ONNX variants exported for it;
    or a ``Variants``; or a list of them, compared as one result) over variants x backends x batch
    sizes x the task's sizes: ``seq_lens`` (tokens; text models), ``image_sizes`` (pixels per side;
    image models, default the image processor's size) or ``audio_seconds`` (speech models, default 5).

    The options (below, :class:`~hfmagic.benchmarking.options.BenchmarkOptions`) are keyword
    arguments. Interleaved rounds (:class:`~hfmagic.benchmarking.rounds.Rounds`) end once every
    speed-up's 95% interval is within +-ci_target of it, or after max_time; a shape whose memory
    estimate (:func:`hfmagic.measure.memory.estimate_memory`) exceeds the memory available is
    refused before anything runs unless ``force``. On a Ray cluster (``cluster``) every worker runs
    as a Ray actor on the node ``on`` picks, or once on every kind of node (``on="each"``), side by
    side (:mod:`hfmagic.cluster.actors`). See the module docstring.
    """
    o = options  # resolved below, in place: the store keeps them as the sweep used them
    if o.prompt_lens is not None:
        if o.seq_lens is not None:
            raise UsageProblem("give prompt_lens or seq_lens, not both: they are the same axis")
        o.seq_lens = o.prompt_lens

    started = time.time()  # --budget counts from here: an export on the way is part of the sweep
    targets = list(target) if isinstance(target, (list, tuple)) else [target]
    if not targets:
        raise UsageProblem("benchmark needs at least one model or variants object")
    models = [model_of(t) for t in targets]
    check_distinct(models)

    targets = [own_variants(m) or t for m, t in zip(models, targets)]  # a baseline's one variant
    several = len(models) > 1
    o.batch_sizes = benchplan.positive(o.batch_sizes or settings().batch_sizes, "batch size")
    new_tokens = benchplan.check_new_tokens(models, o.new_tokens)  # [None] where the task does not generate
    o.new_tokens = new_tokens[0] if len(new_tokens) == 1 else new_tokens
    axis, sizes = benchplan.check_sizes(models, {"seq_lens": o.seq_lens, "image_sizes": o.image_sizes,
                                                 "audio_seconds": o.audio_seconds}, new_tokens[-1])
    chat_notes = [models[0].task_plugin.inputs.chat_note(m, sizes[m.name]) for m in models] if o.chat_template else []
    o.threads = benchplan.check_number(o.threads, "threads", 0) or settings().resolved_threads()
    benchplan.check_number(o.warmup, "warmup", 0)
    benchplan.check_number(o.min_runs, "min-runs", 1)
    benchplan.check_number(o.min_time, "min-time", 0)
    if o.budget is not None and o.budget <= 0:
        raise UsageProblem(f"--budget must be a positive number of seconds, got {o.budget}")
    if o.timeout is not None and o.timeout <= 0:
        raise UsageProblem(f"--timeout must be a positive number of seconds, got {o.timeout}")
    if o.order not in ("interleaved", "sequential"):
        raise UsageProblem(f"--order must be interleaved or sequential, got {o.order!r}")
    if o.max_time is not None and o.max_time <= 0:
        raise UsageProblem(f"--max-time must be a positive number of seconds, got {o.max_time}")
    if not 0 < o.ci_target < 1:
        raise UsageProblem(f"--ci-target must be a fraction between 0 and 1 (0.03 is +-3%), got {o.ci_target}")

    address = clusters.resolve(o.cluster)
    if o.on is not None and not address:
        raise UsageProblem("--on places the workers on a Ray cluster's nodes; give --cluster ADDRESS too "
                           "(or %config HFMagic.cluster)")
    if address and o.inline:
        raise UsageProblem("--inline measures in this process; on a cluster the workers run on its nodes: "
                           "leave out one of --inline and --cluster")
    if o.on is not None and o.on != "each":
        clusters.parse_on(o.on)  # a malformed --on is refused before anything runs
    base_model, base_rest = benchplan.split_baseline(o.baseline, models)
    plans = []  # (model, target, variant names asked for, kinds)
    for model, one in zip(models, targets):
        if model.kind.RUNTIME:  # one way to run (a classical baseline): its one variant, whatever --variants names
            plans.append((model, one, None, {v.name: v.kind for v in one}))
            continue
        names = benchplan.check_variants(one, o.variants, model)
        if isinstance(one, Variants):
            kinds = {v.name: v.kind for v in one.select(names)}
        else:
            default = model.task_plugin.export.default_variants(model)
            kinds = {n: kind_of(n) for n in names or default}
        benchplan.check_backends(o.backends, kinds, bool(names), here=not address)
        if model is base_model:
            benchplan.check_baseline(base_rest, kinds, o.backends)
        plans.append((model, one, names, kinds))
    guards, model_notes = {}, []
    for model, _, _, kinds in plans if not address else ():  # a node's memory is not this machine's
        guards[model.name], notes = check_memory(model, o.batch_sizes, sizes[model.name], kinds, o.backends,
                                                           o.force)
        model_notes += [f"{model.name}: {n}" if several else n for n in notes]
    model_notes += [f"{m.name}: {note}" if several else note for m in models if (note := m.reference_note)]
    model_notes += chat_notes
    data = benchplan.load_inputs(models[0], o.inputs, o.inputs_source)
    places, conn, dropped = [None], None, []
    if address:  # the cluster is reached, and its nodes probed, before the variants are built
        conn = clusters.connect(address)
        places = conn.places(o.on, o.threads)
        dropped = conn.left_out_for(o.on)  # nodes it would have used, whose probe failed: said, not skipped over
    requests = [None if isinstance(one, Variants) else benchplan.export_request(model, names, data)
                for model, one, names, _ in plans]
    # nothing heavy before this line; now build the variants (through the export cache) and plan
    # the export's bar shows unless asked for quiet (a live dashboard, which takes over the sweep's
    # progress, is never shown with -q)
    jobs, unavailable, plan_notes, chosen_sets = [], {}, [], []
    for (model, one, names, _), request in zip(plans, requests):
        shapes = sorted(((b, s) for b in o.batch_sizes for s in sizes[model.name]), key=lambda bs: (bs[0] * bs[1], bs[0]))
        vset = one if request is None else _export(model, names, request, o.progress or o.callback is not None)
        chosen = vset.select(names) if names else vset
        chosen_sets.append(chosen)
        found, missing, notes = benchplan.plan(chosen, o.backends, shapes, here=conn is None)
        for job in found:
            job.several = several
        jobs += found
        unavailable.update(missing)
        plan_notes += [n for n in notes if n not in plan_notes]
    jobs, base, base_note = benchplan.order_baseline_first(jobs, base_rest, base_model)
    # the options as resolved are what the run store keeps (and rerun takes again)
    o.variants, o.cluster = [v.name for v in chosen_sets[0]], address
    o.inputs_source = o.inputs_source or (data.source if data else None)
    params = {**o.params(), "target": str(models[0].path)}
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
    # one sweep per node (--on each: per kind of node) and per --new-tokens value, one after another:
    # a generation's length is a setting of its worker, and speed-ups pair rows of one sweep
    for place, new in ((p, n) for p in places for n in new_tokens):
        sweep = Sweep(models, jobs, base, {**params, "new_tokens": new}, data, o.callback, o.progress,
                      o.timeout or 180 + 10 * o.min_time, None if o.budget is None else started + o.budget,
                      unavailable, place=place, cluster=conn)
        sweep.notes += plan_notes + ([base_note] if base_note else []) + model_notes
        sweep.memory = guards
        sweeps.append(sweep)
    for place in clusters.left_out_places(dropped) if o.on == "each" else ():  # its kind's rows say why
        why = f"skipped: node left out: {place.node.left_out_because}"
        sweeps += [Sweep(models, [dataclasses.replace(j, blocked=why) for j in jobs], base, {**params, "new_tokens": new},
                         data, o.callback, False, 0, None, unavailable, place=place, cluster=conn) for new in new_tokens]
    provenance = _provenance(models, chosen_sets, data)
    if conn is not None:  # each node's environment card, as that node gave it
        provenance["nodes"] = {p.label: {"node_id": p.node.id, **p.node.card} for p in places}
        if dropped:
            provenance["nodes_left_out"] = {n.id[:12]: {"node_id": n.id, "host": n.host, "resources": n.custom,
                                                        "why": n.left_out_because} for n in dropped}

    store = default_store()
    with store.recording("benchmark", params, provenance) if store else contextlib.nullcontext() as run:
        result = _run_sweeps(sweeps, run)
        result.params = params
        if conn is not None:
            result.notes.append(clusters.sweep_note(places, result.rows))
        if dropped:
            result.notes.append(f"cluster: {clusters.left_out_text(dropped)}"
                                + ("; its rows say so" if o.on == "each" else ""))
        if run is not None:
            result.run_id = run.id
            run.finish("interrupted" if result.interrupted else "ok", {"notes": result.notes})
    return result


def _run_sweeps(sweeps: list["Sweep"], run) -> BenchmarkResult:
    """Run each sweep in turn (after a Ctrl-C, the sweeps not reached say so in their rows): one
    result of every row. A note every sweep gave, once; a sweep's own notes name it (its node, its
    new tokens)."""
    results = []
    for sweep in sweeps:
        if results and results[-1].interrupted:
            sweep.run_record, sweep.interrupted = run, True
            results.append(sweep.result())
        else:
            results.append(sweep.run(run))
    if len(results) == 1:
        return results[0]
    first = results[0]
    shared = [n for n in first.notes if all(n in r.notes for r in results)]
    own = [f"{sweep.label}: {n}" for sweep, r in zip(sweeps, results) for n in r.notes if n not in shared]
    first.rows = [row for r in results for row in r.rows]
    first.notes = shared + own
    first.interrupted = any(r.interrupted for r in results)
    return first


# -- rows' helpers -------------------------------------------------------------------------------

def _export(model, names: list[str] | None, requests: list[dict], progress: bool):
    """The variants to measure for a model: torch, plus the ONNX ones (through the export cache)."""

    if names == ["torch"]:
        return Variants(model, [Variant("torch", model, size_bytes=model.weights_bytes)])

    return export_all(model, requests, progress=progress)


def _provenance(models, chosen_sets, data) -> dict:
    """The models, the files measured (their sha256) and the input data's fingerprint. With several
    models, ``models`` lists each and ``files`` keys name the model (``model/variant``)."""

    several = len(models) > 1
    files = {(f"{m.name}/{v.name}" if several else v.name): v.sha256 or file_sha256(v.path)
             for m, chosen in zip(models, chosen_sets) for v in chosen if v.path is not None and v.path.exists()}
    out = {"model": models[0].provenance(), "files": files, "dataset": data.fingerprint if data else None}
    if several:
        out["models"] = [m.provenance() for m in models]
    return out

