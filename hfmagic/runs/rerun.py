"""``%hfmagic rerun RUN``: the run's core function called again with its recorded parameters, on
the model its provenance names; the new run says what it reruns and what changed since."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

from hfmagic.benchmarking.api import benchmark
from hfmagic.core.errors import UsageProblem
from hfmagic.data.tables import load_data
from hfmagic.evaluation.api import evaluate
from hfmagic.export.api import export_onnx
from hfmagic.models.handle import BUILT_IN_MODELS, load_model
from hfmagic.runs.history import open_store
from hfmagic.store.db import RunStore

# what an export recorded for reading it back, not arguments of export_onnx (benchmark's and
# evaluate's options say theirs: Options.RECORDED)
RECORDED_ONLY = {"target"}


def _core(kind: str) -> Callable:
    if kind == "export":
        return export_onnx
    if kind == "benchmark":
        return benchmark
    if kind == "evaluate":
        return evaluate
    raise UsageProblem(f"cannot rerun a {kind!r} run; rerun takes export, benchmark and evaluate runs")


def in_memory(source: Any) -> bool:
    """Whether a recorded data source was an object in memory (``<DataFrame 40 rows>``), not a name."""
    return isinstance(source, str) and source.startswith("<")


def rerun(run_id: str, store: RunStore | None = None, callback: Callable | None = None, progress: bool = True):
    """Call the run's core function again with its recorded parameters and the model its provenance
    names; the new run is recorded with ``rerun_of`` in its provenance."""
    store = open_store(store)
    run = store.get(run_id)
    core = _core(run["kind"])
    provenance = run["provenance"] or {}
    several = provenance.get("models") or []
    if several:  # one run of several models: every one of them again, in the same order
        loaded = [_model(run, m) for m in several]
        model, notes = [h for h, _ in loaded], [n for _, ns in loaded for n in ns]
    else:
        model, notes = _model(run)
    kwargs, dropped = _arguments(core, run["params"] or {})
    dataset = provenance.get("dataset") or {}
    data_key = {"evaluate": "data", "benchmark": "inputs_source", "export": "calibration"}[run["kind"]]
    if dataset and _is_own_dataset(run, model, dataset, kwargs):
        kwargs[data_key] = None  # evaluate takes the model's own held-out split (the demo's)
    elif dataset and in_memory(dataset.get("source")):
        raise UsageProblem(f"run {run['id']} read its data from an object in memory ({dataset.get('source')}), "
                           "which was not recorded, so it cannot be rerun; save it to a file "
                           f"(df.to_csv('data.csv')) and run %{run['kind']} again with that file")
    elif isinstance(kwargs.get(data_key), str):
        kwargs[data_key] = _path_from(kwargs[data_key], run)
    accepted = inspect.signature(core).parameters
    kwargs.update({k: v for k, v in (("callback", callback), ("progress", progress)) if k in accepted})
    result = core(model, **kwargs)
    notes.insert(0, f"rerun of {run['id']} with its recorded parameters; %hfmagic compare {run['id']} "
                    f"{getattr(result, 'run_id', None) or '(not recorded)'} shows what changed")
    if dropped:
        notes.append(f"recorded parameters this hfmagic no longer takes were left out: {', '.join(dropped)}")
    if getattr(result, "run_id", None):
        store.annotate(result.run_id, rerun_of=run["id"])
        before, now = provenance.get("files") or {}, (store.get(result.run_id)["provenance"] or {}).get("files") or {}
        changed = [name for name in before if name in now and now[name] != before[name]]
        if changed:
            notes.append(f"the files of {', '.join(changed)} differ from run {run['id']}'s (sha256): the figures "
                         "are of different graphs")
    result.notes[:0] = notes
    return result


def _arguments(core: Callable, params: dict) -> tuple[dict, list[str]]:
    """The keyword arguments to call ``core`` with again, from the parameters a run recorded (by
    this hfmagic or an older one), and the recorded names it no longer takes. A core whose options
    are a dataclass (benchmark, evaluate) rebuilds it; another (export_onnx) is given the recorded
    names its signature has."""
    options = getattr(core, "OPTIONS", None)
    if options is not None:
        rebuilt, dropped = options.from_params(params)
        return rebuilt.kwargs(), dropped
    accepted = inspect.signature(core).parameters
    kept = {k: v for k, v in params.items() if k not in RECORDED_ONLY}
    return {k: v for k, v in kept.items() if k in accepted}, sorted(k for k in kept if k not in accepted)


def _model(run: dict, m: dict | None = None):
    """The model a run's provenance names (or ``m``, one of a several-model run's): its folder when
    it is still there, else its source."""

    m = m or (run["provenance"] or {}).get("model") or {}
    source, path = m.get("source"), m.get("path")
    name, task = m.get("name"), m.get("task")
    if source in BUILT_IN_MODELS:  # demo, demo-small: rebuilt from their recipe when the cache has none
        handle = load_model(source, task=task, name=name)
    elif path and (Path(path) / "config.json").exists():
        handle = load_model(path, task=task, name=name)
        if not in_memory(source):
            handle.source, handle.revision = source, m.get("revision")
    elif source and not in_memory(source):
        handle = load_model(source, task=task, revision=m.get("revision"), name=name)
    else:
        raise UsageProblem(f"run {run['id']} was made from a model object in memory, saved at {path}, which is "
                           f"gone; load the model again and run %{run['kind']} on it afresh")
    notes = []
    if m.get("weights_sha256") and handle.weights_sha256 != m["weights_sha256"]:
        notes.append(f"the weights at {handle.path} changed since run {run['id']} (sha256 "
                     f"{m['weights_sha256'][:12]}... then, {handle.weights_sha256[:12]}... now)")
    return handle, notes


def _is_own_dataset(run: dict, model, dataset: dict, kwargs: dict) -> bool:
    """Whether an evaluation read the model's own held-out split (the demo's): told by the data's
    fingerprint, so it is rerun on exactly the same examples."""
    if isinstance(model, list):  # several models: the first one's data is the evaluation's
        model = model[0]
    if run["kind"] != "evaluate" or model.dataset is None:
        return False

    again = load_data(model.dataset, text_column=kwargs.get("text_column"), label_column=kwargs.get("label_column"),
                      limit=kwargs.get("limit"))
    return again.fingerprint.get("sha256") == dataset.get("sha256")


def _path_from(value: str, run: dict) -> str:
    """A relative data path is read from the folder the run was made in when it is not here."""
    path = Path(value).expanduser()
    cwd = (run.get("environment") or {}).get("cwd")
    if not path.is_absolute() and not path.exists() and cwd and (Path(cwd) / path).exists():
        return str(Path(cwd) / path)
    return value
