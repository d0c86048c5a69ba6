"""``serve()``: a variant behind a real HTTP endpoint on Ray Serve, with its dynamic batching.

Each served configuration (variant x backend x replicas x largest batch x batch wait) is a Ray
Serve application of its own, at ``http://127.0.0.1:PORT/NAME``: several can be served side by
side and load-tested against each other. Ray runs on a cluster of this machine's own, started on
first use and bound to 127.0.0.1 (:class:`~hfmagic.cluster.local.LocalCluster`: Ray's usage
statistics and dashboard off), so nothing listens beyond this machine; it stops with the kernel.
A request is JSON ``{"inputs": EXAMPLE}`` (a text, a question and its context, an image or audio
file in base64); the answer is the task's prediction, %evaluate's (:mod:`hfmagic.serving.replica`).
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import time
from dataclasses import dataclass, field

from hfmagic.core.errors import UsageProblem
from hfmagic.core.results import Column, Table

START_TIMEOUT_S = 180.0

_ray = None        # the LocalCluster Serve runs on (one per kernel)
_cluster = None    # or the Ray cluster joined with --cluster (hfmagic.cluster.connect.Cluster)
_port = None       # Serve's HTTP port
_host = "127.0.0.1"  # and address: loopback, or a joined cluster's head node
DEFAULT_PORT = 8000  # Ray Serve's own, on a cluster's head
_served: dict[str, "Served"] = {}


@dataclass
class Served:
    """A served configuration: its URL, what it runs, and where its replicas are. ``stop()`` takes
    it down (``%serve --stop NAME``)."""

    name: str
    url: str
    model: str
    variant: str
    backend: str
    replicas: int
    max_batch: int
    batch_wait_ms: float
    threads: int
    placement: list[dict] = field(default_factory=list)  # each replica: its actor and node
    started_s: float = 0.0
    stopped: bool = False
    request: str = '"a text"'  # what one request's "inputs" holds (the task's Requests.SHAPE)
    handle: object = field(default=None, repr=False, compare=False)  # the model (what a load test sends it)
    streams: bool = False  # answers streamed token by token (a decoder)
    variant_sha: str | None = None  # the variant file's sha256 (a run's provenance)

    def config(self) -> dict:
        """What this configuration is, for a load test's rows."""
        return {"config": self.name, "variant": self.variant, "backend": self.backend, "replicas": self.replicas,
                "max_batch": self.max_batch, "batch_wait_ms": self.batch_wait_ms}

    def stop(self) -> None:
        if self.stopped:
            return
        from ray import serve

        serve.delete(self.name)
        self.stopped = True
        _served.pop(self.name, None)

    def table(self) -> Table:
        rows = [{"replica": p["replica"], "node": p["node"], "pid": p["pid"], "state": p["state"]}
                for p in self.placement]
        notes = [f"POST JSON {{\"inputs\": {self.request}, \"max_new_tokens\": 64}} to {self.url}; the answer streams "
                 "one JSON line per new token, then one with the whole text, server_ttft_ms and server_ms (the "
                 "replica's times, its queue included)" if self.streams else
                 f"POST JSON {{\"inputs\": {self.request}}} to {self.url}; the answer gives the prediction, server_ms "
                 "(the replica's time for the request, batching wait included) and the batch it ran in",
                 f"{self.variant} on {self.backend}, {self.threads} thread(s) per replica; "
                 + ("one generation at a time per replica (the others wait their turn)" if self.streams else
                    f"dynamic batching: up to {self.max_batch} request(s), waiting {self.batch_wait_ms:g} ms for more")
                 + f"; started in {self.started_s:.1f} s" + ("; stopped" if self.stopped else "")]
        return Table(rows, [Column("replica"), Column("node"), Column("pid"), Column("state")],
                     title=f"served {self.name} at {self.url}", notes=notes)

    def __str__(self) -> str:
        return str(self.table())

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()


