"""What a benchmark returns: its rows (one per configuration, raw samples kept), their keys, and the
table that shows them."""

from __future__ import annotations

from dataclasses import dataclass, field

from hfmagic.core import stats
from hfmagic.core.results import Column, Table

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

    extra = [k for n in names() for k in get_task(n).ROW_KEYS if k not in ROW_KEYS]
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
        e2e = Column("e2e_p50_ms", f"e2e p50 ms (+{task.PREPROCESSOR})", ".2f", "right")
        columns = [e2e if c.key == "e2e_p50_ms" else c for c in COLUMNS
                   if c.key != "e2e_p50_ms" or any(r["e2e_p50_ms"] for r in self.rows)]
        columns = task.benchmark_columns(columns)
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
