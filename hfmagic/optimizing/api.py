"""``optimize()``: the fastest variant x backend that keeps the accuracy, found by search.

The search is the loop a data scientist runs by hand, with the accuracy gate in it:

1. **Build** every recipe (through the export cache): optimization levels fp32, O1, O2; dynamic
   int8 of each, per-channel and per-tensor; static int8 calibrated on examples of the data with
   MinMax, Entropy and Percentile (onnxruntime's calibrators, through optimum), and NNCF's static
   int8 with its transformer preset (where NNCF is installed); a decoder's int4. A variant that
   diverges from PyTorch when it is built is dropped there, with the validation's reason; a static
   int8 that diverges gets a sensitivity pass (operator types left in float until it validates).
2. **Screen** every variant x backend (onnxruntime; OpenVINO where it is installed, but not for the
   named dynamic int8 settings, whose level's preset it is tried on; torch.compile where it works)
   in one short interleaved sweep at the shape asked,
   once per thread count searched (default 1, half and all of the thread setting); the count
   whose fastest configuration is fastest is the one the later stages use.
3. **Gate** the candidates fastest first: each one's full evaluation on the data, against the
   reference (PyTorch), at the batch size it was timed at (dynamic int8's predictions depend on
   the batch: its activation ranges are the whole batch's), on the runtime it was timed on (a QDQ file's int8 arithmetic is OpenVINO's
   own under OpenVINO: its accuracy is measured there). Once one keeps ``keep`` of the reference's first metric, a candidate whose
   screened time is more than ``MARGIN`` slower cannot win and is not evaluated. Each candidate
   is scored alone, the fixed recipes with the first on their runtime; PyTorch's outputs are computed
   once for the whole search and read back (``evaluate(reuse=...)``).
4. **Confirm** in one interleaved sweep with the default timing: the candidates that passed and can
   still win, fp32 on onnxruntime, PyTorch, and the fixed recipes a single tool gives (``--quantize
   auto``'s int8, O2-int8, static int8 with min-max, OpenVINO on fp32), so the winner is measured
   against them side by side.

The result: the winner and the command that rebuilds it, the Pareto front of everything measured
(objective against the metric), the trace of every candidate with why it was dropped, all recorded
in the run store (kind ``optimize``). ``budget`` bounds the whole search; Ctrl-C returns what was
found so far.
"""

from __future__ import annotations

import contextlib
import time

from hfmagic.benchmarking import plan as benchplan
from hfmagic.core.config import settings
from hfmagic.core.errors import UsageProblem
from hfmagic.core.listargs import BACKENDS, list_arguments
from hfmagic.models.handle import load_model
from hfmagic.optimizing.result import OBJECTIVES, OptimizeResult
from hfmagic.optimizing.search import Search
from hfmagic.store.db import default_store


