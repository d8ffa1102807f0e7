"""Time and memory limits for CPU stages: a batch runs in a forked child the parent can kill.

Decoders and fetchers meet inputs that hang or allocate without bound (a crafted video, a
decompression bomb). Signals and thread tricks cannot stop code stuck inside a C library, so a
limited batch runs in a child process forked from the worker: the child gets an address-space
limit (an allocation past it raises ``MemoryError`` there), the parent kills the child at the time
limit. A batch that breaks a limit is run again one record at a time, so only the culprit ends
``failed`` (error kind ``TimeLimitExceeded`` or ``MemoryLimitExceeded``) and the rest go on.

Stages with a setup step (a loaded model, a fetcher with its event loop) are not forked: their state
lives in threads and devices a child would not have. Their batch runs in a worker thread the caller
waits for up to the time limit; past it the batch's records are tried one at a time under the same limit
and those that still run over end ``failed`` (the stuck thread is abandoned; the stage's own code, such
as SVG rasterisation in a child process, bounds what it keeps doing).
"""

from __future__ import annotations

import os
import pickle
import resource
import select
import signal
import threading
import time
from dataclasses import replace

from pipelines.core.stage import Stage, apply_stage, fail


class TimeLimitExceeded(Exception):
    pass


class MemoryLimitExceeded(Exception):
    pass


def _vm_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _guard_memory(fn, limit_mb: int):
    def guarded(*args):
        try:
            return fn(*args)
        except MemoryError:
            raise MemoryLimitExceeded(f"exceeded the memory limit of {limit_mb} MiB") from None

    return guarded


def _run_child(stage: Stage, batch: list[dict], memory_mb: int | None, w: int) -> None:
    """In the forked child: apply the stage and send back the records; never returns."""
    code = 0
    try:
        if memory_mb:
            # the child starts with the worker's mappings (object store, thread stacks); the limit is on growth
            soft = _vm_bytes() + (memory_mb << 20)
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            resource.setrlimit(resource.RLIMIT_AS, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))
            stage = replace(stage, fn=_guard_memory(stage.fn, memory_mb))
        # records go back through a pipe to the parent that forked us; nothing read from storage is unpickled
        data = pickle.dumps(apply_stage(stage, batch), protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(w, "wb") as f:
            f.write(data)
    except BaseException:  # noqa: BLE001 - the child reports failure by its exit code only
        code = 1
    os._exit(code)


def _run_forked(stage: Stage, batch: list[dict], time_s: float | None, memory_mb: int | None) -> list[dict] | str:
    """The stage's output for ``batch``, or why the child gave none (``time`` or ``crash``)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _run_child(stage, batch, memory_mb, w)
    os.close(w)
    deadline = None if time_s is None else time.monotonic() + time_s
    chunks, why = [], None
    with os.fdopen(r, "rb") as f:
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                why = "time"
                break
            ready, _, _ = select.select([f], [], [], left)
            if ready:
                chunk = os.read(f.fileno(), 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
    if why == "time":
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if why:
        return why
    if status != 0 or not chunks:
        return "crash"
    # the bytes come from our own forked child over a private pipe, never from stored or fetched data
    return pickle.loads(b"".join(chunks))


def _run_threaded(stage: Stage, batch: list[dict], state, time_s: float) -> list[dict] | None:
    """The stage's output for ``batch`` from a worker thread, or None when it ran past ``time_s``."""
    box: list = []

    def work():
        try:
            box.append(apply_stage(stage, batch, state))
        except BaseException as e:  # noqa: BLE001 - handed back to the waiting caller
            box.append(e)

    t = threading.Thread(target=work, name=f"braid-{stage.name}", daemon=True)
    t.start()
    t.join(time_s)
    if not box:
        return None
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def _apply_setup_limited(stage: Stage, batch: list[dict], state, time_s: float) -> list[dict]:
    out = _run_threaded(stage, batch, state, time_s)
    if out is not None:
        return out
    done = [r for r in batch if r["status"] != "ok"]
    for rec in (r for r in batch if r["status"] == "ok"):
        one = _run_threaded(stage, [rec], state, time_s)
        done.extend(one if one is not None else
                    [fail(rec, stage.name, "TimeLimitExceeded", f"{stage.name}: exceeded the time limit of {time_s:g} s")])
    return done


def apply_limited(stage: Stage, batch: list[dict], time_s: float | None, memory_mb: int | None,
                  state=None) -> list[dict]:
    """``apply_stage`` under limits; records that break one end ``failed`` and the others go on."""
    if not any(r["status"] == "ok" for r in batch):
        return batch
    if stage.setup:
        return _apply_setup_limited(stage, batch, state, time_s) if time_s else apply_stage(stage, batch, state)
    if not (time_s or memory_mb):
        return apply_stage(stage, batch)
    out = _run_forked(stage, batch, time_s, memory_mb)
    if isinstance(out, list):
        return out
    done = [r for r in batch if r["status"] != "ok"]
    for rec in (r for r in batch if r["status"] == "ok"):
        one = _run_forked(stage, [rec], time_s, memory_mb)
        if isinstance(one, list):
            done.extend(one)
        elif one == "time":
            done.append(fail(rec, stage.name, "TimeLimitExceeded", f"{stage.name}: exceeded the time limit of {time_s:g} s"))
        elif memory_mb:  # killed from outside the child: the kernel's OOM killer, most likely
            done.append(fail(rec, stage.name, "MemoryLimitExceeded",
                             f"{stage.name}: the process died under the memory limit of {memory_mb} MiB"))
        else:
            done.append(fail(rec, stage.name, "ProcessDied", f"{stage.name}: the process running the record died"))
    return done
