"""Fixtures: one real two-node Ray cluster per test session (see ``localcluster``), and driver processes
that are killed by the end of each test."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from localcluster import Driver, LocalCluster


@pytest.fixture(scope="session")
def cluster():
    pytest.importorskip("ray")
    root = Path(tempfile.mkdtemp(prefix="brc", dir="/tmp"))  # short: Ray's unix socket paths must stay < 108 bytes
    c = LocalCluster(root)
    try:
        # the head alone must still fit a caption actor, a CPU task and a shard writer once node2 is lost
        c.start_node("head", head=True, num_cpus=2)
        c.start_node("node2", num_cpus=1)
        yield c
    finally:
        c.shutdown()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def driver_factory():
    started: list[Driver] = []

    def make(*args, **kw) -> Driver:
        d = Driver(*args, **kw)
        started.append(d)
        return d

    yield make
    for d in started:
        if d.proc.poll() is None:
            d.kill()
