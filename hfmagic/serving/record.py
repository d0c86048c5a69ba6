"""What a load test keeps beside its rows: each served configuration's accuracy, from %evaluate's
own gate, and its run in the store (kind ``loadtest``, with the environment card every run has).

A configuration's accuracy is the row of its variant in an evaluation of the same weights: the one
given (``accuracy=``: an EvaluationResult), else the newest ``evaluate`` run in the store with such
a row. The load test never scores accuracy itself: %evaluate's figure and verdict (99% of the
reference, MLPerf's rule) are the ones it shows, with the run they come from.
"""

from __future__ import annotations

import contextlib

SHORT_SHA = 12  # an evaluation row's model_sha: the start of the weights' sha256


def _verdict(row: dict, metric: str | None, source: str, reference: str | None) -> dict:
    gate = "reference" if row.get("variant") == reference else row.get("gate")
    return {"gate": gate, "pct_of_reference": row.get("pct_of_reference"), "metric": metric,
            "value": row.get(metric) if metric else None, "accuracy_from": source}


def _row_of(rows, variant: str, sha: str) -> dict | None:
    """The evaluation row of ``variant`` on the weights whose sha256 is ``sha``, where it ran."""
    return next((r for r in rows if r.get("variant") == variant and r.get("status") == "ok"
                 and (r.get("model_sha") or "") == sha[:SHORT_SHA]), None)


def _from_result(result, variant: str, sha: str) -> dict | None:
    if (row := _row_of(result.rows, variant, sha)) is not None:
        return _verdict(row, (result.metrics or [None])[0], f"evaluate run {result.run_id or '(unrecorded)'}",
                        result.reference)
    return None


def _from_store(store, variant: str, sha: str) -> dict | None:
    with contextlib.suppress(Exception):  # no store, or a damaged one: the accuracy is unknown, said so
        for run in store.runs(kind="evaluate", model=sha[:16], limit=20):
            if run["status"] not in ("ok", "interrupted"):
                continue
            params = run["params"] or {}
            metric = next(iter(params.get("metric_names") or params.get("metrics") or []), None)
            if (row := _row_of(store.rows(run["id"]), variant, sha)) is not None:
                return _verdict(row, metric, f"evaluate run {run['id']}", params.get("reference"))
    return None


def accuracy_of(served: list, given=None, store=None) -> dict[str, dict | None]:
    """Each served configuration's accuracy (by name): its variant's %evaluate row, from ``given``
    (an EvaluationResult, or a list of them) or else the store; None where none is found."""
    given = [] if given is None else given if isinstance(given, (list, tuple)) else [given]
    out: dict[str, dict | None] = {}
    for s in served:
        sha = s.handle.weights_sha256 or ""
        found = next((f for r in given if (f := _from_result(r, s.variant, sha))), None)
        out[s.name] = found or (_from_store(store, s.variant, sha) if store is not None else None)
    return out


def accuracy_note(name: str, found: dict | None) -> str:
    """What a configuration's accuracy is, in a line of the load test's notes."""
    if found is None:
        return (f"{name}: accuracy unknown: no %evaluate of its variant on these weights (run %evaluate on the "
                "variants, or pass accuracy=)")
    if found["gate"] == "reference":
        return f"{name}: accuracy is the reference's ({found['accuracy_from']})"
    pct = found.get("pct_of_reference")
    share = f"{pct:.2f}% of the reference's {found['metric'] or 'metric'}" if pct is not None else "not compared"
    return f"{name}: accuracy {share}, gate {found['gate'] or '-'} ({found['accuracy_from']})"


def provenance(served: list) -> dict:
    """The models served, their variants' files (sha256) and where each was served."""
    models = list({id(s.handle): s.handle for s in served}.values())
    out = {"model": models[0].provenance(), "files": {s.name: s.variant_sha for s in served if s.variant_sha},
           "served": {s.name: s.url for s in served}}
    if len(models) > 1:
        out["models"] = [m.provenance() for m in models]
    return out
