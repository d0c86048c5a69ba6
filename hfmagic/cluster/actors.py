"""Benchmark workers as Ray actors: one per variant x backend, on the node of its place.

Each worker runs the same :class:`hfmagic.measure.worker.Measurer` (interleaved rounds) or
:func:`hfmagic.measure.worker.run_job` (``--order sequential``) a local worker process runs, on one
node. Timing happens on that node; only the finished samples come back. :class:`RayWorker` reads
the actor the way :class:`hfmagic.measure.worker.WorkerProcess` reads a pipe, so the sweep does not
know the difference. The workers of one sweep on one node request, all together, ``threads`` CPUs
and the resources asked for (each worker a fraction: they measure one at a time), so Ray runs
nothing else of ours in those CPUs. A node that dies under a worker is told apart from a worker
that died (its rows say lost, not crashed), and later workers there are not started.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from hfmagic.cluster.connect import Cluster, Place, error_line, worker_env
from hfmagic.cluster.transfer import folder_digest, have, localize, materialize, variant_folders
from hfmagic.measure.worker import Measurer, run_job

HEALTH_WAIT_S = 40.0  # how long a worker that stopped answering may take to be told lost with its node


class _Worker:
    """A benchmark worker on a node (made a Ray actor by :func:`_actor_class`)."""

    def __init__(self, job: dict):
        self.job, self.measurer, self.messages = job, None, None

    def missing(self, digests: list[str]) -> dict:
        import ray

        return {"missing": [d for d in digests if not have(d)], "node_id": ray.get_runtime_context().get_node_id(),
                "pid": os.getpid()}

    def start(self, folders: dict[str, str], holders: dict[str, list]) -> dict:
        """Receive what is missing, then load the variant: the ready (or error) message."""

        t0 = time.time()
        try:
            here, received = {}, 0
            for role, digest in folders.items():
                here[role], got = materialize(digest, holders.get(digest))
                received += got
        except Exception as exc:
            return {"type": "error", "error": f"the variant's files did not arrive: {error_line(exc)}",
                    "unavailable": False}
        transfer_s = time.time() - t0
        job = {**self.job, "variant": localize(self.job["variant"], here)}
        if job.get("serve"):
            self.measurer = Measurer(job, None, in_worker=True)
            ready = self.measurer.ready
        else:
            self.messages = run_job(job, None, in_worker=True)
            ready = next(self.messages)
        return {**ready, "transfer_mb": received / 1e6, "transfer_s": transfer_s,
                "niceness": os.getpriority(os.PRIO_PROCESS, 0)}

    def slice(self, batch: int, seq: int, runs: int, round_no: int) -> dict:
        return self.measurer.slice(batch, seq, runs, round_no)

    def next(self) -> dict | None:
        return next(self.messages, None)

    def close(self) -> None:
        if self.measurer is not None:
            self.measurer.close()
        if self.messages is not None:
            self.messages.close()


_actor = None


def _actor_class():
    global _actor
    if _actor is None:
        import ray

        _actor = ray.remote(max_restarts=0, max_task_retries=0)(_Worker)
    return _actor


class RayWorker:
    """A benchmark worker as a Ray actor on ``place``, read as :class:`hfmagic.measure.worker.WorkerProcess`
    is: ``next(timeout)`` gives its messages (``None`` once it is gone), ``send`` a slice command.
    ``share``: the fraction of the place's CPUs and resources this worker requests (its sweep's
    workers there take them all, together)."""

    def __init__(self, cluster: Cluster, place: Place, job: dict, share: float):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        job = {**job, "variant": {**job["variant"], "path_is_dir": bool(job["variant"]["path"])
                                  and Path(job["variant"]["path"]).is_dir()}}
        self.cluster, self.place, self.job = cluster, place, job
        self.lost = False       # the node died under it: its rows say lost, not crashed
        self._why = "ended without a result"
        self._closed = False
        self.created = time.time()
        cpus = _fraction(job["threads"] * share)
        gpus = _fraction(place.resources.get("GPU", 0) * share)
        others = {k: _fraction(v * share) for k, v in place.resources.items() if k != "GPU"}
        self.actor = _actor_class().options(
            num_cpus=cpus, num_gpus=gpus, resources=others, runtime_env=worker_env(job["threads"]),
            scheduling_strategy=NodeAffinitySchedulingStrategy(place.node.id, soft=False),
        ).remote(job)
        self.folders = {role: folder_digest(path) for role, path in variant_folders(job["variant"]).items()}
        self._pending = None
        self._started = False

    def next(self, timeout: float) -> dict | None:
        import ray

        if self.place.dead:
            self.lost, self._why = True, self.place.dead
            return None
        deadline = time.monotonic() + timeout
        try:
            if not self._started:
                self._started = True
                return self._start(deadline)
            if self._pending is None:
                self._pending = self.actor.next.remote()
            ref, self._pending = self._pending, None
            return self._get(ref, deadline)
        except ray.exceptions.GetTimeoutError:
            raise TimeoutError from None
        except ray.exceptions.RayActorError as exc:
            self._gone(exc)
            return None

    def _start(self, deadline: float) -> dict:
        answer = self._get(self.actor.missing.remote(list(self.folders.values())), deadline)
        wanted = {d: p for role, p in variant_folders(self.job["variant"]).items()
                  if (d := self.folders[role]) in answer["missing"]}
        holders = self.cluster.refs(wanted)
        sent = time.time()
        ready = self._get(self.actor.start.remote(self.folders, holders), deadline)
        if ready["type"] == "ready":
            # the worker's start as the kernel sees it: scheduling, process start and imports (the
            # files' transfer and the variant's loading are counted apart)
            ready["startup_s"] = (sent - self.created) + max(0.0, ready.get("startup_s", 0.0))
            if ready.get("niceness"):
                self.place.niceness = ready["niceness"]
        return ready

    def _get(self, ref, deadline: float):
        import ray

        return ray.get(ref, timeout=max(0.001, deadline - time.monotonic()))

    def send(self, command: dict) -> None:
        if command.get("cmd") == "slice":
            self._pending = self.actor.slice.remote(*command["shape"], command["runs"], command["round"])

    def _gone(self, exc: BaseException) -> None:
        """The actor stopped answering: its node died (then every later worker there is refused at
        once), or its process did."""
        import ray

        text = str(exc)
        node = self.place.node.id
        dead = "node has died" in text or not _alive(node)
        if not dead and isinstance(exc, ray.exceptions.ActorUnavailableError):
            end = time.monotonic() + HEALTH_WAIT_S  # the node's heartbeats decide
            while not dead and time.monotonic() < end:
                time.sleep(1.0)
                dead = not _alive(node)
        if dead:
            self.lost = True
            self._why = self.place.dead = (f"node died: {self.place.label} ({node[:12]}, "
                                           f"{self.place.node.card.get('host')}) {_death_reason(node)}").strip()
        else:
            self._why = f"died: {' '.join(text.split())[:300]}"

    def exit_reason(self) -> str:
        return self._why

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        import ray

        try:
            ray.kill(self.actor, no_restart=True)
        except Exception:  # already gone with its node
            pass


def _fraction(value: float) -> float:
    """A resource amount Ray accepts (four decimals), rounded down, never below 0.0001 when asked."""
    if value <= 0:
        return 0
    return max(0.0001, int(value * 10_000) / 10_000)


def _alive(node_id: str) -> bool:
    import ray

    return any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes())


def _death_reason(node_id: str) -> str:
    import ray

    for n in ray.nodes():
        if n["NodeID"] == node_id and not n["Alive"]:
            why = " ".join(str(n.get("DeathReasonMessage") or "").split())
            return f"({why[:200]})" if why else ""
    return ""
