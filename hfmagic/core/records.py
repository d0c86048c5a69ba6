"""Typed records: the rows hfmagic measures and the options of a call, each field's title, unit,
format and meaning written once, here.

A :class:`Field` says what one figure (or label) is: its key, a table's heading for it, its unit,
how a table writes it, what it means, and for a cell derived from the whole row (a speed-up with
its interval and trust) how. The rows are dataclasses whose fields carry theirs
(:class:`BenchmarkRow`: one configuration of a sweep; :class:`EvalRow`: one variant of an
evaluation). Every view (the benchmark and evaluation tables, the report's summary, the run list
and compare, the dashboard and its page) asks :func:`field_of` or :func:`columns` for a figure's
heading, unit and format, and writes none of them itself.

A row still reads and writes as the dict it was (``row["p50_ms"]``, ``row.get``, ``"gate" in row``,
``{**row}``, ``row.update``); what the run store keeps is :meth:`Record.to_dict`, the same JSON as
before these records (rows read back from the store are those dicts). Beyond its own fields a row
carries the figures its task or its evaluation adds, under keys declared here too: a task declares
its own with :func:`declare` (a generation's TTFT and TPOT, speech's RTF), and a metric's fields are
made from its name (:func:`metric_fields`: ``accuracy``, ``accuracy_low``, ``accuracy_high``).

A call's options are a dataclass too (:class:`Options`): its fields are the keyword arguments of
``benchmark()`` or ``evaluate()`` (:func:`takes` makes the function's signature and help from them)
and what the run store keeps to run it again (:meth:`Options.params`, :meth:`Options.from_params`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Mapping
from typing import Any, Callable, ClassVar

from hfmagic.core.results import Column, gate_title, interval_text, percent_text
from hfmagic.core.shapes import AXES
from hfmagic.core.stats import DISTURBED, MIN_CLEAN, p50_text, speedup_text


@dataclasses.dataclass(frozen=True)
class Field:
    """One figure or label of a record: its key, a table's heading for it, its unit (``ms``, ``MB``,
    ``x``, ``%``; empty for names and plain numbers), how a table writes it (a format spec or a
    function of the value), what it means, and ``derive``: how a view gets the value from the
    whole row when it is not one key's (a speed-up's text, a metric's interval). ``timed`` and
    ``relative`` say how two runs' values may be set against each other (:mod:`hfmagic.runs.compare`)."""

    key: str
    title: str | None = None
    unit: str = ""
    fmt: str | Callable[[Any], str] | None = None
    doc: str = ""
    derive: Callable[[Mapping], Any] | None = None
    align: str | None = None  # default: right for a figure (a format or a unit), left for a label
    timed: bool = False     # a timing: it depends on the machine and software that measured it
    relative: bool = False  # read against a row of its own run (its baseline, its reference)

    def heading(self) -> str:
        return self.title or self.key

    def column(self, title: str | None = None, derive: Callable[[Mapping], Any] | None = None) -> Column:
        """This field as a table's column; ``title``: a view's own heading for it (``clips/s``);
        ``derive``: how that view's rows give its value, where they do not hold it."""
        align = self.align or ("right" if self.fmt or self.unit else "left")
        return Column(self.key, title or self.title, self.fmt, align, derive or self.derive)

    def write(self, row: Mapping) -> str:
        """The cell every view writes for this field of ``row``."""
        return self.column().text(row)

    def describe(self) -> dict:
        """What the dashboard's page is told of it: heading, unit and meaning."""
        return {"key": self.key, "title": self.heading(), "unit": self.unit, "doc": self.doc}


def _f(title: str | None = None, unit: str = "", fmt: Any = None, doc: str = "", **more) -> Any:
    """A record's field, None until measured; its Field's key is the attribute's name."""
    return dataclasses.field(default=None, metadata={"field": Field("", title, unit, fmt, doc, **more)})


def record(cls: type) -> type:
    """Make ``cls`` a record: a dataclass (compared as the mapping it reads as) whose ``FIELDS`` are
    its fields' Fields, keyed by name."""
    cls = dataclasses.dataclass(eq=False, repr=False)(cls)
    cls.FIELDS = {f.name: dataclasses.replace(f.metadata["field"], key=f.name)
                  for f in dataclasses.fields(cls) if "field" in f.metadata}
    return cls


