"""Joining a Ray cluster (``--cluster ADDRESS``, ``%config HFMagic.cluster``) and picking its nodes (``--on WHERE``).

Ray schedules and moves the bytes; hfmagic keeps its own worker protocol on top of it. This module
connects, probes the nodes and picks where a sweep runs; the rest of the package does the work there:
:mod:`~hfmagic.cluster.actors` (benchmark workers as Ray actors), :mod:`~hfmagic.cluster.shards`
(``%evaluate --cluster``'s shards as Ray tasks), :mod:`~hfmagic.cluster.transfer` (a variant's files
on a node) and :mod:`~hfmagic.cluster.local` (a cluster on this machine, for tests).

- **Where.** A :class:`Place` is one node. ``--on GPU:1`` / ``--on xeon:1`` /
  ``--on accelerator_type:H100`` picks the first alive node that has those resources; ``--on each``
  picks one node of every distinct kind (its CPU model, instruction set, GPUs and custom
  resources), and the sweep runs once per kind.
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
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from hfmagic.cluster.transfer import read_folder
from hfmagic.core.config import address_problem, settings
from hfmagic.core.envcard import cpu_flags, cpu_model, environment_card, gpus
from hfmagic.core.errors import BackendUnavailable, UsageProblem
from hfmagic.core.telemetry import ray_off
from hfmagic.measure.worker import one_line

# what every remote worker gets from the kernel's environment (when set there): telemetry and
# network choices, and the test-only fault hook. Never paths: a node has its own.
FORWARDED_ENV = ("ORT_DISABLE_TELEMETRY", "HFMAGIC_ALLOW_TELEMETRY", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                 "HF_DATASETS_OFFLINE", "TOKENIZERS_PARALLELISM", "HFMAGIC_WORKER_FAULT")
STANDARD_RESOURCES = {"CPU", "GPU", "memory", "object_store_memory"}
PROBE_TIMEOUT_S = 120.0
GRPC_CHECK_S = 5.0  # how long an address may take to answer as a gRPC server before it is called not Ray

_connected: "Cluster | None" = None


# -- connecting --------------------------------------------------------------------------------

def resolve(address: str | None) -> str | None:
    """The address to use: ``address``, else ``%config HFMagic.cluster`` (empty: no cluster)."""
    if address is None:
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
        raise UsageProblem(f"could not join the Ray cluster at {address}: {error_line(exc)}") from None
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


def error_line(exc: BaseException) -> str:
    """The error in one line, for a note or a row; for an exception raised in a Ray task or actor,
    the task's own (RayTaskError's text is the remote traceback)."""

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
                failed[node_id] = {"error": f"its probe failed: {error_line(exc)}"}
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


# -- what rows and notes say -------------------------------------------------------------------

_local: dict | None = None


def local_fields() -> dict:
    """Where a row measured here ran: this machine (cheap: no onnxruntime, no Ray)."""
    global _local
    if _local is None:
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
