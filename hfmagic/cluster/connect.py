"""Workers on a Ray cluster: ``--cluster ADDRESS`` (``%config HFMagic.cluster``) and ``--on WHERE``.

Ray schedules and moves the bytes; hfmagic keeps its own worker protocol on top of it:

- **Benchmark workers.** Each worker (one per variant x backend) is a Ray actor that runs the same
  :class:`hfmagic.measure.worker.Measurer` (interleaved rounds) or :func:`hfmagic.measure.worker.run_job`
  (``--order sequential``) a local worker process runs, on one node. Timing happens on that node;
  only the finished samples come back. :class:`RayWorker` reads the actor the way
  :class:`hfmagic.measure.worker.WorkerProcess` reads a pipe, so the sweep does not know the difference.
- **Where.** A :class:`Place` is one node. ``--on GPU:1`` / ``--on xeon:1`` /
  ``--on accelerator_type:H100`` picks the first alive node that has those resources; ``--on each``
  picks one node of every distinct kind (its CPU model, instruction set, GPUs and custom
  resources), and the sweep runs once per kind. The workers of one sweep on one node request, all
  together, ``threads`` CPUs and the resources asked for (each worker a fraction: they measure one
  at a time), so Ray runs nothing else of ours in those CPUs.
- **Files.** A variant's folder and its model's folder travel through Ray's object store, keyed by
  the sha256 of their files. A node keeps what it received under ``$HFMAGIC_NODE_CACHE`` (default
  ``<its temp folder>/hfmagic-node-cache``) and says which hashes it lacks before anything is put,
  so a folder a node already holds is never sent again. Nothing assumes a shared disk.
- **Evaluation shards.** ``%evaluate --cluster`` splits a variant's batches into contiguous shards,
  one Ray task each; the kernel puts their outputs back in data order and scores them itself, so the
  metrics, intervals and flips are the ones a single-process run computes from the same outputs.
- **Quiet.** Ray's usage statistics are off (``RAY_USAGE_STATS_ENABLED=0``), the driver starts no
  dashboard and its core logs errors only, workers' logs stay on their nodes, and every worker gets
  the kernel's telemetry and offline settings (``ORT_DISABLE_TELEMETRY``, ``HF_HUB_OFFLINE``, ...).
  An address that answers but not as gRPC (Ray's GCS and client servers) is refused before Ray is
  asked, which would retry it for minutes.
- **Left out.** A node whose probe fails is not offered, and never silently: ``Cluster.left_out``
  holds it with why, for the notes, provenance and rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from hfmagic.core.errors import BackendUnavailable, UsageProblem
from hfmagic.core.config import address_problem
from hfmagic.core.telemetry import ray_off

NODE_CACHE_ENV = "HFMAGIC_NODE_CACHE"
# what every remote worker gets from the kernel's environment (when set there): telemetry and
# network choices, and the test-only fault hook. Never paths: a node has its own.
FORWARDED_ENV = ("ORT_DISABLE_TELEMETRY", "HFMAGIC_ALLOW_TELEMETRY", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                 "HF_DATASETS_OFFLINE", "TOKENIZERS_PARALLELISM", "HFMAGIC_WORKER_FAULT")
STANDARD_RESOURCES = {"CPU", "GPU", "memory", "object_store_memory"}
HEALTH_WAIT_S = 40.0  # how long a worker that stopped answering may take to be told lost with its node
PROBE_TIMEOUT_S = 120.0
GRPC_CHECK_S = 5.0  # how long an address may take to answer as a gRPC server before it is called not Ray

_connected: "Cluster | None" = None


# -- connecting --------------------------------------------------------------------------------

def resolve(address: str | None) -> str | None:
    """The address to use: ``address``, else ``%config HFMagic.cluster`` (empty: no cluster)."""
    if address is None:
        from hfmagic.core.config import settings

        address = settings().cluster or None
    return address or None


def connect(address: str) -> "Cluster":
    """Connect this process to the Ray cluster at ``address`` (``host:port`` of its head, ``ray://
    host:port`` for Ray Client, or ``auto``: the one started on this machine); once per address."""
    global _connected
    if _connected is not None and _connected.address == address:
        return _connected
    target = _address(address)
    host, port = _host_port(target)
    try:
        speaks = _speaks_grpc(host, port)
    except OSError as exc:
        raise UsageProblem(f"no Ray cluster answers at {address} ({host}:{port}: {exc.strerror or exc}); start one "
                           "with `ray start --head` or check the address") from None
    if not speaks:  # Ray would retry for minutes, printing its own warnings, before giving up
        raise UsageProblem(f"{address} answers but is not a Ray cluster ({host}:{port} did not reply as gRPC "
                           "does); give the head's address: HOST:6379 (its GCS port, which `ray status` on the "
                           "head shows) or ray://HOST:10001") from None
    ray_off()
    try:
        import ray
    except ImportError:
        raise BackendUnavailable("--cluster needs Ray: pip install 'hfmagic[ray]'") from None
    import ray._private.ray_constants as ray_constants

    if _is_loopback(host):
        # Ray replaces a loopback address with the machine's own unless it believes the cluster is a
        # single machine's; a cluster bound to 127.0.0.1 is reachable on loopback only
        ray_constants.ENABLE_RAY_CLUSTER = False
    if ray.is_initialized():
        ray.shutdown()
    level = os.environ.get("RAY_BACKEND_LOG_LEVEL")
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # read once, by this driver's core: its GCS client's
    try:                                                     # retry warnings stay off stderr (the error says why)
        ray.init(address=target, log_to_driver=False, logging_level="warning", namespace="hfmagic")
    except Exception as exc:
        raise UsageProblem(f"could not join the Ray cluster at {address}: {_one_line(exc)}") from None
    finally:
        if level is None:  # nodes this process starts later (LocalCluster) log as Ray does by default
            os.environ.pop("RAY_BACKEND_LOG_LEVEL", None)
    _connected = Cluster(address)
    return _connected


def _speaks_grpc(host: str, port: int, timeout: float = GRPC_CHECK_S) -> bool:
    """Whether ``host:port`` answers as a gRPC server (Ray's GCS and its client server are): sent
    HTTP/2's client preface and an empty SETTINGS frame, it replies with a SETTINGS frame of its own.
    A socket that cannot connect raises OSError; one that replies otherwise, closes or says nothing
    within ``timeout`` is not one. With TLS on (``RAY_USE_TLS``) the handshake is TLS's: not checked."""
    if os.environ.get("RAY_USE_TLS", "").lower() in ("1", "true"):
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    with socket.create_connection((host, port), timeout=timeout) as conn:
        try:
            conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
            head = b""
            while len(head) < 9:  # a frame's header: length (3 bytes), type, flags, stream id (4)
                chunk = conn.recv(9 - len(head))
                if not chunk:
                    return False
                head += chunk
        except OSError:  # reset, or silent past the timeout
            return False
    return head[3] == 4  # SETTINGS


def disconnect() -> None:
    """Leave the cluster (the objects this process put are freed); a no-op when not connected."""
    global _connected
    if _connected is None:
        return
    import ray

    _connected = None
    if ray.is_initialized():
        ray.shutdown()


def _address(address: str) -> str:
    if address != "auto":
        return address
    from_env = os.environ.get("RAY_ADDRESS")
    if from_env and from_env != "auto":
        return from_env
    found = None
    try:
        from ray._private.utils import read_ray_address

        found = read_ray_address()
    except ImportError:
        pass
    if not found:
        raise UsageProblem("--cluster auto found no Ray cluster started on this machine; start one with "
                           "`ray start --head`, or give its address (HOST:PORT)")
    return found




def _host_port(address: str) -> tuple[str, int]:
    if problem := address_problem(address):
        raise UsageProblem(f"--cluster {address!r} is not an address ({problem}): give HOST:PORT (the head's GCS "
                           "port, 6379 by default), ray://HOST:PORT, or auto")
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    return host.strip("[]"), int(port)


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def _one_line(exc: BaseException) -> str:
    """The error in one line; for an exception raised in a Ray task, the task's own (RayTaskError's
    text is the remote traceback)."""
    from hfmagic.measure.worker import one_line

    cause = getattr(exc, "cause", None)
    return one_line(cause if isinstance(cause, BaseException) else exc)[:400]


# -- nodes and places --------------------------------------------------------------------------

@dataclass
class Node:
    """One alive node: its Ray id and resources, and what it is (probed on it)."""

    id: str
    resources: dict
    card: dict = field(default_factory=dict)  # node_card() as the node answered it ({"error": why} if it did not)
    host: str = ""                            # as Ray knows it (the card's, when the node answered)

    @property
    def custom(self) -> list[str]:
        """The resources its operator gave it (``xeon``, ``kind_b``), not Ray's own."""
        return sorted(r for r in self.resources if r not in STANDARD_RESOURCES and not r.startswith("node:")
                      and not r.startswith("accelerator_type:"))

    @property
    def kind(self) -> tuple:
        c = self.card
        return (c.get("cpu"), tuple(c.get("isa", [])), tuple(g.get("name") for g in c.get("gpus", [])),
                tuple(self.custom))

    @property
    def hardware(self) -> str:
        """One line: CPU model, its best instruction sets, CPUs, GPUs."""
        return hardware_label(self.card)

    def has(self, wanted: dict[str, float]) -> bool:
        """Whether the node has every resource ``wanted`` (name -> amount)."""
        return all(self.resources.get(k, 0) >= v for k, v in wanted.items())

    @property
    def left_out_because(self) -> str | None:
        """Why hfmagic cannot use this node (its probe failed), or None."""
        return self.card.get("error")

    def describe(self) -> str:
        """The node in a note: its custom resources (what its operator called it), id and host."""
        name = "+".join(self.custom)
        return f"{name + ' ' if name else ''}({self.id[:12]}, {self.card.get('host') or self.host or 'host unknown'})"


@dataclass
class Place:
    """Where one sweep runs: one node, and the resources every worker there asks for."""

    node: Node
    resources: dict          # asked with --on (GPU included); a worker requests a share of them
    label: str               # the node's kind, as rows name it
    dead: str | None = None  # why the node was lost mid-sweep: later workers there are not started
    niceness: int = 0        # a worker's there, when Ray's was not undone (the notes say so)

    def row_fields(self) -> dict:
        c = self.node.card
        hardware = "unknown: the node was left out" if self.node.left_out_because else self.node.hardware
        return {"node": self.label, "node_id": self.node.id[:12], "host": c.get("host") or self.node.host,
                "hardware": hardware}


def left_out_places(nodes: list[Node]) -> list[Place]:
    """A place for each node left out, named by its custom resources (its kind is unknown: it did
    not answer what it is), for rows that say why nothing ran there."""
    return [Place(n, {}, "+".join(n.custom) or f"node {n.id[:8]}") for n in nodes]


def left_out_text(nodes: list[Node]) -> str:
    """The nodes left out and why, in one line."""
    return "; ".join(f"node {n.describe()} was left out: {n.left_out_because}" for n in nodes)


def hardware_label(card: dict) -> str:
    cpu = " ".join((card.get("cpu") or "?").replace("(R)", "").replace("(TM)", "").split())
    isa = "/".join(card.get("isa") or []) or "no SIMD flags read"
    gpus = ", ".join(g.get("name", "?") for g in card.get("gpus") or [])
    return f"{cpu} ({isa}, {card.get('cpus', '?')} CPUs)" + (f" + {gpus}" if gpus else "")


def isa_summary(flags) -> list[str]:
    """The instruction sets that decide which kernels run: the best of AVX2 / AVX-512 / VNNI / bf16 /
    AMX, or NEON on ARM."""
    flags = set(flags)
    found = [name for flag, name in (("avx2", "avx2"), ("avx512f", "avx512"), ("avx512_vnni", "vnni"),
                                     ("avx512_bf16", "bf16"), ("amx_tile", "amx"), ("arm64", "arm64"),
                                     ("asimd", "neon")) if flag in flags]
    return found


def node_card() -> dict:
    """What this node is (runs on the node): host, CPU, its instruction sets, CPUs, GPUs, and the
    environment card a run records."""
    from hfmagic.core.config import settings
    from hfmagic.core.envcard import cpu_flags, cpu_model, environment_card, gpus

    card = environment_card(settings().threads)
    return {"host": socket.gethostname(), "cpu": cpu_model(), "isa": isa_summary(cpu_flags()),
            "cpus": os.cpu_count(), "gpus": gpus(), "environment": card}


class Cluster:
    """This process's connection to a Ray cluster: its nodes, places, and the files it has sent."""

    def __init__(self, address: str):
        self.address = address
        self._refs: dict[str, object] = {}   # folder digest -> the ObjectRef of its files (put once)
        self._cards: dict[str, dict] = {}    # node id -> node_card() (a node that failed is asked again)
        self.left_out: list[Node] = []      # alive nodes whose probe failed at the last nodes()

    def nodes(self) -> list[Node]:
        """The alive nodes hfmagic can use, each probed once (a tiny task pinned to it) for what it
        is. A node whose probe fails (it cannot import hfmagic, or does not answer in time) is not
        offered: it goes to ``left_out``, with why, for the notes and rows to name."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        alive = [Node(n["NodeID"], dict(n["Resources"]), host=n.get("NodeManagerHostname") or
                      n.get("NodeManagerAddress", "")) for n in ray.nodes() if n["Alive"]]
        probe = ray.remote(num_cpus=0, max_retries=0)(node_card)
        asked = {n.id: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n.id, soft=False),
                                     runtime_env=worker_env()).remote()
                 for n in alive if n.id not in self._cards}
        deadline = time.monotonic() + PROBE_TIMEOUT_S  # the probes run at once: one wait for all of them
        failed = {}
        for node_id, ref in asked.items():
            try:
                self._cards[node_id] = ray.get(ref, timeout=max(0.001, deadline - time.monotonic()))
            except ray.exceptions.GetTimeoutError:
                with contextlib.suppress(Exception):  # a node that does not answer may not take this either
                    ray.cancel(ref, force=True)
                failed[node_id] = {"error": f"its probe did not answer within {PROBE_TIMEOUT_S:.0f} s (a loaded or "
                                            "unreachable node?)"}
            except Exception as exc:  # a node that cannot run hfmagic
                failed[node_id] = {"error": f"its probe failed: {_one_line(exc)}"}
        for n in alive:
            n.card = self._cards.get(n.id) or failed[n.id]
        self.left_out = [n for n in alive if n.left_out_because]
        return [n for n in alive if not n.left_out_because]

    def places(self, on: str | None, threads: int) -> list[Place]:
        """The nodes a sweep runs on: one for ``--on RESOURCES`` (or none given: the head node),
        one per kind of node for ``--on each``."""
        nodes = self.nodes()
        if not nodes:
            raise UsageProblem(f"no node of the Ray cluster at {self.address} can run hfmagic's workers ("
                               f"{left_out_text(self.left_out)}); install hfmagic[ray] (the same version) on its nodes")
        if on == "each":
            kinds: dict[tuple, Node] = {}
            for n in nodes:
                kinds.setdefault(n.kind, n)
            chosen = [(n, {}) for n in kinds.values()]
        else:
            wanted = parse_on(on)
            fits = [n for n in nodes if n.has(wanted)]
            if not fits and self.left_out_for(on):
                raise UsageProblem(f"the nodes that have {on} cannot run hfmagic's workers: "
                                   f"{left_out_text(self.left_out_for(on))}")
            if not fits:
                offered = "; ".join(f"{n.hardware}: {', '.join(n.custom) or 'no custom resources'}"
                                    f"{', GPU:%g' % n.resources['GPU'] if n.resources.get('GPU') else ''}"
                                    for n in nodes)
                raise UsageProblem(f"no node of the cluster has {on}; its nodes offer: {offered}")
            if not wanted:  # the head node, where there is one to run on
                fits.sort(key=lambda n: "node:__internal_head__" not in n.resources)
            chosen = [(fits[0], wanted)]
        places = []
        for node, wanted in chosen:
            cpus = node.resources.get("CPU", 0)
            if cpus < threads:
                raise UsageProblem(f"node {node.id[:12]} ({node.hardware}) offers {cpus:g} CPUs to Ray; --threads "
                                   f"{threads} asks for more: give --threads {int(cpus) or 1}")
            places.append(Place(node, wanted, _kind_label(node, nodes)))
        return places

    def left_out_for(self, on: str | None) -> list[Node]:
        """The nodes left out (at the last :meth:`nodes`) that ``--on`` would have used: any for
        ``each`` or none given, those with the resources otherwise."""
        if on in (None, "each"):
            return list(self.left_out)
        return [n for n in self.left_out if n.has(parse_on(on))]

    def shard_slots(self, on: str | None, threads: int) -> tuple[int, dict]:
        """How many evaluation shards the nodes that fit ``--on`` run at once (their CPUs over
        ``threads``), and the resources each shard asks for."""
        wanted = parse_on(on)
        nodes = [n for n in self.nodes() if n.has(wanted)]
        if not nodes:
            raise UsageProblem(f"no node of the cluster has {on}; leave --on out or give resources a node has")
        nodes = [n for n in nodes if n.resources.get("CPU", 0) >= threads]
        if not nodes:
            raise UsageProblem(f"no node of the cluster offers {threads} CPUs to Ray, the threads each shard runs "
                               "with; set fewer: %config HFMagic.threads = N")
        return max(1, sum(int(n.resources.get("CPU", 0) // threads) for n in nodes)), wanted

    # -- files ---------------------------------------------------------------------------------
    def refs(self, wanted: dict[str, Path]) -> dict[str, list]:
        """ObjectRefs for the folders (digest -> folder) a node said it lacks: each put once."""
        import ray

        out = {}
        for digest, folder in wanted.items():
            if digest not in self._refs:
                self._refs[digest] = ray.put(read_folder(folder))
            out[digest] = [self._refs[digest]]
        return out


def parse_on(on: str | None) -> dict[str, float]:
    """``GPU:1,xeon:1`` -> {"GPU": 1, "xeon": 1}; ``accelerator_type:H100`` -> Ray's accelerator
    resource; empty -> {}."""
    if not on:
        return {}
    out = {}
    for part in on.split(","):
        part = part.strip()
        name, _, amount = part.partition(":")
        if name.lower() == "accelerator_type" and amount:  # Ray's label of a GPU model: a tiny amount
            out[f"accelerator_type:{amount}"] = 0.001
            continue
        if not name or not _is_number(amount) or float(amount) <= 0:
            raise UsageProblem(f"--on {on!r}: give RESOURCE:AMOUNT pairs, comma-separated (GPU:1, xeon:1, "
                               "accelerator_type:H100), or each")
        out[name] = float(amount)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _kind_label(node: Node, nodes: list[Node]) -> str:
    """A node kind's short name: its custom resources (what its operator called it), else its
    hardware; a node id prefix where two kinds would read the same."""
    label = "+".join(node.custom) or node.hardware
    if sum(("+".join(n.custom) or n.hardware) == label for n in nodes if n.kind != node.kind):
        label += f" [{node.id[:8]}]"
    return label


def worker_env(threads: int | None = None) -> dict:
    """The runtime environment every remote worker gets: the kernel's telemetry and offline
    settings; and for one that measures, Ray's default niceness undone (Ray starts its workers at
    niceness 15, so any other process on the node would preempt the timed runs) and
    ``OMP_NUM_THREADS`` at the sweep's threads (Ray sets it to the CPUs a worker asked for)."""
    env = {"ORT_DISABLE_TELEMETRY": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    if threads is not None:
        env.update(RAY_worker_niceness="0", OMP_NUM_THREADS=str(threads))
    env.update({k: os.environ[k] for k in FORWARDED_ENV if k in os.environ})
    return {"env_vars": env}


# -- files on the nodes ------------------------------------------------------------------------

_digests: dict[tuple, str] = {}


def folder_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith(".hfmagic-"))


