"""Measuring one variant on one backend, in a worker process (``python -m hfmagic.measure.worker``) or inline.

The kernel (or the command line) starts one worker per variant x backend. The worker reads one
job as a JSON line on stdin, loads the variant once, measures every shape of the job, and writes
each finished shape as a JSON line on its real stdout the moment it is done (libraries' own prints
go to stderr). It exits when its job is done or when the parent goes away (stdin closes). The
parent waits on those lines with a blocking read, so it sleeps while the worker measures.

Timing rule per shape (as optimum-benchmark and IPython's %timeit): one first run (timed alone:
``first_ms``, which holds torch.compile's compile or TensorRT's engine build), ``warmup`` runs,
then runs until at least ``min_runs`` AND at least ``min_time`` seconds; every sample is kept.
With real texts the end-to-end runs (tokenizer included) follow, with their own warm-up.

``peak_mem_mb`` is the peak resident set size of the measuring process while that shape ran:
Linux's VmHWM, reset before the shape (``/proc/self/clear_refs``), read after it. Where the reset
is not possible it is the process's lifetime peak (``ru_maxrss``), and the job says so.

``HFMAGIC_WORKER_FAULT=crash|hang|raise:VARIANT:BATCHxSEQ`` (comma-separated for several) makes a
worker fail on purpose at that shape (SIGKILL itself, as the out-of-memory killer does; sleep;
raise), to test that a sweep survives it. ``bimodal:VARIANT:MS`` makes two runs in five of that
variant (every shape) MS milliseconds slower, so its timings really form two modes (60% / 40%), to
test that the rows report both. It is read in worker processes only, never inline.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Iterator

from hfmagic import backends
from hfmagic.core.compilecache import keep_compile_cache_in_hfmagic
from hfmagic.core.errors import BackendUnavailable
from hfmagic.core.timing import timed_runs
from hfmagic.measure.memory import oom_kills
from hfmagic.measure.spec import variant_from_spec
from hfmagic.tasks import ensure

FAULT_ENV = "HFMAGIC_WORKER_FAULT"


# -- the measuring side (runs in the worker, or in the kernel with --inline) ----------------------

def run_job(job: dict, process_start: float | None = None, in_worker: bool = False) -> Iterator[dict]:
    """Load the job's variant on its backend once, then yield one message per shape.

    Messages: ``{"type": "ready", ...}`` after loading (``startup_s``: from ``process_start``, or
    from the backend's imports when None, to the start of loading; ``load_s``: loading the
    variant), ``{"type": "error", "error": ..., "unavailable": bool}`` when loading failed (a GPU
    provider that did not start is unavailable), then ``{"type": "row", "row": {...}}`` per shape,
    in the job's order. ``in_worker``: this process is a worker of its own (process-wide settings
    stay; the fault hook is read).
    """
    loader = _load(job, process_start, in_worker)
    ready = next(loader)
    yield ready
    if ready["type"] != "ready":
        return
    backend, model, texts, tokenizer = next(loader)
    spec, load_s = job["variant"], ready["load_s"]
    previous = None  # (tokens, p50 ms) of the last shape measured: estimates the next one's cost
    try:
        axis = model.task_plugin.inputs.AXIS
        for batch, seq in job["shapes"]:
            base = {"batch_size": batch, axis.key: seq, "load_s": load_s, "pid": os.getpid()}
            if _over_budget(job, batch * seq, previous):
                yield {"type": "row", "row": {**base, "status": "skipped: budget"}}
                continue
            try:
                if in_worker:
                    _inject_fault(spec["name"], batch, seq)
                row = measure(backend, batch, seq, job, texts, tokenizer, model)
            except Exception as exc:
                row = {"status": f"failed: {one_line(exc)}"}
            else:
                import numpy as np

                previous = (batch * seq, float(np.median(row.get("wall_ms") or row["samples_ms"])))
            yield {"type": "row", "row": {**base, **row}}
    finally:
        backend.close()


def _load(job: dict, process_start: float | None, in_worker: bool, park_when_idle: bool = False):
    """Load the job's variant on its backend: yields the ready (or error) message, then, when ready,
    (backend, model, texts, tokenizer)."""

    spec = job["variant"]
    try:
        ensure(spec.get("task_origin"))  # a task registered at run time in the parent
        backends.ensure(job.get("backend_origin"))  # and a backend
    except Exception as exc:
        yield {"type": "error", "error": one_line(exc), "unavailable": False}
        return
    variant = variant_from_spec(spec)
    model = variant.model
    backend = backends.get_backend(job["backend"])(own_process=in_worker)
    backend.park_when_idle = park_when_idle
    try:
        texts = model.task_plugin.inputs.from_payload(job.get("texts"))  # --inputs: texts, images or clips
        start = time.time()
        backend.imports()
        loading = time.time()
        backend.load(variant, job["threads"])
        load_s = time.time() - loading
        tokenizer = model.preprocessor() if texts and not model.kind.READS_EXAMPLES else None
    except Exception as exc:  # the rows of this job say why; the sweep goes on

        backend.close()
        unavailable = isinstance(exc, BackendUnavailable)
        yield {"type": "error", "error": str(exc) if unavailable else one_line(exc), "unavailable": unavailable}
        return
    if in_worker:
        _inject_slow_runs(backend, spec["name"])
    startup_s = loading - (process_start if process_start is not None else start)
    yield {"type": "ready", "startup_s": startup_s, "load_s": load_s, "pid": os.getpid(),
           "threads_used": backend.threads_used()}
    yield backend, model, texts, tokenizer


def measure(backend, batch: int, seq: int, job: dict, texts, tokenizer, model) -> dict:
    """Time one shape: first run, warm-up, then the timed runs (model only; then end to end)."""
    task = model.task_plugin.measurement
    inputs = make_inputs(model, backend.input_names, batch, seq, texts, tokenizer, job.get("chat_template", False))
    prepared = backend.prepare(inputs)
    exact_peak = reset_peak_memory()
    clock = time.perf_counter_ns
    t0 = clock()
    task.run_once(backend, model, prepared, job)
    first_ms = (clock() - t0) / 1e6
    for _ in range(task.warmups(job["warmup"])):
        task.run_once(backend, model, prepared, job)
    timed = task.timed_runs(backend, model, prepared, job["min_runs"], job["min_time"], job)
    row = {"status": "ok", "first_ms": first_ms, "e2e_samples_ms": None, **timed}
    if texts and tokenizer is not None and task.END_TO_END:  # a classical baseline's runs are end to end already
        batches = [texts[i:i + batch] for i in range(0, len(texts) - batch + 1, batch)] or [texts[:batch]]
        cursor = iter(range(1 << 62))

        def end_to_end():
            chunk = batches[next(cursor) % len(batches)]
            backend.run(backend.prepare(make_inputs(model, backend.input_names, len(chunk), seq, chunk,
                                                    tokenizer)))

        for _ in range(job["warmup"]):  # the tokenizer's first calls, as the model's, stay out of the samples
            end_to_end()
        row["e2e_samples_ms"] = timed_runs(end_to_end, job["min_runs"], job["min_time"])
    row["peak_mem_mb"] = peak_memory_mb()
    row["peak_mem_exact"] = exact_peak
    return row


def make_inputs(model, names: list[str], batch: int, seq: int, texts=None, tokenizer=None,
                chat: bool = False) -> dict:
    """The inputs ``names`` (what the backend's model takes) of exactly (batch, seq), as the model's
    task makes them: synthetic (text: random valid token ids, attention mask of ones, token types
    0, positions 0..seq-1), or real texts tokenized, padded and truncated to ``seq``; ``chat``: a
    decoder's prompts in its chat template."""
    if model.kind.READS_EXAMPLES:  # a classical baseline: the texts themselves (its kind cuts them to seq words)
        return model.kind.inputs(model, texts, batch, seq)
    inputs = model.task_plugin.inputs
    if chat:
        return inputs.feed(model, inputs.chat(model, batch, seq, texts), names)
    if texts:
        chunk = [texts[i % len(texts)] for i in range(batch)]
        return inputs.feed(model, inputs.encode(model, chunk, seq), names)
    return inputs.synthetic(names, inputs.shape(model, batch, seq), model.config)


def reset_peak_memory() -> bool:
    """Reset this process's peak RSS (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_memory_mb() -> float:
    """Peak resident set size of this process in MB (VmHWM; else ru_maxrss)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _over_budget(job: dict, tokens: int, previous) -> bool:
    """Would this shape end past the sweep's deadline? Estimated from the last shape's median
    (twice over with real texts: the end-to-end runs repeat the model-only ones)."""
    if job.get("deadline") is None:
        return False
    estimate = job["min_time"]
    if previous:
        per_run = previous[1] / 1000 * tokens / previous[0]
        estimate = max(job["min_time"], job["min_runs"] * per_run) + (job["warmup"] + 1) * per_run
    return time.time() + estimate * (2 if job.get("texts") else 1) > job["deadline"]


def _inject_fault(variant: str, batch: int, seq: int) -> None:
    for spec in os.environ.get(FAULT_ENV, "").split(","):
        kind, _, where = spec.partition(":")
        if where != f"{variant}:{batch}x{seq}":
            continue
        if kind == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        elif kind == "hang":
            time.sleep(3600)
        elif kind == "raise":
            raise RuntimeError(f"fault injected by {FAULT_ENV}")
        elif kind == "orphan" and os.fork() == 0:  # a child that keeps the pipe open, as a library's
            time.sleep(600)                          # forked telemetry sender can
            os._exit(0)


def _inject_slow_runs(backend, variant: str) -> None:
    """``bimodal:VARIANT:MS``: the second and fourth of every five runs of ``variant`` take MS more."""
    extra = [float(ms) for kind, _, where in (spec.partition(":") for spec in os.environ.get(FAULT_ENV, "").split(","))
             for name, _, ms in [where.rpartition(":")] if kind == "bimodal" and name == variant]
    if not extra:
        return
    run, count = backend.run, iter(range(1 << 62))

    def slowed(*args, **kwargs):
        out = run(*args, **kwargs)
        if next(count) % 5 in (1, 3):
            time.sleep(extra[0] / 1000)
        return out

    backend.run = slowed


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Measurer:
    """One variant loaded on its backend, measuring slices of shapes when asked (interleaved rounds).

    ``ready`` is the message loading gave (``ready`` or ``error``, as :func:`run_job`'s). Each
    ``slice(batch, seq, runs, round)`` times exactly ``runs`` runs of that shape; a shape's first
    slice also makes its inputs, times its first run alone (``first_ms``) and does the warm-up
    runs. Between slices the worker blocks on its command pipe, and onnxruntime's threads stop
    busy-waiting the moment a run ends (``session.force_spinning_stop`` = 1), so an idle worker
    takes no CPU from the one measuring (torch's OpenMP threads spin only briefly, then sleep).
    Within a run they spin as a default session's do: ``allow_spinning`` = 0 put them to sleep at
    every operator, and the wake-ups showed (MiniLM read 1.083 of a bare loop's latency)."""

    def __init__(self, job: dict, process_start: float | None = None, in_worker: bool = False):
        self.job, self.in_worker = job, in_worker
        self.prepared: dict[tuple[int, int], object] = {}
        self.backend = None
        loader = _load(job, process_start, in_worker, park_when_idle=True)
        self.ready = next(loader)
        if self.ready["type"] == "ready":
            self.backend, self.model, self.texts, self.tokenizer = next(loader)
            self.end_to_end = self.tokenizer is not None and self.model.task_plugin.measurement.END_TO_END

    def slice(self, batch: int, seq: int, runs: int, round_no: int) -> dict:
        out = {"type": "slice", "shape": [batch, seq], "round": round_no, "pid": os.getpid()}
        try:
            first_ms, peak = None, {}
            task = self.model.task_plugin.measurement
            key = (batch, seq)
            if key not in self.prepared:  # its peak memory: from its inputs' making through this slice
                exact = reset_peak_memory()
                if self.in_worker:
                    _inject_fault(self.job["variant"]["name"], batch, seq)
                inputs = make_inputs(self.model, self.backend.input_names, batch, seq, self.texts, self.tokenizer,
                                     self.job.get("chat_template", False))
                prepared = self.prepared[key] = self.backend.prepare(inputs)
                t0 = time.perf_counter_ns()
                task.run_once(self.backend, self.model, prepared, self.job)
                first_ms = (time.perf_counter_ns() - t0) / 1e6
                for _ in range(task.warmups(self.job["warmup"])):
                    task.run_once(self.backend, self.model, prepared, self.job)
                if self.end_to_end:  # the tokenizer's first calls stay out of the samples too
                    for _ in range(self.job["warmup"]):
                        self._end_to_end(batch, seq)
            prepared = self.prepared[key]
            timed = task.timed_runs(self.backend, self.model, prepared, runs, 0.0, self.job)
            e2e = timed_runs(lambda: self._end_to_end(batch, seq), runs, 0.0) if self.end_to_end else None
            if first_ms is not None:
                # memory an allocator keeps from a larger shape run earlier in this process would count
                # here too: the row says so (round 1 runs each worker's shapes smallest first)
                larger = any(b * s > batch * seq or (b * s == batch * seq and s > seq) for b, s in self.prepared
                             if (b, s) != key)
                peak = {"peak_mem_mb": peak_memory_mb(), "peak_mem_exact": exact, "peak_mem_after_larger": larger}
            return out | timed | {"e2e_samples_ms": e2e, "first_ms": first_ms, **peak}
        except Exception as exc:
            return out | {"error": f"failed: {one_line(exc)}"}

    def _end_to_end(self, batch: int, seq: int) -> None:
        """One run of tokenizer plus model on the next ``batch`` real texts."""
        self._cursor = getattr(self, "_cursor", -batch) + batch
        texts = self.texts
        chunk = [texts[(self._cursor + i) % len(texts)] for i in range(batch)]
        self.backend.run(self.backend.prepare(make_inputs(self.model, self.backend.input_names, batch, seq, chunk,
                                                          self.tokenizer)))

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()


# -- the parent side ------------------------------------------------------------------------------

class WorkerProcess:
    """A running worker: send it a job, then read its messages with a blocking wait."""

    def __init__(self, job: dict):
        self._oom_kills = oom_kills()  # the cgroup's count: if it rises, the OOM killer ended the worker
        self._stderr = tempfile.TemporaryFile(mode="w+b")
        env = os.environ.copy()  # keeps ORT_DISABLE_TELEMETRY=1
        keep_compile_cache_in_hfmagic(env)  # the kernel's cache folder, should it be set there by %config
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hfmagic.measure.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr, env=env,
            start_new_session=True,  # Ctrl-C reaches the parent only; it stops the worker
        )
        self.proc.stdin.write((json.dumps(job) + "\n").encode())
        self.proc.stdin.flush()
        self._lines: queue.Queue = queue.Queue()
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for line in self.proc.stdout:
                self._lines.put(json.loads(line))
        except ValueError:  # not a protocol line: the worker is broken; end it and say how it ended
            self.proc.kill()
        finally:
            self._lines.put(None)

    def send(self, command: dict) -> None:
        """A command to a serving worker (``{"cmd": "slice", ...}``); a gone worker's next() says so."""
        try:
            self.proc.stdin.write((json.dumps(command) + "\n").encode())
            self.proc.stdin.flush()
        except OSError:
            pass

    def next(self, timeout: float) -> dict | None:
        """The next message; None when the worker has exited. Raises TimeoutError after ``timeout``.

        Waits on the queue a second at a time: a child the worker left behind can hold the pipe
        open after the worker is gone, so the end of the pipe alone does not say it exited."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._lines.get(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
            except queue.Empty:
                if self.proc.poll() is not None:  # gone: what it wrote is read within a moment
                    try:
                        return self._lines.get(timeout=1.0)
                    except queue.Empty:
                        return None
                if time.monotonic() >= deadline:
                    raise TimeoutError from None

    def exit_reason(self) -> str:
        """Why the worker ended: its exit status or signal, and the last line it wrote to stderr."""

        code = self.proc.wait()
        if code < 0:
            name = signal.Signals(-code).name
            before, after = self._oom_kills, oom_kills()
            if name == "SIGKILL" and before is not None and after is not None and after > before:
                what = "killed by the out-of-memory killer (SIGKILL)"
            else:
                what = f"killed by {name}" + (" (out of memory? the kernel's OOM killer sends it)"
                                              if name == "SIGKILL" else "")
        else:
            what = f"exited with status {code}"
        self._stderr.seek(0)
        lines = [ln for ln in self._stderr.read().decode(errors="replace").splitlines() if ln.strip()]
        return what + (f"; last stderr line: {lines[-1].strip()}" if lines else "")

    def close(self) -> None:
        """End the worker and anything it started (its process group: it leads a session). Once:
        after the worker is reaped its group id could in time name another process group."""
        if self._closed:
            return
        self._closed = True
        self._kill_group()  # the worker, and children of it that still hold the pipe
        self.proc.wait()
        self._reader.join(timeout=2)
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        if not self._reader.is_alive():  # closing under a blocked reader would wait on its lock
            self.proc.stdout.close()
        self._stderr.close()

    def _kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class InlineServer:
    """A serving worker in this process (``--inline`` with interleaved rounds)."""

    def __init__(self, job: dict):
        self.measurer = Measurer(job)
        self._pending = [self.measurer.ready]

    def send(self, command: dict) -> None:
        self._pending.append(self.measurer.slice(*command["shape"], command["runs"], command["round"]))

    def next(self, timeout: float) -> dict | None:
        return self._pending.pop(0) if self._pending else None

    def exit_reason(self) -> str:
        return "ended without a result"

    def close(self) -> None:
        self.measurer.close()


class InlineRun:
    """A job run in this process (``--inline``), read the way a worker is; nothing can time out."""

    def __init__(self, job: dict):
        self._messages = run_job(job)

    def next(self, timeout: float) -> dict | None:
        return next(self._messages, None)

    def exit_reason(self) -> str:
        return "ended without a result"

    def close(self) -> None:
        self._messages.close()


# -- the worker process ---------------------------------------------------------------------------

def main() -> None:
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything else printed to stdout (by Python or C libraries) goes to stderr
    sys.stdout = sys.stderr
    job = json.loads(sys.stdin.readline())
    import psutil

    def send(message: dict) -> None:
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    if job.get("serve"):  # interleaved rounds: slices on request until the parent ends or goes away
        measurer = Measurer(job, psutil.Process().create_time(), in_worker=True)
        send(measurer.ready)
        if measurer.ready["type"] == "ready":
            for line in sys.stdin:  # idle here: a blocking read, no CPU
                command = json.loads(line)
                if command.get("cmd") != "slice":
                    break
                send(measurer.slice(*command["shape"], command["runs"], command["round"]))
        measurer.close()
        return
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    for message in run_job(job, psutil.Process().create_time(), in_worker=True):
        send(message)


def _exit_with_parent() -> None:
    sys.stdin.read()  # blocks until the parent closes stdin or goes away
    os._exit(0)


if __name__ == "__main__":
    main()
