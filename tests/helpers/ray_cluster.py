"""A real local Ray cluster for tests: ``ray start --head --block`` with two CPUs (two
worker processes), every port chosen free and bound to loopback, its own temp dir, and
ended by the pid of the ``ray start`` process (never ``ray stop``, which would end every
cluster on the machine).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _free_range(width: int) -> int:
    """The first port of ``width`` consecutive ports that are free right now."""
    for base in range(21000 + (os.getpid() % 200) * 50, 60000, width + 7):
        try:
            socks = []
            for port in range(base, base + width):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free port range for Ray workers")


class RayCluster:
    """``start()`` runs the head and waits until a driver can connect; ``address`` is what
    ``--ray`` takes; ``stop()`` ends it by pid and waits for its processes to go."""

    def __init__(self, num_cpus: int = 2) -> None:
        self.num_cpus = num_cpus
        self.temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: socket paths
        self.port, *self.ports = _free_ports(8)
        self.address = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        """The environment a driver of this cluster needs."""
        return {**os.environ, **RAY_ENV}

    def start(self, timeout: float = 120.0) -> RayCluster:
        ray = str(Path(sys.executable).parent / "ray")
        node, objects, agent, agent_grpc, metrics, runtime_env, dashboard = self.ports
        workers = _free_range(40)
        argv = [ray, "start", "--head", "--block", f"--port={self.port}", "--node-ip-address=127.0.0.1",
                f"--num-cpus={self.num_cpus}", "--num-gpus=0", "--include-dashboard=false",
                "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
                f"--node-manager-port={node}", f"--object-manager-port={objects}",
                f"--dashboard-agent-listen-port={agent}",
                f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}",
                f"--runtime-env-agent-port={runtime_env}", f"--min-worker-port={workers}",
                f"--max-worker-port={workers + 39}", "--object-store-memory=200000000",
                f"--temp-dir={self.temp}", "--disable-usage-stats"]
        self.log = open(self.temp / "head.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited {self.proc.returncode}: {self.log_text()[-2000:]}")
            if self._ready():
                return self
            time.sleep(0.5)
        raise RuntimeError(f"the Ray head did not come up in {timeout:.0f} s: {self.log_text()[-2000:]}")

    def _ready(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(1)
            if sock.connect_ex(("127.0.0.1", self.port)):
                return False
        return "Ray runtime started" in self.log_text()

    def log_text(self) -> str:
        self.log.flush()
        return (self.temp / "head.log").read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        """Pids of the cluster's worker processes (``ray::...`` under this cluster's raylet)."""
        raylets = [pid for pid, cmd in _processes() if "raylet" in cmd and str(self.temp) in cmd]
        return [pid for pid, cmd in _processes()
                if cmd.startswith("ray::") and _parent(pid) in raylets]

    def stop(self) -> None:
        """SIGTERM to ``ray start`` (it ends its processes), SIGKILL to the group after 30 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        if self.proc is not None:
            try:  # anything left of this cluster (its own session) goes with the group
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.log.close()
        self.proc = None
        shutil.rmtree(self.temp, ignore_errors=True)

    def __enter__(self) -> RayCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def _processes() -> list[tuple[int, str]]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            out.append((int(entry.name), cmd))
    return out


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1