def _start_serve(port: int | None, cluster: str | None = None) -> int:
    """Ray and Serve's HTTP proxy, once per kernel: a Ray cluster of this machine's own on
    127.0.0.1, or (``cluster``) the Ray cluster at that address, joined as %benchmark --cluster
    joins it, Serve's one proxy on its head node."""
    global _ray, _port, _cluster, _host
    try:
        import ray.serve  # noqa: F401
    except ImportError:
        raise UsageProblem("%serve needs Ray Serve: pip install 'hfmagic[ray]' (ray[serve])") from None
    if cluster is not None and _ray is not None:
        raise UsageProblem("this kernel serves on a Ray cluster of its own already; stop what it serves "
                           "(%serve --stop) before serving on --cluster")
    if cluster is None and _cluster is not None:
        raise UsageProblem(f"this kernel serves on the Ray cluster at {_cluster.address}; give --cluster "
                           f"{_cluster.address}, or stop what it serves (%serve --stop) first")
    if cluster is not None and _cluster is not None and cluster != _cluster.address:
        raise UsageProblem(f"this kernel serves on the Ray cluster at {_cluster.address} already (one per kernel); "
                           "stop what it serves (%serve --stop) first")
    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # the driver's own INFO lines, one per call
    if cluster is not None and _cluster is None:
        from hfmagic.cluster.connect import connect

        _cluster = connect(cluster)
        atexit.register(stop_all)
    elif cluster is None and _ray is None:
        from hfmagic.cluster.local import LocalCluster

        _ray = LocalCluster([{}], cpus=os.cpu_count() or 2).start()
        atexit.register(stop_all)
    if _port is None:
        from ray import serve

        from hfmagic.cluster.local import free_port

        host = "127.0.0.1" if _cluster is None else _head_ip()
        wanted = port or (free_port() if host == "127.0.0.1" else DEFAULT_PORT)
        try:
            serve.start(proxy_location="HeadOnly", http_options={"host": host, "port": wanted},
                        logging_config={"log_level": "WARNING"})
        except Exception as exc:
            raise UsageProblem(f"Ray Serve could not listen on {host}:{wanted} ({exc}); give another --port")
        _port, _host = wanted, host
    elif port is not None and port != _port:
        raise UsageProblem(f"Ray Serve listens on {_host}:{_port} already (one port per kernel); leave out --port "
                           "or give that one")
    return _port


def _head_ip() -> str:
    """The address of the cluster's head node, where Serve's proxy listens."""
    import ray

    for node in ray.nodes():
        if node.get("Alive") and "node:__internal_head__" in (node.get("Resources") or {}):
            return node["NodeManagerAddress"]
    return ray.util.get_node_ip_address()


def _check_port(port: int | None) -> None:
    if port is None or port == _port:
        return
    if not 0 < port < 65536:
        raise UsageProblem(f"--port must be between 1 and 65535, got {port}")
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise UsageProblem(f"port {port} on 127.0.0.1 is in use; give another --port, or leave it out for a free "
                               "one") from None