class Record(Mapping):
    """A row as a dataclass that reads and writes as the dict it was. Keys beyond its fields (its
    task's figures, its metrics) are kept beside them, in order. ``DENSE``: every field is a key
    (None until measured), as a benchmark row's always were; otherwise a field is a key once it is
    given a value, as an evaluation row's were. ``GIVEN_ONLY``: fields of a dense record that are keys
    only once given (a figure few rows have, added after rows were stored: those rows, and new ones
    without it, keep the JSON they had)."""

    FIELDS: ClassVar[dict[str, Field]] = {}
    DENSE: ClassVar[bool] = True
    GIVEN_ONLY: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        present = ([k for k in self.FIELDS if k not in self.GIVEN_ONLY] if self.DENSE else
                   [k for k in self.FIELDS if getattr(self, k) is not None])
        self.__dict__["_keys"] = dict.fromkeys(present)  # an ordered set: the keys, as a dict's were
        self.__dict__["_extra"] = {}

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        keys = self.__dict__.get("_keys")
        if keys is not None and name in self.FIELDS:
            keys[name] = None

    # -- the mapping ---------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key not in self._keys:
            raise KeyError(key)
        return getattr(self, key) if key in self.FIELDS else self._extra[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self.FIELDS:
            setattr(self, key, value)
        else:
            self._extra[key] = value
            self._keys[key] = None

    def __iter__(self):
        return iter(list(self._keys))

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def update(self, other: Mapping | typing.Iterable = (), **more: Any) -> None:
        for key, value in dict(other, **more).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def copy(self) -> "Record":
        return type(self).from_dict(self)

    def to_dict(self) -> dict:
        """The row as the dict the run store keeps (and rows were before they were records)."""
        return {key: self[key] for key in self._keys}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Record":
        """A row from its dict (the store's, or an older hfmagic's: keys it does not know are kept)."""
        row = cls()
        for key, value in data.items():
            row[key] = value
        return row

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.items() if v is not None and not isinstance(v, list))
        return f"{type(self).__name__}({shown})"


# -- the rows --------------------------------------------------------------------------------------
_AXIS = {a.key: _f(a.label, a.unit or ("tokens" if a.key == "seq_len" else ""), "d",
                   f"{a.noun} of the measured inputs ({a.flag})") for a in AXES}


