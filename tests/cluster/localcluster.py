"""Helpers for the cluster tests. A real two-node Ray cluster on this machine: a head (``ray start --head``) and a second node
(``ray start --address``), each with its own CPUs, custom resource, ports and temp dir.

Every process the fixture starts is found again by walking the process tree down from the two
``ray start --block`` processes (raylets, GCS, agents, workers) and killed by pid, also when a
test fails. Jobs run as separate driver processes (``job.py``) so a test can SIGKILL the driver.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
JOB = HERE / "job.py"
REPO = HERE.parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    return kids


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, parents first."""
    kids, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_tree(pids: list[int], timeout: float = 10.0) -> None:
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    end = time.time() + timeout
    while time.time() < end and any(_alive(p) for p in pids):
        time.sleep(0.1)


class LocalCluster:
    def __init__(self, root: Path):
        self.root = root
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: dict[str, subprocess.Popen] = {}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
        # notice a lost node within about 2 s instead of the default 30 s
        self.env.update(RAY_AUTH_MODE="disabled", RAY_health_check_initial_delay_ms="1000",
                        RAY_health_check_period_ms="500", RAY_health_check_timeout_ms="500",
                        RAY_health_check_failure_threshold="3", RAY_USAGE_STATS_ENABLED="0")

    def _ports(self) -> list[str]:
        args = []
        for flag in ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                     "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port"):
            args += [flag, str(_free_port())]
        return args

    def start_node(self, name: str, head: bool = False, num_cpus: int = 1) -> None:
        cmd = [str(Path(sys.executable).with_name("ray")), "start", "--block", "--disable-usage-stats",
               "--node-ip-address", "127.0.0.1", "--num-cpus", str(num_cpus), "--num-gpus", "0",
               "--resources", json.dumps({name: 1}), "--object-store-memory", str(150 << 20),
               "--temp-dir", str(self.root / name), *self._ports()]
        if head:
            cmd += ["--head", "--port", str(self.port), "--include-dashboard", "false",
                    "--dashboard-port", str(_free_port()), "--ray-client-server-port", str(_free_port())]
        else:
            cmd += ["--address", self.address]
        with open(self.root / f"{name}.log", "w") as log:  # the child keeps its own copy of the descriptor
            self.nodes[name] = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True, cwd=self.root)
        self.wait_started(name)

    def wait_started(self, name: str, timeout: float = 60.0) -> None:
        """``ray start`` says so once the node's raylet has registered with the head."""
        log, proc = self.root / f"{name}.log", self.nodes[name]
        end = time.time() + timeout
        while time.time() < end:
            if "Ray runtime started" in log.read_text(errors="replace"):
                return
            if proc.poll() is not None:
                raise RuntimeError(f"ray node {name} exited: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"ray node {name} did not start in {timeout} s")

    def node_pids(self, name: str) -> list[int]:
        return descendants(self.nodes[name].pid)

    def kill_node(self, name: str) -> None:
        """Lose a whole node at once: its raylet, object store, agents and workers, all SIGKILLed."""
        kill_tree(self.node_pids(name))
        self.nodes.pop(name).wait(timeout=10)

    def ensure_node(self, name: str) -> None:
        if name not in self.nodes:
            self.start_node(name)

    def shutdown(self) -> None:
        pids = [p for name in list(self.nodes) for p in self.node_pids(name)]
        kill_tree(pids)
        for p in self.nodes.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.nodes.clear()


class Driver:
    """One ``job.py`` driver process, in its own session so a test can SIGKILL exactly it."""

    def __init__(self, cluster: LocalCluster | None, out: Path, ctl: Path, *args: str):
        ctl.mkdir(parents=True, exist_ok=True)
        self.out, self.ctl = out, ctl
        addr = ["--address", cluster.address] if cluster else []
        env = cluster.env if cluster else dict(os.environ)
        with open(ctl / "driver.log", "a") as log:
            self.proc = subprocess.Popen([sys.executable, str(JOB), str(out), "--ctl", str(ctl), *addr, *args],
                                         env={**env, "PYTHONPATH": str(REPO)}, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, cwd=REPO)

    def events(self) -> list[dict]:
        path = self.ctl / "events.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]

    def wait_for(self, pred, timeout: float, what: str):
        end = time.time() + timeout
        while time.time() < end:
            got = pred()
            if got:
                return got
            if self.proc.poll() is not None:
                raise AssertionError(f"driver exited before {what}: {self.tail()}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: {self.tail()}")

    def finish(self, timeout: float) -> dict:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"driver did not finish in {timeout} s: {self.tail()}") from None
        assert rc == 0, f"driver exited {rc}: {self.tail()}"
        return json.loads((self.out / "summary.json").read_text())

    def kill(self) -> None:
        kill_tree(descendants(self.proc.pid))
        self.proc.wait(timeout=10)

    def tail(self) -> str:
        return (self.ctl / "driver.log").read_text()[-3000:]