def serve(target, variant: str | None = None, replicas: int = 1, max_batch: int = 1, batch_wait_ms: float = 0.0,
          backend: str | None = None, threads: int = 1, port: int | None = None, name: str | None = None,
          delay_ms: float = 0.0, cluster: str | None = None) -> Served:
    """Serve ``variant`` of ``target`` (a Variants from export_onnx, or a model handle: its torch
    variant) on Ray Serve at ``http://127.0.0.1:PORT/NAME``: ``replicas`` copies, each loading the
    variant on ``backend`` (onnxruntime for ONNX, torch for torch) with ``threads`` threads, with
    dynamic batching (up to ``max_batch`` requests, waiting ``batch_wait_ms`` for more). ``name``:
    the route (default model-variant-rN-bB). ``delay_ms``: every batch made that much slower (a
    server slow on purpose, for trying a load test). ``cluster``: serve on the Ray cluster at this
    address (``HOST:PORT``, ``ray://HOST:PORT``, ``auto``) instead of this machine's own: the
    variant's files travel to its nodes through Ray's object store, Serve's proxy listens on its
    head. Bad input is refused before Ray starts."""
    from hfmagic.backends import default_backends, get_backend
    from hfmagic.models.variants import Variant, Variants, model_of

    model = model_of(target)
    model.task_plugin.requests.check(model)
    if isinstance(target, Variants):
        chosen = variant or ("fp32" if "fp32" in target.names else target.names[0])
        if chosen not in target.names:
            raise UsageProblem(f"unknown variant {chosen!r}; use one of: {', '.join(target.names)}")
        picked = target[chosen]
        if not picked.ok:
            raise UsageProblem(f"variant {chosen} did not build ({picked.error}); serve another")
    else:
        if variant not in (None, "torch"):
            raise UsageProblem(f"{model.name} is a model handle: it serves its torch variant; export it first "
                               f"(v = %export_onnx {model.name}) and serve v --variant {variant}")
        picked = Variant("torch", model, size_bytes=model.weights_bytes)
    backend = backend or default_backends(picked.kind)[0]
    cls = get_backend(backend)
    if cls.RUNS != picked.kind:
        raise UsageProblem(f"backend {backend} runs {cls.RUNS} variants, and {picked.name} is {picked.kind}; give "
                           f"--backend {default_backends(picked.kind)[0]}")
    for value, what, least in ((replicas, "replicas", 1), (max_batch, "max-batch", 1), (threads, "threads", 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UsageProblem(f"--{what} must be a whole number, at least {least}, got {value!r}")
    if batch_wait_ms < 0:
        raise UsageProblem(f"--batch-wait-ms must be 0 or more milliseconds, got {batch_wait_ms:g}")
    if model.task_plugin.requests.STREAMS and (max_batch > 1 or batch_wait_ms):
        raise UsageProblem(f"{model.name}'s answers stream token by token, one generation at a time per replica: "
                           "leave out --max-batch and --batch-wait-ms (batching generations in flight is a serving "
                           "engine's work: vLLM, TGI); --replicas adds generations in parallel")
    name = name or f"{model.name}-{picked.name}-r{replicas}-b{max_batch}".replace("/", "-")
    if name in _served and not _served[name].stopped:
        raise UsageProblem(f"{name} is served already at {_served[name].url}; stop it first ({name}.stop() or "
                           f"%serve --stop {name}) or give --name")
    _check_port(port)

    from ray import serve as ray_serve

    from hfmagic.cluster.connect import worker_env
    from hfmagic.measure.spec import variant_spec
    from hfmagic.serving.replica import Replica

    started = time.time()
    http_port = _start_serve(port, cluster)
    _check_cpus(replicas * threads, replicas, threads)
    spec, folders, holders = variant_spec(picked), None, None
    if _cluster is not None:  # no shared disk: the files go through the object store, once per node
        from hfmagic.cluster.transfer import folder_digest, variant_folders

        paths = variant_folders(spec)
        folders = {role: folder_digest(path) for role, path in paths.items()}
        holders = _cluster.refs({folders[role]: path for role, path in paths.items()})
    app = Replica.options(name="Replica", num_replicas=replicas,
                          ray_actor_options={"num_cpus": threads, "runtime_env": worker_env(threads)}).bind(
        spec, backend, threads, max_batch, batch_wait_ms / 1000, delay_ms, folders, holders)
    try:
        ray_serve.run(app, name=name, route_prefix=f"/{name}")
    except Exception as exc:
        raise UsageProblem(f"{name} did not start on Ray Serve: {str(exc).strip().splitlines()[-1][:300]}") from None
    served = Served(name, f"http://{_host}:{http_port}/{name}", model.name, picked.name, backend, replicas,
                    max_batch, batch_wait_ms, threads, _placement(name), time.time() - started,
                    request=model.task_plugin.requests.SHAPE, handle=model,
                    streams=model.task_plugin.requests.STREAMS, variant_sha=picked.sha256)
    _served[name] = served
    return served


def _check_cpus(need: int, replicas: int, threads: int, wait_s: float = 15.0) -> None:
    """Refuse in one line a configuration the local Ray cannot place (Serve would wait for CPUs
    forever); a configuration stopped a moment ago frees its CPUs within seconds: waited for."""
    import ray

    end = time.monotonic() + wait_s
    while (free := ray.available_resources().get("CPU", 0.0)) < need and time.monotonic() < end and _served:
        time.sleep(0.5)
    if free < need:
        total = ray.cluster_resources().get("CPU", 0.0)
        names = ", ".join(f"{s.name} ({s.replicas * s.threads})" for s in served().values()) or "none"
        raise UsageProblem(f"{replicas} replica(s) x {threads} thread(s) need {need} CPUs; this machine's Ray has "
                           f"{free:g} of {total:g} free (served: {names}); stop one (%serve --stop NAME) or ask for "
                           "fewer")


def _placement(name: str) -> list[dict]:
    """Each live replica of application ``name``: its id, node and process, from Ray's GCS (the
    state API needs Ray's dashboard, which the local cluster leaves off)."""
    try:
        from ray._private.state import actors

        table = actors(actor_state_name="ALIVE")
    except Exception:  # best effort: the endpoint works without it
        return []
    out = []
    for actor in table.values():
        actor_name = actor.get("Name") or ""
        if actor_name.startswith("SERVE_REPLICA::") and f"::{name}#" in actor_name:
            address = actor.get("Address") or {}
            out.append({"actor": actor_name, "replica": actor_name.split("#")[-1], "node": (address.get("NodeID") or "")[:12],
                        "pid": actor.get("Pid"), "state": actor.get("State")})
    return out


def served() -> dict[str, Served]:
    """The configurations served now, by name."""
    return {k: v for k, v in _served.items() if not v.stopped}


def stop(name: str | None = None) -> list[str]:
    """Stop one served configuration (``name``) or every one; returns the names stopped."""
    if name is not None:
        if name not in served():
            raise UsageProblem(f"nothing is served under {name!r}; served: {', '.join(served()) or 'none'}")
        served()[name].stop()
        return [name]
    names = list(served())
    for n in names:
        _served[n].stop()
    return names


def stop_all() -> None:
    """Every served configuration, Serve and the local Ray cluster (at kernel exit)."""
    global _ray, _port, _cluster, _host
    for s in list(_served.values()):
        s.stopped = True
    _served.clear()
    if _cluster is not None:  # a cluster joined: Serve goes, the cluster stays (it is not this kernel's)
        from hfmagic.cluster.connect import disconnect

        try:
            from ray import serve

            serve.shutdown()
        except Exception:
            pass
        disconnect()
    if _ray is not None:
        from hfmagic.cluster.connect import disconnect

        try:
            from ray import serve

            serve.shutdown()
        except Exception:
            pass
        disconnect()
        _ray.stop()
    _ray, _port, _cluster, _host = None, None, None, "127.0.0.1"
