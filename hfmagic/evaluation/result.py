"""What an evaluation returns: per-variant figures, changed predictions, and the table that shows them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hfmagic.core.results import Column, Table, batch_label, gate_title, interval_text, percent_text


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
    rows: list[dict[str, Any]] = field(default_factory=list)
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
        columns = ([Column("model")] if several else []) + [Column("variant"), Column("n", "n", "d", "right"),
                                                            Column("batch", "batch", None, "right")]
        shown = []
        for row in self.rows:
            view = dict(row, batch=batch_label(row))
            for m in self.metrics:
                if row.get(f"{m}_low") is not None:
                    view[f"{m}_ci"] = (row[f"{m}_low"], row[f"{m}_high"])
            if row_key(row, several) == self.reference and row.get("status") == "ok":
                view["gate"] = "reference"
            shown.append(view)
        for m in self.metrics:
            columns += [Column(m, m, ".4f", "right"), Column(f"{m}_ci", "95% CI", interval_text, "right")]
        columns += [Column("pct_of_reference", f"% of {self.reference}", percent_text, "right"),
                    Column("gate", gate_title(self.lower_is_better))]
        if any(r.get("flips") is not None for r in self.rows):
            columns += [Column("agreement", "agreement", ".2%", "right"), Column("flips", "flips", "d", "right")]
        if any(r.get("first_divergence") is not None for r in self.rows):  # greedy generations
            columns += [Column("first_divergence", "first diff at", ".1f", "right"),
                        Column("token_agreement", "next-token agree", ".2%", "right")]
        columns += [Column("max_logit_diff", "max |diff|", ".2e", "right"),
                    Column("samples_per_s", "samples/s", ".1f", "right"), Column("status")]
        about = f"{self.fingerprint.get('rows')} examples" + (f"; {self.caption}" if self.caption else "")
        title = f"evaluation of {self.model_name} on {self.data_source} ({about})"
        return Table(shown, columns, title=title, notes=self.notes)

    def to_pandas(self):
        """One row per variant with every figure (intervals as <metric>_low / <metric>_high)."""
        import pandas as pd

        return pd.DataFrame(self.rows)

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
