"""Captioner test fixtures: the tiny VLM, a real vLLM OpenAI server, a real in-process vLLM engine (each once
per session), and a small OpenAI-compatible loopback server that can be told to fail, stall or die."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from importlib.util import find_spec
from pathlib import Path

import pytest
from captioner_helpers import FakeOpenAI, free_port

# vLLM on a 2-core CI machine: a 1 GiB KV cache, no CPU pinning (other tests share the cores), and the
# engine in the test process so that it starts without spawning and importing vLLM twice more
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

HAVE_VLLM = find_spec("vllm") is not None
SERVED_NAME = "tiny-vlm"


# ----------------------------------------------------------------------------- tiny model and vLLM server


class _VLLMServer:
    """``python -m vllm.entrypoints.openai.api_server`` on loopback, started as soon as the model exists so
    that its start-up overlaps the tests that run before the first one that needs it."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.log: Path | None = None

    def start(self, model_dir: Path, log_dir: Path) -> None:
        if self.proc is not None:
            return
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = log_dir / "vllm_server.log"
        cmd = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(model_dir),
            "--served-model-name",
            SERVED_NAME,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--max-model-len",
            "1024",
            "--dtype",
            "float32",
            "--enforce-eager",
            "--distributed-executor-backend",
            "uni",
            "--limit-mm-per-prompt",
            json.dumps({"image": 2, "video": 0}),
        ]
        with open(self.log, "wb") as log:
            # a new session, so that stopping it also stops the engine process it spawns
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=log_dir)

    def wait(self, timeout_s: float = 420.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"vLLM server exited with {self.proc.returncode}:\n{self._tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self.url + "/v1"
            except OSError:
                pass
            time.sleep(1.0)
        pytest.fail(f"vLLM server not healthy after {timeout_s:.0f} s:\n{self._tail()}")

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log and self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


_SERVER = _VLLMServer()


@pytest.fixture(scope="session")
def tiny_vlm(request, tiny_vlm, tmp_path_factory) -> Path:
    """The session's tiny VLM (tests/conftest.py); starts the vLLM server early when a test needs it."""
    out = tiny_vlm
    if HAVE_VLLM and any("vllm_server" in getattr(item, "fixturenames", ()) for item in request.session.items):
        _SERVER.start(out, tmp_path_factory.mktemp("vllm_server"))
        request.addfinalizer(_SERVER.stop)
    return out


@pytest.fixture(scope="session")
def vllm_server(tiny_vlm) -> str:
    """Base URL (``.../v1``) of a real vLLM OpenAI-compatible server serving the tiny model as ``tiny-vlm``."""
    if not HAVE_VLLM:
        pytest.skip("vLLM is not installed (make test installs vllm-cpu)")
    return _SERVER.wait()


@pytest.fixture(scope="session")
def vllm_captioner(tiny_vlm):
    """The ``vllm`` backend: a real in-process ``vllm.LLM`` on the tiny model."""
    if not HAVE_VLLM:
        pytest.skip("vLLM is not installed (make test installs vllm-cpu)")
    from captioners import CaptionerConfig, make_captioner

    engine_args = {"max_model_len": 1024, "enforce_eager": True, "distributed_executor_backend": "uni"}
    cap = make_captioner(
        CaptionerConfig(backend="vllm", model=str(tiny_vlm), dtype="float32", batch_size=4, engine_args=engine_args)
    )
    yield cap
    cap.close()


@pytest.fixture(scope="session")
def hf_captioner(tiny_vlm):
    from captioners import CaptionerConfig, make_captioner

    return make_captioner(CaptionerConfig(backend="hf", model=str(tiny_vlm), batch_size=4))


@pytest.fixture
def fake_server():
    srv = FakeOpenAI()
    yield srv
    srv.close()