@list_arguments(backends=BACKENDS, threads=(int, "thread count"))
def optimize(target, data=None, keep: float = 99.0, objective: str = "p50", batch_size: int = 1,
             size: int | None = None, budget: float | None = None, backends: list[str] | None = None,
             threads: int | None = None, calibration=None, samples: int = 100, progress: bool = True,
             min_time: float = 1.0, slo_p99=None, serve_duration: float | None = None,
             **evaluate_options) -> OptimizeResult:
    """Search levels x quantization recipes x backends for the fastest configuration of ``target``
    that keeps ``keep`` percent of the reference's first metric on ``data`` (see the module
    docstring). ``objective``: p50, p95, throughput or tpot (text generation), at ``batch_size`` x
    ``size`` (the task's axis: tokens, pixels or seconds; default its first default size); the gate
    scores every candidate at ``batch_size`` too, as it was timed.
    ``calibration``: examples for static int8 (default the first ``samples`` of ``data``, which
    the gate then also scores: the notes say so). ``threads``: a thread count, or a list of them
    to search (default 1, half and all of ``%config HFMagic.threads``). ``budget``: seconds for the whole search.
    ``min_time``: seconds of timing per configuration in the confirming sweep (screening takes
    a fifth of a second each). ``objective="serve"`` with ``slo_p99`` (``"100ms"``): after the search
    at batch 1, the passing candidates are served and load-tested for the most requests/s inside
    that p99 (:mod:`hfmagic.optimizing.serving`; ``serve_duration``: seconds per rate). Other
    keyword arguments go to :func:`hfmagic.evaluate` (``limit``, ``label_map``, ``text_column``, ...)."""

    started = time.time()
    model = load_model(target)
    model.check_unchanged()
    if model.kind.RUNTIME:
        raise UsageProblem(f"{model.name} is {model.kind.WHAT}: it has one way to run; nothing to optimize")
    if objective not in OBJECTIVES:
        raise UsageProblem(f"--objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    task = model.task_plugin
    if objective == "tpot" and not task.measurement.GENERATES:
        raise UsageProblem(f"--objective tpot is a text-generation model's time per output token; {model.name} is "
                           f"{task.NAME}: use p50, p95 or throughput")
    slo_ms = None
    if objective == "serve":
        if slo_p99 is None:
            raise UsageProblem("--objective serve needs --slo-p99, the p99 budget a served request must keep "
                               "(e.g. 100ms)")
        from hfmagic.serving.loadtest import parse_ms

        slo_ms = parse_ms(slo_p99)
        if task.requests.STREAMS:
            raise UsageProblem(f"--objective serve searches request/answer models; {model.name}'s answers stream "
                               "token by token: serve its variants with %serve and compare them with %loadtest")
        if batch_size != 1:
            raise UsageProblem("--objective serve searches at batch 1 (a request is one example; Ray Serve's dynamic "
                               "batching groups them): leave out --shape's batch")
    elif slo_p99 is not None:
        raise UsageProblem("--slo-p99 is the served p99 budget of --objective serve; add --objective serve or leave "
                           "it out")
    if not 0 < keep <= 100:
        raise UsageProblem(f"--keep must be a percentage above 0 and at most 100, got {keep:g}")
    if budget is not None and budget <= 0:
        raise UsageProblem(f"--budget must be a positive number of seconds, got {budget}")
    benchplan.positive([batch_size], "batch size")
    size = size or task.inputs.sizes(model)[0]
    threads = thread_counts(threads, settings().resolved_threads())
    deadline = None if budget is None else started + budget
    search = Search(model, data, keep, "p50" if objective == "serve" else objective, batch_size, size, backends,
                    threads, deadline,
                    calibration, samples, progress, evaluate_options)
    search.min_time = min_time

    store = default_store()
    params = {"target": model.source, "data": str(data) if isinstance(data, str) else None, "keep": keep,
              "objective": objective, "batch_size": batch_size, "size": size, "budget": budget,
              "backends": backends, "threads": threads, "samples": samples,
              "slo_ms": slo_ms}
    provenance = {"model": model.provenance()}
    with store.recording("optimize", params, provenance) if store else contextlib.nullcontext() as run:
        result = search.run()
        if objective == "serve" and not result.interrupted:
            from hfmagic.optimizing.serving import DURATION_S, serve_stage

            try:
                serve_stage(search, result, slo_ms, serve_duration or DURATION_S, progress, data)  # sent the gate's examples
            except KeyboardInterrupt:
                result.interrupted = True
                result.notes.append("interrupted while serving: the trace holds what was load-tested before Ctrl-C")
        if run is not None:
            for row in result.trace:
                run.add_row(row)
            result.run_id = run.id
            run.finish("interrupted" if result.interrupted else "ok",
                       {"notes": result.notes, "winner": result.winner, "recipe": result.recipe,
                        "front": [p["candidate"] for p in result.front], "outcome": result.outcome,
                        "stopped": result.stopped, "against_reference": result.against_reference})
    return result


def thread_counts(threads, setting: int) -> list[int]:
    """The thread counts to search, ascending: those given (a count or a list), else 1, half and all
    of the thread setting."""
    if threads is None:
        return sorted({1, max(1, setting // 2), setting})
    counts = [threads] if isinstance(threads, int) else list(threads)
    if not counts or any(not isinstance(t, int) or isinstance(t, bool) or t <= 0 for t in counts):
        raise UsageProblem(f"--threads takes positive whole numbers (a count or a list such as 1,2), got {threads!r}")
    return sorted(set(counts))
