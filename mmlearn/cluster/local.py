"""A Ray cluster of several nodes on this machine: a real multi-node cluster for tests.

Every node is its own ``ray start --block`` process (the head first, then each other node with
``--address``) with its own temporary folder, ports and CPUs, so Ray sees distinct nodes with
their own node ids and resources although they share one host. Token authentication is on, with
the token of ``~/.ray/auth_token`` (generated when missing), as on a real cluster. The head
holds the driver slots (``mmlearn_driver``) that multi-worker trials need, as in ``cluster/``.

Stopping never calls ``ray stop``, which would stop every Ray process of the machine: each
node's ``ray start`` gets SIGTERM and takes its GCS, raylet and workers down with it. Every
process of the cluster carries a marker in its environment, so whatever outlives that is found
and killed by its process id.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psutil

from mmlearn.errors import ConfigError, MmlearnError
from mmlearn.study.drivers import DRIVER_RESOURCE, DRIVER_SLOTS

log = logging.getLogger(__name__)

MARKER = "MMLEARN_LOCAL_CLUSTER"
"""The environment variable that tags every process of one local cluster."""

_STARTED = "Ray runtime started."
_LOOPBACK = "127.0.0.1"
_AUTH_TOKEN = Path.home() / ".ray" / "auth_token"
_PORTS = range(20000, 30000)
"""Where the nodes' fixed ports are drawn: below Linux's ephemeral range (32768-60999), which
other processes, and Ray itself for the ports it is not given, draw from."""


class LocalClusterError(MmlearnError):
    """A node did not start, or the cluster did not come up with all of its nodes."""


@dataclass(frozen=True)
class Node:
    """One started node.

    Attributes:
        name: ``head`` or ``node1``, ``node2``, ...
        process: its ``ray start --block`` process.
        folder: its Ray temporary folder (sessions, logs, sockets).
        output: what its ``ray start`` printed.
    """

    name: str
    process: subprocess.Popen[bytes]
    folder: Path
    output: Path


class LocalCluster:
    """A head and ``nodes - 1`` more nodes on this machine, each with ``cpus`` CPUs.

    Use it as a context manager: the nodes are up inside the block and stopped when it ends,
    however it ends.

    Attributes:
        address: the head's GCS address (``127.0.0.1:PORT``), what ``RAY_ADDRESS`` takes.
        dashboard: the head's dashboard URL, bound to 127.0.0.1.
        folder: the nodes' temporary folders and outputs, from :meth:`start` until stopped.
        started: the nodes started so far, the head first.
        killed: after stopping, the processes that outlived their node's SIGTERM and were
            killed (``"pid name"``); empty when every node shut down by itself.
    """

    def __init__(self, nodes: int = 2, cpus: int = 2, timeout_s: float = 120.0) -> None:
        if nodes < 1 or cpus < 1:
            raise ConfigError(
                f"a local cluster needs >= 1 node of >= 1 CPU, but got {nodes} node(s) of {cpus}"
            )
        self.nodes = nodes
        self.cpus = cpus
        self.timeout_s = timeout_s
        self.marker = uuid.uuid4().hex
        self.folder: Path | None = None
        # The GCS, the dashboard, the Ray client server, and each node's dashboard agent: the
        # defaults of the last two would clash between nodes of one host.
        gcs, dashboard, client, *agents = _free_ports(3 + nodes)
        self.address = f"{_LOOPBACK}:{gcs}"
        self.dashboard = f"http://{_LOOPBACK}:{dashboard}"
        self._ports = {"gcs": gcs, "dashboard": dashboard, "client": client}
        self._agent_ports = agents
        self.started: list[Node] = []
        self.killed: list[str] = []

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def client_env(self) -> dict[str, str]:
        """What a driver's environment needs to join the cluster."""
        return {"RAY_ADDRESS": self.address, "RAY_AUTH_MODE": "token"}

    def start(self) -> None:
        """Start the head, then the other nodes, each once the one before it is up.

        Raises:
            LocalClusterError: a node exited or did not come up within ``timeout_s``; the
                message ends with the last lines it printed.
        """
        _ensure_auth_token()
        # Short, because Ray's Unix sockets live below it and their paths are limited to 107 bytes.
        self.folder = Path(tempfile.mkdtemp(prefix="mmray-"))
        self._start_node(
            "head",
            [
                "--head",
                f"--port={self._ports['gcs']}",
                f"--dashboard-host={_LOOPBACK}",
                f"--dashboard-port={self._ports['dashboard']}",
                f"--ray-client-server-port={self._ports['client']}",
                f"--dashboard-agent-listen-port={self._agent_ports[0]}",
                # The head hosts the Ray Train drivers of multi-worker trials.
                f"--resources={json.dumps({DRIVER_RESOURCE: DRIVER_SLOTS})}",
            ],
        )
        for i in range(1, self.nodes):
            self._start_node(
                f"node{i}",
                [
                    f"--address={self.address}",
                    f"--dashboard-agent-listen-port={self._agent_ports[i]}",
                ],
            )
        log.info("local Ray cluster of %d nodes at %s", self.nodes, self.address)

    def _start_node(self, name: str, args: Sequence[str]) -> None:
        assert self.folder is not None, "start() makes the folder first"
        folder = self.folder / name
        folder.mkdir()
        output = self.folder / f"{name}.out"
        command = [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--block",
            f"--temp-dir={folder}",
            f"--num-cpus={self.cpus}",
            "--num-gpus=0",
            # Random worker ports: two raylets on one host must not share a port range.
            "--min-worker-port=0",
            "--max-worker-port=0",
            "--disable-usage-stats",
            *args,
        ]
        with open(output, "wb") as sink:
            process = subprocess.Popen(
                command,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._node_env(),
                start_new_session=True,  # Ctrl-C in a terminal goes to us, not to the nodes
            )
        node = Node(name, process, folder, output)
        self.started.append(node)
        self._wait_until_up(node)

    def _node_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(
            {
                MARKER: self.marker,
                "RAY_AUTH_MODE": "token",
                # Nothing to drain on a test cluster: stop at once on SIGTERM.
                "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
            }
        )
        return env

    def _wait_until_up(self, node: Node) -> None:
        """Wait until ``ray start`` reports the node registered with the GCS."""
        deadline = time.monotonic() + self.timeout_s
        while _STARTED not in node.output.read_text(errors="replace"):
            if node.process.poll() is not None:
                raise LocalClusterError(
                    f"ray start of local node {node.name} exited with code "
                    f"{node.process.returncode}: {_tail(node.output)}"
                )
            if time.monotonic() > deadline:
                raise LocalClusterError(
                    f"local node {node.name} did not start within {self.timeout_s:g} s: "
                    f"{_tail(node.output)}"
                )
            time.sleep(0.2)

    def processes(self) -> list[psutil.Process]:
        """Every live process of this cluster: ``ray start``, GCS, raylets, workers, agents."""
        found = []
        for process in psutil.process_iter():
            try:
                if process.environ().get(MARKER) == self.marker:
                    found.append(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop every node (the others before the head), then kill whatever outlived them.

        Idempotent; afterwards :meth:`processes` is empty and the temporary folder is gone.
        """
        for node in reversed(self.started):
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
        for node in self.started:
            try:
                node.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()
        self.started.clear()
        # Helpers such as the dashboard's multiprocessing forkserver exit a moment later.
        _, alive = psutil.wait_procs(self.processes(), timeout=grace_s / 3)
        for process in alive:
            self.killed.append(f"{process.pid} {process.name()}")
            process.kill()
        psutil.wait_procs(alive, timeout=grace_s)
        if alive:
            log.warning("killed processes that outlived their node: %s", ", ".join(self.killed))
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def run(self, command: Sequence[str], env: Mapping[str, str] | None = None) -> int:
        """Run ``command`` as a driver of this cluster; returns its exit code."""
        driver_env = {**os.environ, **(env or {}), **self.client_env}
        return subprocess.run(list(command), env=driver_env, check=False).returncode


def _ensure_auth_token() -> None:
    """Generate ``~/.ray/auth_token`` unless the environment or that file has a token."""
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    if _AUTH_TOKEN.is_file():
        return
    subprocess.run(
        [sys.executable, "-m", "ray.scripts.scripts", "get-auth-token", "--generate"],
        check=True,
        capture_output=True,
    )


def _free_ports(count: int) -> list[int]:
    """``count`` distinct ports, free on every interface a moment ago, drawn from ``_PORTS``.

    Raises:
        LocalClusterError: fewer than ``count`` ports of ``_PORTS`` are free.
    """
    found: list[int] = []
    for port in random.SystemRandom().sample(_PORTS, len(_PORTS)):  # unaffected by seeding
        with socket.socket() as probe:
            try:
                probe.bind(("", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    raise LocalClusterError(f"fewer than {count} free ports in {_PORTS.start}-{_PORTS.stop - 1}")


def _tail(path: Path, lines: int = 5) -> str:
    """The last lines of a node's output, joined with `` | `` to stay on one line."""
    text = path.read_text(errors="replace").strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:]) or "(no output)"
