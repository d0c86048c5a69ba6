"""A table of results with one renderer for HTML and text, the raw data kept, pandas on demand.

Every result hfmagic returns (model cards, variants, benchmark and evaluation results, run lists)
is a :class:`Table` or holds one, so notebooks, the terminal and the command line show the same
figures formatted the same way.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence


@dataclass(frozen=True)
class Column:
    """One column: the row key, its heading, how a value is written, and ``derive``: how the value
    is taken from the whole row when it is not one key's (a speed-up with its interval). The
    columns of hfmagic's figures come from their records' fields (:mod:`hfmagic.core.records`)."""

    key: str
    title: str | None = None
    fmt: str | Callable[[Any], str] | None = None
    align: str = "left"
    derive: Callable[[Any], Any] | None = None

    def heading(self) -> str:
        return self.title or self.key

    def value(self, row) -> Any:
        """The column's value in ``row``: derived from the row, or its key's."""
        return self.derive(row) if self.derive is not None else row.get(self.key)

    def text(self, row) -> str:
        """The cell a table writes for ``row``."""
        return self.format(self.value(row))

    def format(self, value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        if callable(self.fmt):
            return self.fmt(value)
        if self.fmt:
            try:
                return format(value, self.fmt)
            except (TypeError, ValueError):
                return str(value)
        return str(value)


@dataclass
class Table:
    """Rows of dicts with a column spec. ``title`` and ``notes`` frame the table."""

    rows: list[dict[str, Any]]
    columns: Sequence[Column]
    title: str = ""
    notes: list[str] = field(default_factory=list)

    # -- conversions -------------------------------------------------------------------------
    def to_pandas(self):
        import pandas as pd

        keys = [c.key for c in self.columns]
        derived = {c.key: c for c in self.columns if c.derive is not None}
        extra = [k for row in self.rows for k in row if k not in keys]
        ordered = keys + list(dict.fromkeys(extra))

        def value(row, key):  # a key the row has is its raw value; a derived column's otherwise
            return derived[key].value(row) if key in derived and key not in row else row.get(key)

        return pd.DataFrame([{k: value(row, k) for k in ordered} for row in self.rows], columns=ordered)

    def to_json(self, **kwargs) -> str:
        return json.dumps({"title": self.title, "notes": self.notes, "rows": [plain(r) for r in self.rows]},
                          default=str, **kwargs)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    # -- rendering ---------------------------------------------------------------------------
    def cells(self) -> list[list[str]]:
        return [[c.text(row) for c in self.columns] for row in self.rows]

    def __str__(self) -> str:
        return render_text(self.title, [c.heading() for c in self.columns], self.cells(),
                           [c.align for c in self.columns], self.notes)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return render_html(self.title, [c.heading() for c in self.columns], self.cells(),
                           [c.align for c in self.columns], self.notes)


def plain(row) -> Any:
    """A row as a plain dict (a record's :meth:`to_dict`), for JSON and pandas."""
    return row.to_dict() if hasattr(row, "to_dict") else row


def render_text(title: str, headings: Sequence[str], cells: Iterable[Sequence[str]],
                aligns: Sequence[str], notes: Sequence[str] = ()) -> str:
    cells = [list(r) for r in cells]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headings)]

    def line(values):
        return "  ".join(v.rjust(w) if a == "right" else v.ljust(w)
                         for v, w, a in zip(values, widths, aligns)).rstrip()

    out = [title] if title else []
    if headings:
        out += [line(headings), "  ".join("-" * w for w in widths)]
        out += [line(r) for r in cells]
    out += [f"note: {n}" for n in notes]
    return "\n".join(out)


def render_html(title: str, headings: Sequence[str], cells: Iterable[Sequence[str]],
                aligns: Sequence[str], notes: Sequence[str] = ()) -> str:
    esc = html.escape
    parts = ['<div class="hfmagic-table">']
    if title:
        parts.append(f"<strong>{esc(title)}</strong>")
    parts.append("<table><thead><tr>")
    parts += [f'<th style="text-align:{a}">{esc(h)}</th>' for h, a in zip(headings, aligns)]
    parts.append("</tr></thead><tbody>")
    for row in cells:
        parts.append("<tr>" + "".join(f'<td style="text-align:{a}">{esc(v)}</td>'
                                      for v, a in zip(row, aligns)) + "</tr>")
    parts.append("</tbody></table>")
    parts += [f"<div><em>note:</em> {esc(n)}</div>" for n in notes]
    parts.append("</div>")
    return "".join(parts)


def key_value_table(title: str, pairs: Sequence[tuple[str, Any]], notes: Sequence[str] = ()) -> Table:
    """A two-column table for cards (a model, an environment)."""
    return Table([{"field": k, "value": v} for k, v in pairs],
                 [Column("field", ""), Column("value", "")], title=title, notes=list(notes))


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


GATE = 99.0  # percent of the reference's first metric a variant must keep (MLPerf's 99% rule)


def gate_title(lower_is_better: bool = False) -> str:
    """The gate column's heading: ``gate (99%)``; ``gate (101%)`` for a metric where lower is better
    (perplexity), which may grow 1% at most."""
    return f"gate ({200 - GATE:g}%)" if lower_is_better else f"gate ({GATE:g}%)"


def percent_text(value: float) -> str:
    """A percentage as the tables write it: ``98.59%``."""
    return f"{value:.2f}%"


def interval_text(pair) -> str:
    """A metric's 95% interval as the tables write it: ``[0.9300, 0.9600]``."""
    return f"[{pair[0]:.4f}, {pair[1]:.4f}]"


def batch_label(row: dict) -> str | None:
    """The batch an evaluation row was scored at: ``32``; ``1*`` where its predictions depend on the
    batch (dynamic int8); ``8* of 1,8`` for the worst of several sizes. None for a row recorded
    before rows said it."""
    if row.get("batch_size") is None:
        return None
    sizes = row.get("batch_sizes") or []
    return (f"{row['batch_size']}{'*' if row.get('batch_dependent') else ''}"
            + (f" of {','.join(map(str, sizes))}" if len(sizes) > 1 else ""))