def folder_digest(folder: Path) -> str:
    """sha256 over every file's relative path and content (cached while no file changes)."""
    from hfmagic.core.hashing import file_sha256

    files = folder_files(folder)
    stamp = (str(folder), tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    if stamp not in _digests:
        digest = hashlib.sha256()
        for p in files:
            digest.update(f"{p.relative_to(folder)}\0{file_sha256(p)}\0".encode())
        _digests[stamp] = digest.hexdigest()
    return _digests[stamp]


def read_folder(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder_files(folder)}


def node_cache() -> Path:
    return Path(os.environ.get(NODE_CACHE_ENV) or Path(tempfile.gettempdir()) / "hfmagic-node-cache")


def have(digest: str) -> bool:
    return (node_cache() / digest[:32] / ".hfmagic-complete").exists()


def materialize(digest: str, holder: list | None) -> tuple[Path, int]:
    """The folder ``digest`` on this node: kept from before, or written from the object ``holder``
    holds (fetched from the kernel's object store now). Returns its path and the bytes received."""
    dest = node_cache() / digest[:32]
    if have(digest):
        return dest, 0
    if not holder:
        raise RuntimeError(f"folder {digest[:12]} is not on this node and was not sent")
    import ray

    files = ray.get(holder[0])
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}")
    for rel, data in files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(data)
    (tmp / ".hfmagic-complete").touch()
    try:
        tmp.rename(dest)
    except OSError:  # another worker on this node wrote it first
        shutil.rmtree(tmp, ignore_errors=True)
    return dest, sum(len(d) for d in files.values())