@record
class BenchmarkRow(Record):
    """One configuration of a benchmark (model x variant x backend x node x batch x size): latency
    figures computed from the raw samples it keeps, throughput, memory, the speed-up against the
    sweep's baseline, and where and how it was measured. A configuration that did not run has its
    status and no figures."""

    GIVEN_ONLY = frozenset({"modes_ms", "mode_shares"})  # a row whose runs form two modes has them

    model: str | None = _f(doc="the model's name")
    model_sha: str | None = _f("weights", doc="the first 12 hex digits of the model's weights sha256")
    variant: str | None = _f(doc="what was measured: torch (PyTorch eager) or an ONNX variant (fp32, O2, int8, ...)")
    backend: str | None = _f(doc="what ran it: torch, onnxruntime, openvino, ...")
    node: str | None = _f(doc="where it ran: local, or a Ray cluster's kind of node (--on each)")
    batch_size: int | None = _f("batch", "examples", "d", "examples per run")
    seq_len: int | None = _AXIS["seq_len"]
    image_size: int | None = _AXIS["image_size"]
    audio_seconds: int | None = _AXIS["audio_seconds"]
    status: str | None = _f(doc="ok, or why it has no figures (failed: ..., crashed: ..., skipped: budget, ...)")
    mean_ms: float | None = _f("mean ms", "ms", ".2f", "mean latency of the timed runs", timed=True)
    std_ms: float | None = _f("std ms", "ms", ".2f", "sample standard deviation (ddof=1) of the timed runs' latencies", timed=True)
    p50_ms: float | None = _f("p50 ms", "ms", None, "50th percentile (median) of the timed runs' latencies, over all "
                              "its rounds; a generation's: of its time per output token; '(2 modes)' where the runs "
                              "form two clusters (modes_ms)", derive=p50_text, timed=True)
    p90_ms: float | None = _f("p90 ms", "ms", ".2f", "90th percentile of the timed runs' latencies", timed=True)
    p95_ms: float | None = _f("p95 ms", "ms", ".2f", "95th percentile of the timed runs' latencies", timed=True)
    p99_ms: float | None = _f("p99 ms", "ms", ".2f", "99th percentile of the timed runs' latencies", timed=True)
    min_ms: float | None = _f("min ms", "ms", ".2f", "the fastest timed run", timed=True)
    max_ms: float | None = _f("max ms", "ms", ".2f", "the slowest timed run", timed=True)
    cv: float | None = _f("CV", "", ".1%", "coefficient of variation of the timed runs: std over mean")
    runs: int | None = _f("runs", "runs", "d", "timed runs")
    modes_ms: list | None = _f("modes ms", "ms", lambda v: " / ".join(f"{m:.2f}" for m in v),
                               "where the timed runs form two clusters (a run takes one speed or the other): each "
                               "one's median, fastest first; absent where they form one (the rule: "
                               "hfmagic.core.stats.two_modes)", timed=True)
    mode_shares: list | None = _f("mode shares", "", lambda v: " / ".join(f"{m:.0%}" for m in v),
                                  "the share of the timed runs in each of those two modes")
    samples_per_s: float | None = _f("samples/s", "examples/s", ".1f", "examples per second: batch x runs over the "
                                                                       "time they took", timed=True)
    tokens_per_s: float | None = _f("tokens/s", "tokens/s", ".0f", "tokens per second: samples/s x tokens per sequence", timed=True)
    peak_mem_mb: float | None = _f("peak MB", "MB", ".0f", "peak resident memory while the shape ran (the notes say "
                                                          "of which process)")
    startup_s: float | None = _f("start s", "s", ".2f", "seconds the worker took to start")
    load_s: float | None = _f("load s", "s", ".2f", "seconds to load the variant")
    first_ms: float | None = _f("first ms", "ms", ".1f", "the shape's first, untimed run")
    size_mb: float | None = _f("size MB", "MB", ".1f", "the variant's size on disk (PyTorch's weights for torch)")
    speedup: float | None = _f("speed-up [95% CI]", "x", None, "the baseline's latency over this row's (paired by "
                               "round when interleaved): above 1 is faster; written with its 95% interval, or "
                               "'not trustworthy' where too few clean rounds remain", derive=speedup_text, timed=True, relative=True)
    speedup_low: float | None = _f("speed-up low", "x", ".2f", "lower end of the speed-up's 95% interval")
    speedup_high: float | None = _f("speed-up high", "x", ".2f", "upper end of the speed-up's 95% interval")
    e2e_p50_ms: float | None = _f("e2e p50 ms", "ms", ".2f", "with real inputs (--inputs): the preprocessor and the "
                                                             "model per run, 50th percentile", timed=True)
    threads: int | None = _f("threads", "threads", "d", "threads every backend was given")
    isolation: str | None = _f(doc="what measured it: a worker process, this process (inline) or a ray actor")
    pid: int | None = _f(doc="the measuring process's id")
    rounds: int | None = _f("rounds", "rounds", "d", "interleaved rounds this configuration was measured in")
    disturbed_rounds: int | None = _f("disturbed", "rounds", "d", f"rounds whose slice median was over {DISTURBED:g}x "
                                                                  "this configuration's best")
    speedup_rounds: int | None = _f("paired rounds", "rounds", "d", "rounds the paired speed-up was computed from")
    speedup_trust: bool | None = _f(doc=f"False where fewer than {MIN_CLEAN} clean paired rounds remain: the speed-up "
                                        "is not trustworthy")
    host: str | None = _f(doc="the host name of the machine that measured it")
    hardware: str | None = _f(doc="that machine's CPU and GPUs, in short")
    node_id: str | None = _f(doc="the Ray node's id (first 12 hex digits); None for a row measured here")
    transfer_mb: float | None = _f("transfer MB", "MB", ".1f", "files sent to the node before it ran (a cluster's)")
    transfer_s: float | None = _f("transfer s", "s", ".2f", "seconds their transfer took")
    samples_ms: list | None = _f(unit="ms", doc="every timed run's latency as measured: the raw samples the figures "
                                                "are computed from")
    sample_rounds: list | None = _f(doc="the interleaved round each sample was measured in")
    e2e_samples_ms: list | None = _f(unit="ms", doc="the end-to-end latencies, with --inputs")


