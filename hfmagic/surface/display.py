"""How a result is shown: the dashboard where a widget frontend can draw it, the table elsewhere.

The rule: a shell that runs inside a Jupyter kernel (ipykernel's ``ZMQInteractiveShell``, which
has ``.kernel`` and the comm manager widgets talk through) gets the dashboard for benchmark and
evaluation results. Plain IPython in a terminal, the test suite's ``InteractiveShell`` and any
shell without a kernel get the result's own HTML/text table; so does ``--no-widget``. The
dashboard's display bundle also carries the table as ``text/html`` and ``text/plain``, so a viewer
of the saved notebook without widget support shows the table. (nbconvert's HTML exporter is the
exception when the notebook stores widget state: it then prefers the widget view, whose renderer
comes from a CDN; convert with ``--ExecutePreprocessor.store_widget_state=False`` for the tables.)
"""

from __future__ import annotations

from typing import Any, Callable


def widgets_available(shell) -> bool:
    """True in a Jupyter kernel that can talk to widgets (see the module docstring)."""
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return False
    try:
        import anywidget  # noqa: F401
        import comm
    except ImportError:
        return False
    return comm.get_comm_manager() is not None


def has_dashboard_rows(result: Any) -> bool:
    """Benchmark and evaluation results (``.rows`` of variant dicts) are what the dashboard shows."""
    import sys

    # only a module already imported can have made the result: no import for other results
    types = [getattr(sys.modules.get(module), name, None) for module, name in
             (("hfmagic.benchmarking.result", "BenchmarkResult"), ("hfmagic.evaluation.result", "EvaluationResult"))]
    return isinstance(result, tuple(t for t in types if t is not None))


class LiveView:
    """The callback a running benchmark/evaluation reports to: the first event shows a dashboard,
    rows are added as they finish, progress events move its bar; ``finish`` puts the final result in
    and refreshes the displayed output, so its table fallback holds the final rows too."""

    def __init__(self, kind: str, display: Callable[..., Any]):
        self.kind = kind
        self.dashboard = None
        self._display = display
        self._handle = None

    def __call__(self, event: dict) -> None:
        if self.dashboard is None:
            from hfmagic.ui.widget import Dashboard

            self.dashboard = Dashboard()
            self._handle = self._display(self.dashboard, display_id=True)
        if event.get("type") == "row":
            self.dashboard.add_row(event["row"])
        elif event.get("type") == "progress":
            self.dashboard.set_progress(event["done"], event["total"], event.get("label", ""))

    def finish(self, result: Any) -> None:
        self.dashboard.finish(result)
        if self._handle is not None:
            self._handle.update(self.dashboard)


def live_view(shell, kind: str, widget: bool = True) -> LiveView | None:
    """A live dashboard callback for ``kind`` runs, or None where no dashboard can be shown."""
    if not widget or not widgets_available(shell):
        return None
    from IPython.display import display

    return LiveView(kind, display)


def show(shell, result: Any, live: LiveView | None = None, widget: bool = True) -> None:
    """Show ``result``: into the live dashboard that streamed it, as a new dashboard, or as its table."""
    from IPython.display import display

    if live is not None and live.dashboard is not None and has_dashboard_rows(result):
        live.finish(result)
    elif widget and has_dashboard_rows(result) and widgets_available(shell):
        from hfmagic.ui.widget import Dashboard

        display(Dashboard(result))
    elif widget and _loadtested(result) and widgets_available(shell):
        display(result.dashboard())  # p99 against achieved throughput per configuration, and the table
    elif widget and _searched(result) and widgets_available(shell):
        display(result)  # the trace: what was tried and why each was dropped
        if result.benchmark is not None:  # then the confirmed configurations against their accuracy
            display(result.dashboard())
        if getattr(result, "loadtest", None) is not None:  # --objective serve: the served configurations' curves
            display(result.loadtest.dashboard())
    else:
        display(result)


def _searched(result: Any) -> bool:
    """An %optimize result (only a module already imported can have made one)."""
    import sys

    cls = getattr(sys.modules.get("hfmagic.optimizing.result"), "OptimizeResult", None)
    return cls is not None and isinstance(result, cls)


def _loadtested(result: Any) -> bool:
    """A %loadtest result (only a module already imported can have made one)."""
    import sys

    cls = getattr(sys.modules.get("hfmagic.serving.result"), "LoadTestResult", None)
    return cls is not None and isinstance(result, cls)
