"""What ``optimize()`` returns: the winner, the Pareto front, the trace (and its columns), the
recipe that rebuilds the winner; shown as a table, a DataFrame or the dashboard."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hfmagic.core.results import Column, Table
from hfmagic.ui.widget import Dashboard

# what --objective takes: the row's figure it reads, and whether lower is better
OBJECTIVES = {"p50": ("p50_ms", True), "p95": ("p95_ms", True), "throughput": ("samples_per_s", False),
              "tpot": ("p50_ms", True),  # a generation's p50_ms is its time per output token
              "serve": ("requests/s inside the SLO", False)}  # a served configuration's (optimizing.serving)
TRACE_COLUMNS = [Column("candidate"), Column("stage"), Column("outcome"), Column("objective", "objective", ".3f", "right"),
                 Column("metric", "metric", ".4f", "right"), Column("pct", "% of ref", ".2f", "right"),
                 Column("reason")]


@dataclass
class OptimizeResult:
    """The winner, the Pareto front, the trace, and the recipe that rebuilds the winner."""

    model_name: str
    objective: str
    keep: float
    winner: dict | None
    trace: list[dict]
    front: list[dict]
    recipe: dict | None
    notes: list[str] = field(default_factory=list)
    benchmark: Any = None    # the confirming sweep's BenchmarkResult
    evaluation: Any = None   # the gate's EvaluationResult(s), merged rows
    run_id: str | None = None
    interrupted: bool = False
    points: list[dict] = field(default_factory=list)  # every confirmed configuration with its accuracy
    against_fixed: dict | None = None  # the best fixed recipe that keeps the accuracy, and the winner's ratio to it
    against_reference: dict | None = None  # the winner's speed-up over PyTorch eager, paired in the same sweep
    stopped: str | None = None  # where the budget stopped the search ("before evaluating O2"), None if it did not
    outcome: str = ""  # what the search found, in one line: the run list's headline of it
    seconds: dict = field(default_factory=dict)  # stage -> wall seconds it took (building, screening, ...)
    loadtest: Any = None  # objective "serve": every served configuration's load-test rows (the curves)

    def table(self) -> Table:
        title = f"optimize {self.model_name} for {self.objective} at >= {self.keep:g}% of the reference"
        notes = list(self.notes)
        if self.winner:
            w = self.winner
            notes.insert(0, f"winner: {w['candidate']} ({OBJECTIVES[self.objective][0]} {w['objective']:.3f}, "
                            f"{w['pct']:.2f}% of the reference)")
        else:
            notes.insert(0, self.outcome)
        if self.recipe:
            notes.append(f"rebuild: {self.recipe['python']}")
            if self.recipe.get("cli"):
                notes.append(f"rebuild with: {self.recipe['cli']}")
            if self.recipe.get("serve_line"):
                notes.append(f"serve it as it was served: {self.recipe['serve_line']}")
        return Table(self.trace, TRACE_COLUMNS, title=title, notes=notes)

    def to_pandas(self):
        return self.table().to_pandas()

    def dashboard(self, **kwargs):
        """The confirming sweep and the gate's evaluations in the interactive dashboard: its chart's
        Pareto front is the search's, each point a configuration measured side by side."""

        parts = [p for p in (self.benchmark, self.evaluation) if p]
        return Dashboard(*parts, title=kwargs.pop("title", str(self.table().title)), **kwargs)

    def __str__(self) -> str:
        return str(self.table())

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()
