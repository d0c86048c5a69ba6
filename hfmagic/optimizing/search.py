"""The search behind ``optimize()``: one call's candidates and what each stage found.

Its stages, in order (the module docstring of :mod:`hfmagic.optimizing.api` says why each is so):
build every recipe (:mod:`hfmagic.optimizing.recipes`), screen every variant x backend at each
thread count, gate the candidates fastest first on their accuracy, confirm the ones that can still
win beside the fixed recipes, and read the result off it all (:class:`OptimizeResult`).
"""

from __future__ import annotations

import dataclasses
import time

from hfmagic.backends import get_backend
from hfmagic.benchmarking.api import benchmark
from hfmagic.core.stats import modes_text, speedup_text
from hfmagic.evaluation.api import evaluate
from hfmagic.models.variants import Variants
from hfmagic.optimizing.recipes import build_recipes, rebuild_recipe
from hfmagic.optimizing.result import OBJECTIVES, OptimizeResult
from hfmagic.optimizing.space import onnxruntime_only, trace_openvino_left_out

MARGIN = 0.10       # a candidate screened this much slower than a passing one cannot win
SCREEN_TIME = 0.2   # seconds of timing per configuration while screening
CONFIRM_ROUNDS = 5  # the confirming sweep runs long enough for this many interleaved rounds
FIXED = [("int8", "onnxruntime"), ("O2-int8", "onnxruntime"), ("int8-static-minmax", "onnxruntime"),
         ("fp32", "openvino")]  # what one tool's default gives: optimum-cli's --quantize, OpenVINO on the export

REFERENCE = ("torch", "torch")  # PyTorch eager: what every accuracy is a percentage of, never the winner
COMPILED = "the reference's weights under torch.compile: scored as the reference (%evaluate runs PyTorch eager)"


