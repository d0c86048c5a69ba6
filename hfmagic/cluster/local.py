"""A Ray cluster of several nodes on this machine, bound to 127.0.0.1: for the tests, the example
notebook, and trying ``--cluster`` / ``--on each`` before a real cluster is at hand.

    from hfmagic.cluster.local import LocalCluster
    with LocalCluster([{"kind_a": 1}, {"kind_b": 1}], cpus=2) as lc:
        %benchmark demo --cluster {lc.address} --on each

Each node is ``ray start --block`` in a session of its own (so stopping it, or killing it as a
test does, ends its raylet and workers together), with its own resources, its own
``HFMAGIC_NODE_CACHE`` (the files sent to it) and Ray's usage statistics and dashboard off. Ray
2.60 replaces a loopback ``--node-ip-address`` with the machine's address and then listens on
every interface; ``python -m hfmagic.cluster.local`` is ``ray start`` with that replacement turned
off, so every port it opens is on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hfmagic.cluster.connect import connect, disconnect

START_TIMEOUT_S = 90.0
AUTH_MODE = "RAY_AUTH_MODE"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """``nodes``: each node's custom resources (the first is the head). ``cpus``: CPUs each node
    offers Ray. ``folder``: where the nodes keep Ray's session files and the files sent to them
    (default a temporary folder, removed on stop). ``env``: environment variables of each node's
    own (its raylet's and so its workers'), as a machine of its own would have them."""

    def __init__(self, nodes: list[dict], cpus: int = 2, folder: str | Path | None = None,
                 env: list[dict] | None = None):
        if not nodes:
            raise ValueError("a cluster needs at least one node")
        self.specs, self.cpus, self.env = nodes, cpus, env or [{} for _ in nodes]
        self._tmp = None if folder else tempfile.TemporaryDirectory(prefix="hfmagic-ray-")
        # Ray's socket paths must stay under 107 bytes: its session folder goes in a short place
        self.folder = Path(folder or self._tmp.name)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        # one authentication mode for the nodes and this process: Ray's `ray start` turns token auth
        # on when ~/.ray/auth_token exists (a plain ray.init() anywhere writes one), while joining by
        # address never does, so a token file alone would lock this process out of its own cluster.
        # The user's RAY_AUTH_MODE (and token) hold where set; else none, on loopback only.
        self._auth_set = AUTH_MODE not in os.environ

    def node_cache(self, i: int) -> Path:
        return self.folder / f"node-{i}"

    def start(self) -> "LocalCluster":
        try:
            for i, resources in enumerate(self.specs):
                self._start_node(i, resources)
                if i == 0:
                    self._wait_port()
            self._wait_nodes(len(self.specs))
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self, i: int, resources: dict) -> None:
        args = [sys.executable, "-m", "hfmagic.cluster.local", "start", "--block", "--node-ip-address=127.0.0.1",
                f"--num-cpus={self.cpus}", "--num-gpus=0", f"--resources={json.dumps(resources)}",
                "--disable-usage-stats"]
        if i == 0:
            args += ["--head", f"--port={self.port}", "--include-dashboard=false",
                     f"--temp-dir={self.folder / 'ray'}"]
        else:
            args += [f"--address={self.address}"]
        self.node_cache(i).mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HFMAGIC_NODE_CACHE": str(self.node_cache(i)),
               AUTH_MODE: os.environ.get(AUTH_MODE, "disabled"),
               **(self.env[i] if i < len(self.env) else {})}
        log = open(self.folder / f"node-{i}.log", "wb")
        self.procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                           start_new_session=True))
        log.close()

    def _wait_port(self) -> None:
        end = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < end:
            if self.procs[0].poll() is not None:
                raise RuntimeError(f"the head node did not start: {self.log(0)[-400:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"the head node did not open {self.address} within {START_TIMEOUT_S:.0f} s")

    def _wait_nodes(self, count: int) -> None:
        import ray

        if self._auth_set:
            os.environ[AUTH_MODE] = "disabled"  # as its nodes were started (see __init__)
        connect(self.address)
        end = time.monotonic() + START_TIMEOUT_S
        while sum(n["Alive"] for n in ray.nodes()) < count:
            if time.monotonic() > end:
                raise RuntimeError(f"{count} nodes did not join within {START_TIMEOUT_S:.0f} s: {self.log(1)[-400:]}")
            time.sleep(0.5)

    def log(self, i: int) -> str:
        path = self.folder / f"node-{i}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill_node(self, i: int) -> None:
        """End node ``i`` at once, as a machine that dies does: SIGKILL to its raylet, its agents and
        its workers (which Ray starts in sessions of their own)."""
        self._signal(self.procs[i], signal.SIGKILL)
        self.procs[i].wait()

    def stop(self) -> None:
        """Leave the cluster and end every node's processes (the head last)."""

        disconnect()
        if self._auth_set:
            os.environ.pop(AUTH_MODE, None)
        for proc in reversed(self.procs):
            self._signal(proc, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                pass
            self._signal(proc, signal.SIGKILL)  # what SIGTERM left (workers in its session)
            proc.wait()
        self.procs = []
        if self._tmp is not None:
            self._tmp.cleanup()

    @staticmethod
    def _signal(proc: subprocess.Popen, sig: int) -> None:
        """``sig`` to the node's session and to every process under it (a worker may lead its own)."""
        import psutil

        try:
            tree = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        for child in tree:
            try:
                child.send_signal(sig)
            except psutil.NoSuchProcess:
                pass

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _ray_start() -> None:
    """``ray start`` that keeps 127.0.0.1 as the node's address (see the module docstring)."""
    import ray._private.services as services
    import ray.scripts.scripts as scripts

    services.resolve_ip_for_localhost = lambda host: host
    sys.exit(scripts.main())


if __name__ == "__main__":
    _ray_start()
