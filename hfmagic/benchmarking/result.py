"""What a benchmark returns: its rows (one per configuration, raw samples kept), their keys, and the
table that shows them."""

from __future__ import annotations

from dataclasses import dataclass, field

from hfmagic.core.records import BenchmarkRow, columns, field_of
from hfmagic.core.results import Column, Table, plain
from hfmagic.tasks import get_task, names

SHORT_SHA = 12  # a row's model_sha: the start of its weights' sha256
# the keys every benchmark row has, whatever its task (a row whose runs form two modes adds modes_ms and
# mode_shares: BenchmarkRow.GIVEN_ONLY)
ROW_KEYS = tuple(k for k in BenchmarkRow.FIELDS if k not in BenchmarkRow.GIVEN_ONLY)


def row_keys() -> tuple[str, ...]:
    """Every key a benchmark row has: the shared ones, then each registered task's own (None on
    other tasks' rows; a generation's TTFT and TPOT)."""

    extra = [k for n in names() for k in get_task(n).measurement.ROW_KEYS if k not in ROW_KEYS]
    return ROW_KEYS + tuple(dict.fromkeys(extra))


# the table's columns, in order (a task retitles or replaces some: Task.benchmark_columns)
COLUMNS = columns("variant", "backend", "batch_size", "seq_len", "p50_ms",
                  "e2e_p50_ms",  # beside the model's own p50, titled by the task
                  "p90_ms", "p95_ms", "p99_ms", "mean_ms", "std_ms", "samples_per_s", "tokens_per_s", "peak_mem_mb",
                  "startup_s", "load_s", "first_ms", "size_mb", "runs", "speedup", "status")


@dataclass
class BenchmarkResult:
    """The rows of a sweep (one per configuration, raw samples kept) and what to know about them."""

    rows: list[BenchmarkRow]
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
        task = get_task(self.task or "text-classification")
        e2e = field_of("e2e_p50_ms").column(f"e2e p50 ms (+{task.inputs.PREPROCESSOR})")
        columns = [e2e if c.key == "e2e_p50_ms" else c for c in COLUMNS
                   if c.key != "e2e_p50_ms" or any(r["e2e_p50_ms"] for r in self.rows)]
        columns = task.measurement.columns(columns)
        if len({r.get("node") for r in self.rows}) > 1:  # --on each: which kind of node measured it
            columns.insert(0, field_of("node").column())
        if len({r.get("model") for r in self.rows}) > 1:
            columns.insert(0, field_of("model").column())
        return Table(self.rows, columns, title=self.title, notes=list(self.notes))

    def to_pandas(self):
        keys = [k for k in row_keys() if any(r.get(k) is not None for r in self.rows) or k in ROW_KEYS]
        return Table(self.rows, [Column(k) for k in keys]).to_pandas()

    def to_json(self, **kwargs) -> str:
        import json

        return json.dumps({"title": self.title, "run_id": self.run_id, "params": self.params,
                           "notes": self.notes, "rows": [plain(r) for r in self.rows]}, default=str, **kwargs)

    def __str__(self) -> str:
        return str(self.table())

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()