def _folders(spec: dict) -> dict[str, Path]:
    """The folders a job's variant needs on a node: its model's folder and its own (role -> folder)."""
    folders = {"model": Path(spec["model_path"])}
    if spec.get("path"):
        own = Path(spec["path"]) if spec.get("path_is_dir") else Path(spec["path"]).parent
        if own != folders["model"]:
            folders["variant"] = own
    return folders


def localize(spec: dict, places: dict[str, Path]) -> dict:
    """The variant spec with its paths on this node (``places``: role -> folder here)."""
    out = dict(spec)
    out["model_path"] = str(places["model"])
    if spec.get("path"):
        own = places.get("variant", places["model"])
        out["path"] = str(own if spec.get("path_is_dir") else own / Path(spec["path"]).name)
    return out


# -- the remote side ---------------------------------------------------------------------------

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
        from hfmagic.measure.worker import Measurer, run_job

        t0 = time.time()
        try:
            here, received = {}, 0
            for role, digest in folders.items():
                here[role], got = materialize(digest, holders.get(digest))
                received += got
        except Exception as exc:
            return {"type": "error", "error": f"the variant's files did not arrive: {_one_line(exc)}",
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
        self.folders = {role: folder_digest(path) for role, path in _folders(job["variant"]).items()}
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
        wanted = {d: p for role, p in _folders(self.job["variant"]).items()
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


# -- evaluation shards -------------------------------------------------------------------------

def _evaluate_shard(spec: dict, folders: dict[str, str], holders: dict[str, list], feeds: list, threads: int) -> dict:
    """Run one shard of a variant's batches on a node: each batch's named outputs, seconds."""
    import ray

    from hfmagic.measure.runner import Runner
    from hfmagic.tasks import ensure
    from hfmagic.measure.worker import variant_from_spec

    here = {role: materialize(digest, holders.get(digest))[0] for role, digest in folders.items()}
    local = localize(spec, here)
    ensure(local.get("task_origin"))
    variant = variant_from_spec(local)
    t0 = time.perf_counter()
    runner = Runner(variant, threads)
    load_s = time.perf_counter() - t0
    outputs, seconds = [], 0.0
    try:
        for feed in feeds:
            t0 = time.perf_counter()
            outputs.append(runner.run(feed))
            seconds += time.perf_counter() - t0
    finally:
        runner.close()
    return {"outputs": outputs, "seconds": seconds, "load_s": load_s,
            "node_id": ray.get_runtime_context().get_node_id(), "host": socket.gethostname()}


def evaluate_shards(cluster: Cluster, on: str | None, variant, batches: list, threads: int) -> dict:
    """Every batch's named outputs (in order) from shards run as Ray tasks; seconds in the model
    (summed over shards), the slowest shard's loading, the shards and the nodes they ran on."""
    import ray

    from hfmagic.tasks import origin

    slots, wanted = cluster.shard_slots(on, threads)
    count = max(1, min(slots, len(batches)))
    spec = {"name": variant.name, "path": str(variant.path) if variant.path else None, "level": variant.level,
            "runtime": variant.runtime, "model_path": str(variant.model.path), "task": variant.model.task,
            "task_origin": origin(variant.model.task), "model_name": variant.model.name,
            "trust_remote_code": variant.model.trust_remote_code,
            "path_is_dir": variant.path is not None and Path(variant.path).is_dir()}
    paths = _folders(spec)
    folders = {role: folder_digest(path) for role, path in paths.items()}
    # put once per folder (per connection); a node that holds the folder already never fetches it
    holders = cluster.refs({folders[role]: path for role, path in paths.items()})
    gpus = wanted.get("GPU", 0)
    task = ray.remote(max_retries=0)(_evaluate_shard).options(
        num_cpus=threads, num_gpus=gpus, resources={k: v for k, v in wanted.items() if k != "GPU"},
        runtime_env=worker_env(threads), scheduling_strategy="SPREAD")
    bounds = [round(i * len(batches) / count) for i in range(count + 1)]
    refs = [task.remote(spec, folders, holders, [feed for _, feed in batches[a:b]], threads)
            for a, b in zip(bounds, bounds[1:]) if b > a]
    try:
        done = ray.get(refs)
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    except ray.exceptions.RayError as exc:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise RuntimeError(f"a shard failed on the cluster: {_one_line(exc)}") from None
    return {"outputs": [o for d in done for o in d["outputs"]], "seconds": sum(d["seconds"] for d in done),
            "load_s": max(d["load_s"] for d in done), "shards": len(done),
            "nodes": sorted({d["node_id"][:12] for d in done}),
            "hosts": sorted({d["host"] for d in done})}


# -- what rows and notes say -------------------------------------------------------------------

_local: dict | None = None


def local_fields() -> dict:
    """Where a row measured here ran: this machine (cheap: no onnxruntime, no Ray)."""
    global _local
    if _local is None:
        from hfmagic.core.envcard import cpu_flags, cpu_model, gpus

        card = {"cpu": cpu_model(), "isa": isa_summary(cpu_flags()), "cpus": os.cpu_count(), "gpus": gpus()}
        _local = {"node": "local", "node_id": None, "host": socket.gethostname(), "hardware": hardware_label(card)}
    return dict(_local)


def sweep_note(places: list[Place], rows: list[dict]) -> str:
    """Where the workers ran and what a remote worker cost: its start and its files' transfer."""
    import numpy as np

    def median(key, where):
        values = [r[key] for r in rows if r.get(key) is not None and r.get("node") == where]
        return float(np.median(values)) if values else None

    parts = []
    for p in places:
        start, sent = median("startup_s", p.label), [r.get("transfer_mb") or 0 for r in rows
                                                     if r.get("node") == p.label]
        text = f"{p.label} ({p.node.card.get('host')}, {p.node.hardware})"
        if p.niceness:
            text += (f": its workers ran at niceness {p.niceness} (RAY_worker_niceness=0 was not applied), so any "
                     "other process there preempted them: latencies may be inflated")
        if start is not None:
            text += f": a worker started in {start:.1f} s (median: scheduling, process start, imports)"
        if sent:
            text += f", {max(sent):.1f} MB of files sent to it at most (0 where the node held them)"
        parts.append(text)
    return ("cluster: every worker ran as a Ray actor and timed its runs on its node; only the samples "
            "came back. " + "; ".join(parts))