class Search:
    """One optimize() call's state: the candidates, what each stage found, the trace."""

    def __init__(self, model, data, keep, objective, batch_size, size, backends, threads, deadline,
                 calibration, samples, progress, evaluate_options):
        self.model, self.data, self.keep, self.objective = model, data, keep, objective
        self.batch_size, self.size, self.backends = batch_size, size, backends
        self.thread_options, self.threads = threads, threads[-1]  # those searched; the one in use
        self.deadline, self.calibration, self.samples, self.progress = deadline, calibration, samples, progress
        self.evaluate_options = evaluate_options
        self.key, self.lower = OBJECTIVES[objective]
        self.trace: list[dict] = []
        self.notes: list[str] = []
        self.variants: dict = {}       # name -> Variant (every recipe built)
        self.recipes: dict = {}        # name -> the export_onnx arguments that build it
        self.screened: dict = {}       # (variant, backend) -> screening row
        self.evaluated: dict = {}      # (variant, None or "openvino") -> evaluation row
        self.final = None
        self.interrupted = False
        self.stage = "building"       # the stage under way, for where an interruption stopped it
        self.stopped = None           # where the budget stopped the search, as a phrase
        self.min_time = 1.0
        self.metric_name, self.lower_metric = None, False
        self.confirmed: set = set()
        self.reference_outputs: dict = {}  # the reference runs once for all the search's evaluations
        self.seconds: dict[str, float] = {}  # stage -> wall seconds
        self.evaluations: dict[str, int] = {}  # stage -> evaluate() calls

    # -- the stages ----------------------------------------------------------------------------
    def run(self) -> OptimizeResult:
        try:
            for stage, step in (("building", self.build), ("screening", self.screen), ("the gate", self.gate),
                                ("the confirming sweep", self.confirm)):
                self.stage = stage
                began = time.perf_counter()
                try:
                    step()
                finally:
                    self.seconds[stage] = time.perf_counter() - began
        except KeyboardInterrupt:
            self.interrupted = True
            self.notes.append("interrupted: the trace holds what was measured before Ctrl-C")
        self.notes.append(self.time_note())
        return self.result()

    def time_note(self) -> str:
        """Where the search's time went, stage by stage, with what each did."""
        built = sum(1 for n, v in self.variants.items() if n != "torch" and v.path is not None)
        did = {"building": f"{built} variants built or read from the cache",
               "screening": f"{len(self.screened)} configurations timed",
               "the gate": f"{self.evaluations.get('the gate', 0)} evaluations",
               "the confirming sweep": f"{self.evaluations.get('the confirming sweep', 0)} evaluations of the fixed "
                                       "recipes and the sweep"}
        return "time: " + "; ".join(f"{stage} {seconds:.0f} s ({did[stage]})" for stage, seconds in self.seconds.items())

    def left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.time()

    def out_of_time(self, stage: str) -> bool:
        left = self.left()
        if left is not None and left <= 0:
            self.notes.append(f"budget: the search stopped before {stage}")
            self.stopped = self.stopped or f"before {stage}"
            return True
        return False

    def build(self) -> None:
        """Every recipe, through the export cache (:func:`hfmagic.optimizing.recipes.build_recipes`)."""
        build_recipes(self)

    def candidates(self) -> list[tuple[str, str]]:
        """Every (variant, backend) to time: each ONNX graph on onnxruntime and on OpenVINO (where
        installed; a named dynamic int8 setting on onnxruntime only: its level's preset is tried on
        OpenVINO), PyTorch eager (the reference) and torch.compile (where it works)."""

        def usable(name):
            if self.backends and name not in self.backends:
                return False
            return get_backend(name).is_available()[0]

        out = []
        for name, v in self.variants.items():
            if v.error:
                continue
            if v.kind == "torch":
                out += [(name, b) for b in ("torch", "torch-compile") if b == "torch" or usable(b)]
            elif v.kind == "onnx":  # a named dynamic int8 setting on onnxruntime alone (its preset on both)
                runtimes = ("onnxruntime",) if onnxruntime_only(self, name) else ("onnxruntime", "openvino")
                out += [(name, b) for b in runtimes if usable(b)]
            else:  # a runtime's own: onnxruntime-genai's graphs, llama.cpp's GGUF files
                runtime = "llama.cpp" if v.kind == "gguf" else "onnxruntime-genai"
                out += [(name, runtime)] if usable(runtime) else []
        return out

    def measure(self, configs: list[tuple[str, str]], min_time: float, max_time: float | None):
        """One interleaved sweep of ``configs`` at the shape asked (baseline PyTorch eager)."""

        names = list(dict.fromkeys(["torch"] + [v for v, _ in configs]))
        backends = list(dict.fromkeys(["torch"] + [b for _, b in configs]))
        vset = Variants(self.model, [dataclasses.replace(self.variants[n], runs_on=("onnxruntime",))
                                     if onnxruntime_only(self, n) else self.variants[n] for n in names])
        left = self.left()
        axis = self.model.task_plugin.inputs.AXIS
        result = benchmark(vset, variants=names, backends=backends, batch_sizes=[self.batch_size],
                           **{axis.argument: [self.size]}, threads=self.threads, min_time=min_time,
                           max_time=max_time, budget=None if left is None else max(1.0, left),
                           progress=self.progress, warmup=3 if min_time < 1 else 10, min_runs=3)
        wanted = set(configs) | {REFERENCE}
        rows = {(r["variant"], r["backend"]): r for r in result.rows if (r["variant"], r["backend"]) in wanted}
        if result.interrupted:
            raise KeyboardInterrupt
        if any(r["status"] == "skipped: budget" for r in rows.values()):
            self.stopped = self.stopped or f"during {self.stage}"
        return result, rows

    def screen(self) -> None:
        """Every candidate in a short sweep, at each thread count searched; the later stages use
        the count whose fastest candidate is fastest."""
        if self.out_of_time("screening"):
            return
        configs = self.candidates()
        swept = {}
        for count in self.thread_options:
            if swept and self.out_of_time(f"screening at {count} threads"):
                break
            self.threads = count
            _, swept[count] = self.measure(configs, SCREEN_TIME, 4.0)
        best = {t: fastest for t, rows in swept.items() if (fastest := self.fastest(rows))}  # count -> (config, value)
        if best:
            self.threads = min(best, key=lambda t: self.rank(best[t][1]))
        rows = swept.get(self.threads, {})
        if len(self.thread_options) > 1:
            self.notes.append(f"threads: {self.threads}, the fastest of {', '.join(map(str, sorted(swept)))} when "
                              "screening; the gate and the confirming sweep ran at it")
        if len(best) > 1:
            chosen = best[self.threads][1]
            for count in sorted(best):
                config, value = best[count]
                self.step(f"threads={count}", "screen", "kept" if count == self.threads else "dropped", objective=value,
                          reason=f"fastest screened: {_label(config)}" + ("" if count == self.threads else
                                                                            f"; {chosen:.3f} at {self.threads} threads"))
        for config in configs:
            row = rows.get(config)
            if row is None or row["status"] != "ok":
                self.step(_label(config), "screen", "dropped", reason=row["status"] if row else "not measured")
                continue
            self.screened[config] = row
        trace_openvino_left_out(self, rows)

    def gate(self) -> None:
        """Evaluate the screened candidates fastest first, until none left can beat one that passed."""
        order = sorted((c for c in self.screened if c != REFERENCE), key=lambda c: self.value(self.screened[c]))
        if order:
            self.notes.append(f"the gate scored every candidate at batch {self.batch_size}, the batch size timed "
                              "(dynamic int8's predictions depend on the batch it runs in)")
        best = None
        for config in order:
            name = config[0]
            value = self.value(self.screened[config])
            hope = self.optimistic(self.screened[config])
            if best is not None and self.worse(hope, best[1], MARGIN):
                self.step(_label(config), "gate", "dropped", objective=value,
                          reason=f"cannot win: even its fastest screened run ({hope:.3f}) is over {MARGIN:.0%} off "
                                 f"{_label(best[0])}'s {self.key} {best[1]:.3f}, which passed")
                continue
            key = evaluated_as(config)
            if key not in self.evaluated:
                if self.out_of_time(f"evaluating {name}"):
                    return
                # alone (the reference's outputs are kept across the search's evaluations, so a candidate
                # that cannot win is never scored), with the fixed recipes on that runtime the first time:
                # the confirming sweep needs their accuracy anyway
                names = [] if name == "torch" else [name]
                self.evaluate(list(dict.fromkeys(names + self.fixed_unscored(key[1]))), key[1])
            row = self.evaluated.get(key)
            if row is None or row.get("status") != "ok" or row.get("pct_of_reference") is None:
                self.step(_label(config), "gate", "dropped", objective=value, metric=(row or {}).get(self.metric_name),
                          reason=gate_problem(row, self.metric_name))
                continue
            passed = self.passes(row)
            self.step(_label(config), "gate", "kept" if passed else "dropped", objective=value,
                      metric=row.get(self.metric_name), pct=row["pct_of_reference"],
                      reason=COMPILED if name == "torch" else None if passed else
                      f"keeps {row['pct_of_reference']:.2f}% of the reference, under {self.keep:g}%")
            if passed and (best is None or self.worse(best[1], value, 0.0)):
                best = (config, value)

    def fixed_unscored(self, runtime: str | None) -> list[str]:
        """The screened fixed recipes whose accuracy on ``runtime`` is not known yet: they are scored
        in one evaluation per runtime (beside the gate's first candidate there)."""
        return [c[0] for c in FIXED if c in self.screened and evaluated_as(c) not in self.evaluated
                and evaluated_as(c)[1] == runtime]

    def evaluate(self, names: list[str], backend: str | None = None) -> None:
        """The full evaluation of ``names`` against PyTorch, their ONNX files on ``backend``
        (None: onnxruntime, %evaluate's default)."""

        self.evaluations[self.stage] = self.evaluations.get(self.stage, 0) + 1
        vset = Variants(self.model, [self.variants["torch"]] + [self.variants[n] for n in names])
        result = evaluate(vset, self.data, progress=self.progress, backend=backend, batch_size=self.batch_size,
                          reuse=self.reference_outputs, **self.evaluate_options)
        self.metric_name = result.metrics[0]
        self.lower_metric = result.lower_is_better
        for row in result.rows:
            self.evaluated.setdefault((row["variant"], row.get("backend")), row)
        if any("interrupted" in n for n in result.notes):
            raise KeyboardInterrupt

    def confirm(self) -> None:
        """The passing candidates that can still win and the fixed recipes, in one full sweep."""
        if self.out_of_time("the confirming sweep"):
            return
        passed = [c for c in self.screened if c != REFERENCE and self.passes(self.evaluated.get(evaluated_as(c)))]
        if passed:
            best = min((self.value(self.screened[c]) for c in passed), key=self.rank)
            passed = [c for c in passed if not self.worse(self.optimistic(self.screened[c]), best, MARGIN)]
        fixed = [c for c in FIXED if c in self.screened]
        for runtime in dict.fromkeys(evaluated_as(c)[1] for c in fixed):  # the fixed recipes' accuracy too
            if not (names := self.fixed_unscored(runtime)):
                continue
            if self.out_of_time("evaluating the fixed recipes"):
                break
            self.evaluate(names, runtime)
        configs = list(dict.fromkeys(passed + fixed + [c for c in (("fp32", "onnxruntime"),) if c in self.screened]))
        if not configs:
            self.notes.append("no candidate kept the accuracy: nothing to confirm")
            return
        self.confirmed = set(configs) | {REFERENCE}
        self.final, rows = self.measure(configs, self.min_time, self.confirm_time(configs))
        reference = rows.get(REFERENCE)  # PyTorch eager, in every sweep: what the speed-ups are against
        if reference is not None:
            ok = reference["status"] == "ok"
            self.step(_label(REFERENCE), "confirm", "reference" if ok else "dropped",
                      objective=self.value(reference) if ok else None,
                      metric=(self.evaluated.get(evaluated_as(REFERENCE)) or {}).get(self.metric_name),
                      pct=100.0, reason="PyTorch eager, what the model runs on today: the winner's speed-up is "
                                        "against it" if ok else reference["status"])
        for config in configs:
            row = rows.get(config)
            ok = row is not None and row["status"] == "ok"
            ev = self.evaluated.get(evaluated_as(config)) or {}
            self.step(_label(config), "confirm", "measured" if ok else "dropped",
                      objective=self.value(row) if ok else None, metric=ev.get(self.metric_name),
                      pct=ev.get("pct_of_reference"), reason=self.modes(row) if ok else (row or {}).get("status"))

    def confirm_time(self, configs: list) -> float:
        """Seconds of rounds for the confirming sweep: %benchmark's default (60 x min-time), or
        enough for CONFIRM_ROUNDS rounds where one round is longer, as a decoder's is (each
        configuration's slice is at least min-time or 3 runs, read off its screened time; a
        generation's run is the whole generate())."""
        def slice_s(config) -> float:
            row = self.screened.get(config) or {}
            run_ms = row.get("gen_p50_ms") or row.get("p50_ms") or 0.0
            return max(self.min_time, 3 * run_ms / 1000)

        round_s = sum(slice_s(c) for c in dict.fromkeys([REFERENCE, *configs]))
        return max(60 * self.min_time, CONFIRM_ROUNDS * round_s)

    # -- rules ---------------------------------------------------------------------------------
    def value(self, row: dict) -> float:
        """The objective of a sweep's row: its p50 (or p95) is the percentile of all its runs, pooled
        over every round of the sweep, and its throughput all its runs over their summed time: never
        a mean of per-round figures. A configuration whose runs form two modes ranks by that figure,
        what a user can expect of a run, with the modes in the trace and the notes (:meth:`modes`)."""
        return row[self.key]

    def modes(self, row: dict) -> str | None:
        """For a confirmed row whose runs form two modes (dynamic int8 can run at one speed or
        another): both, and what its objective is (None for a row with one)."""
        text = modes_text(row)
        return None if text is None else (f"two modes, {text}: ranked by its {self.objective} over all its runs; a run "
                                          "costs one or the other")

    def modes_notes(self) -> list[str]:
        """A note per confirmed configuration whose runs form two modes, naming it with its modes."""
        rows = [] if self.final is None else [r for r in self.final.rows if r["status"] == "ok"
                                              and (r["variant"], r["backend"]) in self.confirmed]
        return [f"{_label((r['variant'], r['backend']))}: {text}" for r in rows if (text := self.modes(r))]

    def rank(self, value: float) -> float:
        """Smaller is better, whichever way the objective points."""
        return value if self.lower else -value

    def fastest(self, rows: dict) -> tuple | None:
        """(config, objective) of the best measured row of one sweep, or None when none ran."""
        ok = [(c, self.value(r)) for c, r in rows.items() if r["status"] == "ok"]
        return min(ok, key=lambda cv: self.rank(cv[1])) if ok else None

    def optimistic(self, row: dict) -> float:
        """The best the configuration could be: its fastest screened run (short screening sweeps on a
        busy machine are noisy; a candidate is given up only when even that cannot win)."""
        fastest = row.get("min_ms")
        if fastest is None or self.objective == "p95":
            return self.value(row)
        if self.key == "samples_per_s":
            return row["batch_size"] * 1000 / fastest
        return min(fastest, self.value(row))

    def worse(self, value: float, than: float, margin: float) -> bool:
        return value > than * (1 + margin) if self.lower else value < than / (1 + margin)

    def passes(self, row: dict | None) -> bool:
        if not row or row.get("status") != "ok" or row.get("pct_of_reference") is None:
            return False
        pct = row["pct_of_reference"]
        return pct <= 200 - self.keep + 1e-9 if self.lower_metric else pct >= self.keep - 1e-9

    def step(self, candidate: str, stage: str, outcome: str, objective=None, metric=None, pct=None, reason=None):
        self.trace.append({"candidate": candidate, "stage": stage, "outcome": outcome, "objective": objective,
                           "metric": metric, "pct": pct, "reason": reason})

    # -- the result ----------------------------------------------------------------------------
    def result(self) -> OptimizeResult:
        winner, front = None, []
        rows = {}
        if self.final is not None:  # the configurations confirmed (the sweep times every variant x backend)
            rows = {(r["variant"], r["backend"]): r for r in self.final.rows
                    if r["status"] == "ok" and (r["variant"], r["backend"]) in self.confirmed}
        points = []
        for config, row in rows.items():
            ev = self.evaluated.get(evaluated_as(config)) or (
                {"pct_of_reference": 100.0} if config[0] == "torch" else None)
            if ev is None or ev.get("pct_of_reference") is None:
                continue
            points.append({"candidate": _label(config), "variant": config[0], "backend": config[1],
                           "objective": self.value(row), "pct": ev["pct_of_reference"],
                           "metric": ev.get(self.metric_name), "passes": self.passes(ev)
                           or config[0] == "torch"})
        for p in sorted(points, key=lambda p: (self.rank(p["objective"]), -p["pct"])):
            if not front or p["pct"] > front[-1]["pct"]:
                front.append(p)
        passing = [p for p in points if p["passes"] and (p["variant"], p["backend"]) != REFERENCE]
        if passing:
            winner = min(passing, key=lambda p: self.rank(p["objective"]))
        recipe = rebuild_recipe(self, winner) if winner else None
        against = None
        self.close_trace()
        if winner is None and self.final is not None and not (self.stopped or self.interrupted):
            self.notes.append("no candidate kept the accuracy: no winner (the trace says why each was dropped)")
        eager = self.against_reference(winner)
        if eager:
            self.notes.append(f"against PyTorch eager (torch/torch, what the model runs on today): the winner is "
                              f"{eager['text']} as fast, paired by round in the same confirming sweep")
        if winner:
            fixed = [p for p in passing if (p["variant"], p["backend"]) in FIXED]
            if fixed:
                best = min(fixed, key=lambda p: self.rank(p["objective"]))
                ratio = (best["objective"] / winner["objective"]) if self.lower else (winner["objective"] /
                                                                                     best["objective"])
                against = {"candidate": best["candidate"], "objective": best["objective"], "ratio": ratio}
                self.notes.append(f"against the best fixed recipe that keeps the accuracy ({best['candidate']}): "
                                  f"{ratio:.2f}x on {self.key}, measured in the same interleaved sweep")
            else:
                self.notes.append("no fixed recipe (" + ", ".join(map(_label, FIXED)) + ") kept the accuracy: "
                                  "the winner has nothing of theirs to be compared with")
        if self.final is not None:
            self.notes += [n for n in self.final.notes if n.startswith("interleaved")]
            self.notes += self.modes_notes()
        return OptimizeResult(self.model.name, self.objective, self.keep, winner, self.trace, front, recipe,
                              self.notes, self.final, self.accuracy_rows(),
                              interrupted=self.interrupted, points=points, against_fixed=against,
                              against_reference=eager, stopped=self.stopped, outcome=self.outcome(winner, eager),
                              seconds=dict(self.seconds))

    def against_reference(self, winner: dict | None) -> dict | None:
        """The winner's speed-up over PyTorch eager as the confirming sweep measured it (paired by
        round, with its interval), or None."""
        if winner is None or self.final is None:
            return None
        row = next((r for r in self.final.rows if (r["variant"], r["backend"]) == (winner["variant"], winner["backend"])
                    and r["status"] == "ok" and r.get("speedup") is not None), None)
        if row is None:
            return None

        return {"speedup": row["speedup"], "low": row.get("speedup_low"), "high": row.get("speedup_high"),
                "trust": row.get("speedup_trust"), "text": speedup_text(row)}

    def close_trace(self) -> None:
        """After the budget or Ctrl-C stopped the search: every candidate it had ends the trace at
        the stage it reached, with why it went no further."""
        if not (self.stopped or self.interrupted):
            return
        why = "interrupted (Ctrl-C)" if self.interrupted else f"the budget ran out ({self.stopped})"
        traced = {(t["candidate"], t["stage"]): t["outcome"] for t in self.trace}
        for config in self.candidates():
            label, row = _label(config), self.screened.get(config)
            if config == REFERENCE or any(c == label for c, _ in traced):
                if self.final is None and row is not None and traced.get((label, "gate")) == "kept":
                    self.step(label, "confirm", "not reached", objective=self.value(row),
                              reason=f"kept by the gate; {why} before the confirming sweep measured it")
                continue
            if row is None:
                self.step(label, "screen", "not reached", reason=f"built; {why} before it was screened")
            else:
                self.step(label, "gate", "not reached", objective=self.value(row),
                          reason=f"screened; {why} before the gate evaluated it")

    def outcome(self, winner: dict | None, eager: dict | None) -> str:
        """What the search found, in one line (the run list's headline of it): the winner, or how far
        it got and why it has none."""
        stop = (f"stopped by the budget {self.stopped}" if self.stopped else
                f"interrupted during {self.stage}" if self.interrupted else None)
        if winner:
            text = (f"winner {winner['candidate']}: {self.key} {winner['objective']:.3f}, {winner['pct']:.1f}% of the "
                    "reference" + (f"; {eager['text']} vs torch/torch" if eager else ""))
            return text + (f"; {stop}" if stop else "")
        screened = [c for c in self.screened if c != REFERENCE]
        gated = [c for c in screened if (self.evaluated.get(evaluated_as(c)) or {}).get("pct_of_reference") is not None]
        kept = sum(self.passes(self.evaluated.get(evaluated_as(c))) for c in gated)
        verdict = ("no candidate reached the gate" if not gated else
                   f"none of the {len(gated)} gated kept {self.keep:g}%" if not kept else
                   f"{kept} of {len(gated)} gated kept {self.keep:g}%, none confirmed")
        if stop:
            return f"{stop} {f'after {len(screened)} screened' if screened else 'with nothing screened'}; {verdict}"
        return f"no winner: {verdict} ({len(screened)} screened)"

    def accuracy_rows(self) -> list[dict]:
        """The evaluations' rows for the dashboard, which shows one accuracy per variant: onnxruntime's
        where both runtimes were evaluated (the trace has each runtime's own)."""
        ort = {v for v, b in self.evaluated if b is None}
        return [row for (v, b), row in self.evaluated.items() if b is None or v not in ort]


def gate_problem(row: dict | None, metric: str | None) -> str:
    """Why an evaluated candidate has no verdict: it did not run, or the reference scored 0 (a
    percentage of nothing)."""
    if row is None:
        return "not evaluated"
    if row.get("status") != "ok":
        return row["status"]
    return (f"no percentage of the reference: the reference scores {metric} 0 on this data, so the gate cannot "
            "tell what it keeps (use data it gets right, or another --metrics first)")


def evaluated_as(config: tuple[str, str]) -> tuple[str, str | None]:
    """Whose accuracy a timed (variant, backend) has: an ONNX file's under OpenVINO is OpenVINO's
    own (its int8 arithmetic differs from onnxruntime's); every other runs as %evaluate runs it."""
    return config[0], "openvino" if config[1] == "openvino" else None


def _label(config: tuple[str, str]) -> str:
    return f"{config[0]}/{config[1]}"
