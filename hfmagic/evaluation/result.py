"""What an evaluation returns: per-variant figures, changed predictions, and the table that shows them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hfmagic.core.records import EvalRow, columns, field_of, metric_fields
from hfmagic.core.results import Table, batch_label, gate_title, plain


@dataclass
class EvaluationResult:
    """Per-variant figures (``.rows``), changed predictions (``.flips``), the run id and notes."""

    model_name: str           # "demo", or "demo, small" for several models
    task: str
    metrics: list[str]
    reference: str            # the variant others are compared with ("model/variant" for several models)
    data_source: str
    fingerprint: dict
    labels: dict[int, str] = field(default_factory=dict)
    rows: list[EvalRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    run_id: str | None = None
    predictions: dict[str, Any] = field(default_factory=dict, repr=False)  # variant -> prediction (class ids)
    flip_rows: list[dict[str, Any]] = field(default_factory=list, repr=False)
    weights_sha256: str | None = None  # the model's; None when several models are compared
    caption: str | None = None  # a guess about the data the title carries (texts from one of several columns)
    flip_columns: tuple[str, ...] = ("variant", "row")
    models: list[str] = field(default_factory=list)
    lower_is_better: bool = False  # the first metric's direction (perplexity): the gate then caps it

    @property
    def flips(self):
        """A DataFrame of the examples whose prediction changed (the task's columns: text, label and both
        predictions for classification; tokens and entities for NER; question and answers for QA)."""
        import pandas as pd

        columns = (("model",) if len(self.models) > 1 else ()) + tuple(self.flip_columns)
        return pd.DataFrame(self.flip_rows, columns=list(columns))

    # -- the table -----------------------------------------------------------------------------
    def table(self) -> Table:
        several = len(self.models) > 1

        def gate(row):  # the reference's verdict is that it is the reference
            ok = row_key(row, several) == self.reference and row.get("status") == "ok"
            return "reference" if ok else row.get("gate")

        shown = columns(*(["model"] if several else []), "variant", "n", record=EvalRow)
        shown.append(field_of("eval_batch").column("batch", derive=batch_label))
        for m in self.metrics:
            value, _, _, interval = metric_fields(m)
            shown += [value.column(), interval.column()]
        shown += [field_of("pct_of_reference").column(f"% of {self.reference}"),
                  field_of("gate").column(gate_title(self.lower_is_better), derive=gate)]
        if any(r.get("flips") is not None for r in self.rows):
            shown += columns("agreement", "flips", record=EvalRow)
        if any(r.get("first_divergence") is not None for r in self.rows):  # greedy generations
            shown += columns("first_divergence", "token_agreement")
        shown += columns("max_logit_diff", "samples_per_s", "status", record=EvalRow)
        about = f"{self.fingerprint.get('rows')} examples" + (f"; {self.caption}" if self.caption else "")
        title = f"evaluation of {self.model_name} on {self.data_source} ({about})"
        return Table(self.rows, shown, title=title, notes=self.notes)

    def to_pandas(self):
        """One row per variant with every figure (intervals as <metric>_low / <metric>_high)."""
        import pandas as pd

        return pd.DataFrame([plain(r) for r in self.rows])

    def to_json(self, **kwargs) -> str:
        return Table(self.rows, [], title=self.table().title, notes=self.notes).to_json(**kwargs)

    def __len__(self) -> int:
        return len(self.rows)

    def __str__(self) -> str:
        text = str(self.table())
        if self.flip_rows:
            text += f"\n{len(self.flip_rows)} changed predictions: see .flips"
        return text

    def __repr__(self) -> str:
        return (f"<EvaluationResult of {self.model_name} on {self.data_source}: {len(self.rows)} variants, "
                f"run {self.run_id or '(not recorded)'}>")

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(str(self))

    def _repr_html_(self) -> str:
        return self.table()._repr_html_() + self._thumbnails()

    def _thumbnails(self, limit: int = 24) -> str:
        """The flipped images (image tasks' flips carry a thumbnail), each with both predictions."""
        import html

        shown = [f for f in self.flip_rows if f.get("thumbnail")][:limit]
        if not shown:
            return ""
        cells = "".join(
            f'<figure style="display:inline-block;margin:4px;text-align:center;font-size:11px">'
            f'<img src="{f["thumbnail"]}" width="48" height="48" style="image-rendering:pixelated" '
            f'alt="{html.escape(str(f.get("image")))}"><figcaption>{html.escape(str(f.get("variant")))}: '
            f'{html.escape(str(f.get("reference")))} &rarr; {html.escape(str(f.get("prediction")))}</figcaption></figure>'
            for f in shown)
        more = len([f for f in self.flip_rows if f.get("thumbnail")]) - len(shown)
        tail = f"<div><em>and {more} more: see .flips</em></div>" if more > 0 else ""
        return f'<div class="hfmagic-flips"><strong>changed predictions</strong><div>{cells}</div>{tail}</div>'


def row_key(row: dict, several: bool) -> str:
    return f"{row['model']}/{row['variant']}" if several else row["variant"]