@record
class EvalRow(Record):
    """One variant of an evaluation: its metrics with their bootstrap 95% intervals (keys made from
    each metric's name), how it compares with the reference (agreement, flips, % of the reference's
    first metric and the 99% gate), and the batch and time it was scored at. A key is present once
    the evaluation gave it."""

    DENSE = False

    model: str | None = _f(doc="the model's name")
    model_sha: str | None = _f("weights", doc="the first 12 hex digits of the model's weights sha256")
    variant: str | None = _f(doc="what was scored: torch (PyTorch eager) or an ONNX variant")
    status: str | None = _f(doc="ok, or why it has no figures")
    n: int | None = _f("n", "examples", "d", "examples scored")
    batch_size: int | None = _f("batch", "examples", "d", "the batch size its figures are for (of several: the "
                                                           "worst's)")
    batch_dependent: bool | None = _f(doc="its predictions depend on the batch they run in (dynamic int8): scored at "
                                          "batch 1 unless --batch-size says otherwise")
    padding: str | None = _f(doc="how its batches were padded")
    backend: str | None = _f(doc="what its ONNX file ran on, where --backend was given")
    load_s: float | None = _f("load s", "s", ".2f", "seconds to load the variant")
    seconds: float | None = _f("seconds", "s", ".2f", "seconds spent in the model over the data")
    samples_per_s: float | None = _f("samples/s", "examples/s", ".1f", "examples scored per second (the model's time)", timed=True)
    shards: int | None = _f("shards", "tasks", "d", "Ray tasks its batches ran as, on a cluster")
    nodes: str | None = _f(doc="the Ray nodes its shards ran on")
    host: str | None = _f(doc="the hosts its shards ran on")
    agreement: float | None = _f("agreement", "fraction", ".2%", "share of the examples whose prediction is the "
                                                                 "reference's", relative=True)
    flip_rate: float | None = _f("flip rate", "fraction", ".2%", "share of the examples whose prediction changed", relative=True)
    flips: int | None = _f("flips", "examples", "d", "examples whose prediction changed (.flips lists them)")
    max_logit_diff: float | None = _f("max |diff|", "", ".2e", "largest absolute difference between its logits and "
                                                               "the reference's", relative=True)
    pct_of_reference: float | None = _f("% of reference", "%", percent_text, "its first metric as a percentage of the "
                                                                             "reference's", relative=True)
    gate: str | None = _f(gate_title(), doc="pass where it keeps 99% of the reference's first metric (101% at most "
                                            "where lower is better, as perplexity), else fail")
    batch_sizes: list | None = _f(doc="every batch size it was scored at, where several were asked for")
    batch_scores: list | None = _f(doc="its first metric, % of reference and gate at each of those sizes")


def metric_fields(name: str, doc: str | None = None) -> tuple[Field, Field, Field, Field]:
    """A metric's fields, made from its name: its value, the two ends of its bootstrap 95% interval,
    and the interval as the tables write it (``<name>_ci``, derived from the two ends)."""
    low, high = f"{name}_low", f"{name}_high"
    what = doc or f"{name} of the variant's predictions on the data"

    def interval(row: Mapping):
        return None if row.get(low) is None or row.get(high) is None else (row[low], row[high])

    return (Field(name, name, "", ".4f", what),
            Field(low, f"{name} low", "", ".4f", f"lower end of the bootstrap 95% interval of {name}"),
            Field(high, f"{name} high", "", ".4f", f"upper end of the bootstrap 95% interval of {name}"),
            Field(f"{name}_ci", "95% CI", "", interval_text, f"the bootstrap 95% interval of {name}", derive=interval))


# the cells views derive from rows: the dashboard's and the report's first metric, the batch an
# evaluation's figures are for, the report's shape, the data an evaluation read
VIEW: dict[str, Field] = {f.key: f for f in (
    *metric_fields("metric", "the evaluation's first metric (its name heads the column)"),
    Field("eval_batch", "scored at batch", doc="the batch the metric was scored at: * marks a variant whose "
          "predictions depend on the batch; 'of 1,8': the sizes it was scored at, the worst shown (batch_label)",
          align="right"),
    Field("shape", doc="the backend, node and shape of the row the p50 and the speed-up are from (the smallest "
                       "measured)"),
    Field("data_sha", "data", doc="the first 12 hex digits of the evaluation data's sha256"),
)}

_DECLARED: dict[str, Field] = {}


