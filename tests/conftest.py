"""Shared test helpers: samples built through schemas/, the shared real data, one local Ray per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from samples import SHARED_DATA


def pytest_sessionfinish(session, exitstatus):
    """With BRAID_FAIL_ON_SKIP=1 (``make test``, CI) a skipped test fails the run: what CI skips, nobody
    checks. The one skip allowed is a GPU-only test on a machine without a GPU (its reason says "no GPU")."""
    if os.environ.get("BRAID_FAIL_ON_SKIP") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    bad = [r for r in skipped if "no GPU" not in str(r.longrepr)]
    if bad:
        reporter.write_line(f"{len(bad)} test(s) skipped without a 'no GPU' reason; failing the run", red=True)
        session.exitstatus = 1


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray instance for the whole test session (2 CPUs, no dashboard)."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory) -> Path:
    """The tiny random-weight Qwen2-VL folder (``braid make-tiny-vlm``), built once per test session."""
    from captioners.tiny import make_tiny_vlm

    return make_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm"))
