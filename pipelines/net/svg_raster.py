"""SVG to PNG in child processes, under a wall-clock and a CPU limit.

A few kilobytes of SVG can cost minutes of CPU (``<use>`` elements that each repeat the one before, a
filter chain) and the renderer (cairosvg) is mostly Python, so inside the fetching process it would also
hold the GIL and stall every other download. ``rasterize_svg`` sends the bytes to a small pool of long-lived
child processes (``python -m pipelines.net.svg_raster``, started on first use, reused after); each job
runs under ``RLIMIT_CPU`` set to the job's limit and the parent kills the child when the wall-clock limit
passes. A killed child is replaced on the next job. The children also cap their address space
(``RLIMIT_AS``), so an SVG cannot take the machine's memory either. Raster images never come here.

Parsing in the child is safe as before: no entities, no DTD, no network; rendering runs without scripts
or external files (``unsafe=False``). Failures raise ``Refused`` with ``not_an_image`` (does not parse or
render) or ``decode_limit`` (over the time or memory limit).
"""

from __future__ import annotations

import atexit
import math
import os
import re
import select
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from pipelines.net.netguard import Refused

UNITS = {"px": 1.0, "pt": 4 / 3, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54, "in": 96.0}
CHILD_MEMORY = 2 << 30  # address space of one rasterising child
STARTUP_S = 60.0
_HEADER = struct.Struct(">IIf")  # request: SVG length, max side, limit in seconds
_REPLY = struct.Struct(">BI")  # reply: 0 ok / 1 not_an_image, payload length


def svg_size(data: bytes, max_side: int) -> tuple[int, int]:
    """Output (width, height): the intrinsic size (width/height, else viewBox), only ever scaled down."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as e:
        raise Refused("not_an_image", f"SVG does not parse: {e}") from None

    def num(v):
        m = re.fullmatch(r"\s*([0-9.]+)\s*(px|pt|pc|mm|cm|in)?\s*", str(v or ""))
        try:
            return float(m.group(1)) * UNITS[m.group(2) or "px"] if m else None
        except ValueError:
            return None

    w, h = num(root.get("width")), num(root.get("height"))
    if not (w and h):
        vb = (root.get("viewBox") or "").replace(",", " ").split()
        if len(vb) == 4 and num(vb[2]) and num(vb[3]):
            w, h = num(vb[2]), num(vb[3])
        else:
            w, h = float(max_side), float(max_side)
    scale = min(1.0, max_side / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))


def render(data: bytes, max_side: int) -> bytes:
    """SVG to PNG in this process (the child's job); raises Refused('not_an_image')."""
    import cairosvg

    w, h = svg_size(data, max_side)
    try:
        return cairosvg.svg2png(bytestring=data, output_width=w, output_height=h, unsafe=False)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - any renderer failure is a bad image, not a crash
        raise Refused("not_an_image", f"SVG does not render: {type(e).__name__}: {e}") from None


# ---------------------------------------------------------------- parent side


def _read_exact(fd: int, n: int, deadline: float) -> bytes | None:
    """n bytes from fd, or None at end of file; raises TimeoutError past the deadline."""
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class _Child:
    def __init__(self):
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self.proc = subprocess.Popen([sys.executable, "-m", "pipelines.net.svg_raster"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, bufsize=0)
        try:  # the child says it is ready once its imports are done: start-up does not count against a job
            ready = _read_exact(self.proc.stdout.fileno(), 1, time.monotonic() + STARTUP_S)
        except TimeoutError:
            ready = None
        if ready != b"R":
            self.kill()
            raise Refused("svg_rejected", f"the SVG rasteriser process did not start within {STARTUP_S} s")

    def run(self, data: bytes, max_side: int, limit_s: float) -> bytes:
        deadline = time.monotonic() + limit_s
        try:
            self.proc.stdin.write(_HEADER.pack(len(data), max_side, limit_s) + data)
            head = _read_exact(self.proc.stdout.fileno(), _REPLY.size, deadline)
            if head is not None:
                status, n = _REPLY.unpack(head)
                body = _read_exact(self.proc.stdout.fileno(), n, deadline)
                if body is not None:
                    if status == 0:
                        return body
                    raise Refused("not_an_image", body.decode("utf-8", "replace"))
        except TimeoutError:
            self.kill()
            raise Refused("decode_limit", f"rasterising the SVG took longer than {limit_s:g} s; skipped") from None
        except (BrokenPipeError, OSError):
            pass
        self.kill()
        raise Refused("decode_limit", f"rasterising the SVG went over the {limit_s:g} s CPU or "
                                      f"{CHILD_MEMORY >> 20} MiB memory limit; skipped")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            f.close()


class _Pool:
    """Idle children ready for a job; at most ``size`` jobs run at once."""

    def __init__(self, size: int):
        self.size, self.pid = size, os.getpid()
        self.idle: list[_Child] = []
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(size)

    def run(self, data: bytes, max_side: int, limit_s: float) -> bytes:
        with self.slots:
            with self.lock:
                child = self.idle.pop() if self.idle else None
            if child is None or not child.alive():
                child = _Child()
            try:
                out = child.run(data, max_side, limit_s)
            except Refused as r:
                if r.outcome == "not_an_image" and child.alive():
                    self._give_back(child)
                raise
            self._give_back(child)
            return out

    def _give_back(self, child: _Child) -> None:
        with self.lock:
            self.idle.append(child)

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for c in idle:
            c.kill()


_pool: _Pool | None = None
_pool_lock = threading.Lock()


def _get_pool() -> _Pool:
    global _pool
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid():  # a forked process starts its own children
            _pool = _Pool(max(1, min(4, os.cpu_count() or 1)))
            atexit.register(_pool.close)
        return _pool


def rasterize_svg(data: bytes, max_side: int, limit_s: float = 10.0) -> bytes:
    """SVG to PNG with its longest side at most ``max_side``, in a child process within ``limit_s``."""
    try:
        import cairosvg  # noqa: F401 - fail here, with the install hint, not in the child
    except (ImportError, OSError):
        raise Refused("svg_rejected", "cairosvg cannot load (pip install cairosvg; needs libcairo)") from None
    return _get_pool().run(data, max_side, limit_s)


# ---------------------------------------------------------------- child side


def _serve() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))
    import cairosvg  # noqa: F401 - loaded once, before the first job's clock starts

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    out.write(b"R")
    out.flush()
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    while True:
        head = inp.read(_HEADER.size)
        if len(head) < _HEADER.size:
            return
        n, max_side, limit_s = _HEADER.unpack(head)
        data = inp.read(n)
        used = resource.getrusage(resource.RUSAGE_SELF)
        cpu = used.ru_utime + used.ru_stime
        soft = math.ceil(cpu + limit_s)
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))  # SIGXCPU ends this process past the limit
        try:
            body, status = render(data, max_side), 0
        except Refused as r:
            body, status = r.detail.encode(), 1
        out.write(_REPLY.pack(status, len(body)) + body)
        out.flush()


if __name__ == "__main__":
    _serve()
