"""A load test in the dashboard's front end: p99 latency against achieved requests per second, one
line per served configuration, the SLO drawn across, the highest rate inside it marked, and the
table beside (``js/dashboard.js``, its ``loadtest`` view).

Every figure is the load test's own (:mod:`hfmagic.serving.result`), computed once in Python: a
point is a rate's row (its achieved rate, its p99, or TTFT's p99 for a streamed answer, which is
what the SLO judges there), a curve's best rate is ``LoadTestResult.best()``, its accuracy verdict
the %evaluate gate the result carries, and the table's cells are the text table's. The browser
only places them.
"""

from __future__ import annotations

from typing import Any

import anywidget
import traitlets

from hfmagic.ui.widget import _JS_DIR, _PAGE, _script_json, writing


def curves(result: Any) -> list[dict]:
    """One curve per configuration: its rates' points (lowest rate first), its best rate, its gate."""
    best = result.best()
    out: dict[str, dict] = {}
    for row in result.rows:
        judged = "ttft_p99_ms" if row.get("ttft_p99_ms") is not None else "p99_ms"
        curve = out.setdefault(row["config"], {
            "config": row["config"], "best": best.get(row["config"]), "judged": judged,
            "gate": (result.accuracy.get(row["config"]) or {}).get("gate"), "points": []})
        if row.get(judged) is None:  # every request failed: no latency to place (the table says why)
            continue
        curve["points"].append({
            "rate": row["rate"], "x": row["achieved_rps"], "y": row[judged], "status": row["status"],
            "ok": row["status"] == "ok",
            "tip": f"{row['config']} at {row['rate']:g}/s offered: achieved {row['achieved_rps']:.1f}/s, "
                   f"{'TTFT p99' if judged == 'ttft_p99_ms' else 'p99'} {row[judged]:.1f} ms; {row['status']}"})
    for curve in out.values():
        curve["points"].sort(key=lambda p: p["rate"])
    return list(out.values())


class LoadTestView(anywidget.AnyWidget):
    """A load test's curves and table (see the module docstring)."""

    _esm = _JS_DIR / "dashboard.js"
    _css = _JS_DIR / "dashboard.css"

    view = traitlets.Unicode("loadtest", help="which of dashboard.js's views draws this").tag(sync=True)
    curves = traitlets.List(traitlets.Dict(), help="per configuration: config, best, judged, gate and its "
                                                   "points (rate, x, y, status, ok, tip)").tag(sync=True)
    slo_ms = traitlets.Float(None, allow_none=True, help="the p99 budget, drawn across").tag(sync=True)
    headings = traitlets.List(traitlets.Unicode()).tag(sync=True)
    cells = traitlets.List(traitlets.List(traitlets.Unicode()), help="the table's cells as the text table "
                                                                     "writes them").tag(sync=True)
    notes = traitlets.List(traitlets.Unicode()).tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)

    def __init__(self, result: Any, **kwargs):
        super().__init__(**kwargs)
        self.result = result
        table = result.table()
        self.curves, self.slo_ms = curves(result), result.slo_ms
        self.headings = [c.heading() for c in table.columns]
        self.cells = table.cells()
        self.notes = list(table.notes)
        self.title = table.title or "load test"

    def __str__(self) -> str:
        return str(self.result)

    def state(self) -> dict:
        """What the front end is given (to_html embeds it)."""
        return {name: getattr(self, name) for name in ("view", "curves", "slo_ms", "headings", "cells", "notes", "title")}

    def to_html(self, path, title: str | None = None):
        """One self-contained HTML page with these curves and the table, offline (as Dashboard.to_html)."""
        import html
        from pathlib import Path

        path = Path(path).expanduser()
        page = _PAGE.format(title=html.escape(title or self.title), css=(_JS_DIR / "dashboard.css").read_text(),
                            state=_script_json(self.state()), esm=_script_json((_JS_DIR / "dashboard.js").read_text()),
                            table=self.result.table()._repr_html_(), extra="")
        with writing(path) as f:
            f.write(page)
        return path

    def _repr_mimebundle_(self, **kwargs):
        """The widget, plus the table as HTML and text for frontends that cannot show widgets."""
        data, metadata = super()._repr_mimebundle_(**kwargs)
        table = self.result.table()
        data.update({"text/plain": str(table), "text/html": table._repr_html_()})
        return data, metadata
