"""One run per output directory: an exclusive lock file ``OUT/.lock``.

The lock is created with O_EXCL (atomic on local disks and on NFS), holds who took it (host, pid, user,
command, start time) and is touched every ``HEARTBEAT_S`` seconds by a thread of the holder. A lock is
stale, and taken over, when its holder is gone: on the same host, its pid no longer runs; on another
host (a shared filesystem), its heartbeat is older than ``STALE_S``. Taking over renames the stale file
away first, so of two runs that find the same stale lock only one gets it.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

LOCK_NAME = ".lock"
HEARTBEAT_S = 10.0
STALE_S = 60.0


class LockHeld(Exception):
    """Another run holds the output directory; the message names it."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _stale(path: Path, info: dict | None) -> bool:
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return True
    if info is None:  # a lock file being written right now, or a torn one
        return age > STALE_S
    if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int):
        return not _alive(info["pid"])
    return age > STALE_S


def describe(info: dict | None) -> str:
    if not info:
        return "another run (its lock file is unreadable)"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return f"pid {info.get('pid')} on {info.get('host')} (user {info.get('user')}, started {started}: {info.get('command')})"


class OutputLock:
    """``with OutputLock(out_dir):`` holds the directory for the run; raises LockHeld when another run has it."""

    def __init__(self, out_dir: str | Path):
        self.path = Path(out_dir) / LOCK_NAME
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "user": _user(), "started": time.time(),
              "command": " ".join(["braid", *sys.argv[1:]])[:300]}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = _holder(self.path)
                if not _stale(self.path, info):
                    raise LockHeld(f"{self.path.parent} is in use by {describe(info)}; wait for it to finish, or "
                                   f"use another --out") from None
                aside = self.path.with_name(f"{LOCK_NAME}.stale.{os.getpid()}")
                try:
                    os.replace(self.path, aside)  # only one of several takers succeeds in moving it
                    aside.unlink(missing_ok=True)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self._thread = threading.Thread(target=self._beat, name="braid-lock", daemon=True)
            self._thread.start()
            return
        raise LockHeld(f"{self.path.parent} is being taken by another run at the same time; try again")

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self) -> None:
        self._stop.set()
        info = _holder(self.path)
        if info and info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