def declare(*fields: Field) -> tuple[Field, ...]:
    """Declare the figures a task or an evaluator adds to its rows, for every view to find; a key
    means one thing: declaring it again differently is refused."""
    for f in fields:
        known = _DECLARED.get(f.key) or BenchmarkRow.FIELDS.get(f.key) or EvalRow.FIELDS.get(f.key)
        if known is not None and known != f:
            raise ValueError(f"the field {f.key!r} is declared already, as {known.heading()!r} ({known.doc}); a "
                             "key means one thing: give the new figure another key")
        _DECLARED[f.key] = f
    return fields


def keys(fields: typing.Iterable[Field]) -> tuple[str, ...]:
    """The keys of ``fields`` (a task's ``ROW_KEYS`` from its declared fields)."""
    return tuple(f.key for f in fields)


def field_of(key: str, record: type | None = None) -> Field:
    """What ``key`` is: ``record``'s own field, else a benchmark row's, an evaluation row's, a view's
    or a declared one (in that order); a key nobody declared is a bare field named by its key."""
    for fields in ([record.FIELDS] if record is not None else []) + [BenchmarkRow.FIELDS, EvalRow.FIELDS, VIEW,
                                                                      _DECLARED]:
        if key in fields:
            return fields[key]
    return Field(key)


def is_declared(key: str) -> bool:
    """Whether some record, view or declaration describes ``key`` (a metric's keys are made from its name)."""
    return any(key in fields for fields in (BenchmarkRow.FIELDS, EvalRow.FIELDS, VIEW, _DECLARED))


def columns(*names: str, record: type | None = None, **titles: str) -> list[Column]:
    """The columns of these keys, as the registry defines them; ``titles``: a view's own headings."""
    return [field_of(k, record).column(titles.get(k)) for k in names]


# -- a call's options ----------------------------------------------------------------------------
def option(default: Any = None, doc: str = "", stored: bool = True, omit_default: bool = False) -> Any:
    """One keyword argument of a call: its default and meaning, and whether the run store keeps it
    (``stored``; ``omit_default``: only when it is not its default)."""
    return dataclasses.field(default=default, metadata={"doc": doc, "stored": stored, "omit_default": omit_default})


class Options:
    """A call's keyword arguments as one dataclass: its signature and help (:func:`takes`), the
    values the call resolved (set on it as it resolves them: the batch sizes and threads it used),
    and what the run store keeps to run it again. ``RECORDED``: what the call keeps beside them for
    reading the run back (the baseline it resolved, the models' paths), never passed again."""

    RECORDED: ClassVar[frozenset[str]] = frozenset()

    def params(self) -> dict:
        """What the run store keeps of these options."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("stored", True) and not (f.metadata.get("omit_default") and value == f.default):
                out[f.name] = value
        return out

    def kwargs(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_params(cls, params: Mapping) -> tuple["Options", list[str]]:
        """The options a recorded run was called with, from what the store kept (by any hfmagic that
        recorded it), and the names it kept that this hfmagic no longer takes."""
        names = {f.name for f in dataclasses.fields(cls)}
        dropped = sorted(k for k in params if k not in names and k not in cls.RECORDED)
        return cls(**{k: v for k, v in params.items() if k in names}), dropped

    @classmethod
    def help(cls) -> str:
        """A paragraph per option: its name, default and meaning."""
        import textwrap

        lines = [textwrap.fill(f"{f.name}={f.default!r}: {f.metadata.get('doc', '')}", 100, initial_indent="    ",
                               subsequent_indent="        ") for f in dataclasses.fields(cls)]
        return f"\n\nOptions (keyword arguments; {cls.__name__}):\n" + "\n".join(lines)


def takes(options: type) -> Callable:
    """Make ``func(target, options)`` callable as ``func(target, name=value, ...)``, one keyword (or
    position) per option, as a plain function would be: its signature and help are the options'
    (their defaults and meanings, written once, on the dataclass)."""
    hints = typing.get_type_hints(options)
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter("target", kind)] + [
        inspect.Parameter(f.name, kind, default=f.default, annotation=hints.get(f.name, inspect.Parameter.empty))
        for f in dataclasses.fields(options)]

    def decorate(func: Callable) -> Callable:
        returns = typing.get_type_hints(func).get("return", inspect.Signature.empty)
        signature = inspect.Signature(parameters, return_annotation=returns)

        @functools.wraps(func)
        def call(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            given = dict(bound.arguments)
            target = given.pop("target")
            return func(target, options(**given))

        call.__signature__ = signature
        call.__doc__ = inspect.cleandoc(func.__doc__ or "") + options.help()
        call.OPTIONS = options
        return call

    return decorate
