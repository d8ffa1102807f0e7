"""Progress a person can follow, the same for both executors.

Workers time each stage (``StageClock``) and keep their totals in ``OUT/stage_times/<worker>.json``; the
driver's ``Progress`` thread reads the manifest parts and those files and prints one line: inputs done of
total, written / filtered / failed, rate, ETA and the slowest stage so far. On a terminal the line is
redrawn in place; off a terminal (a log file, a CI job) a full line is printed every ``interval_s``
seconds, and once more at the end. At the end the totals become ``OUT/stage_times.json``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

from schemas.manifest import outcome, parse_record

TIMES_DIR = "stage_times"


class StageClock:
    """Per-worker stage totals (seconds, batches, records), flushed to a small JSON file at most every 2 s."""

    def __init__(self, out_dir: str | Path):
        self.path = Path(out_dir) / TIMES_DIR / f"{socket.gethostname()}-{os.getpid()}-{id(self):x}.json"
        self.totals: dict[str, dict] = {}
        self._last = 0.0

    def start(self, stage: str) -> None:
        """Announce a worker of ``stage`` (an actor after its set-up), so its file exists before any batch."""
        self.totals.setdefault(stage, {"seconds": 0.0, "batches": 0, "records": 0})
        self.flush()

    def add(self, stage: str, seconds: float, records: int) -> None:
        t = self.totals.setdefault(stage, {"seconds": 0.0, "batches": 0, "records": 0})
        t["seconds"] += seconds
        t["batches"] += 1
        t["records"] += records
        if time.monotonic() - self._last > 2.0:
            self.flush()

    def flush(self) -> None:
        self._last = time.monotonic()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.totals))
            os.replace(tmp, self.path)
        except OSError:
            pass  # timing is a diagnostic; a full disk shows up where the samples are written


def stage_workers(out_dir: str | Path, stage: str) -> int:
    """How many workers (processes, actors) ran ``stage`` in the latest attempt."""
    n = 0
    for p in (Path(out_dir) / TIMES_DIR).glob("*.json"):
        try:
            n += stage in json.loads(p.read_text())
        except (OSError, ValueError):
            continue
    return n


def stage_totals(out_dir: str | Path) -> dict[str, dict]:
    """Stage totals summed over every worker's file of this output directory."""
    out: dict[str, dict] = {}
    for p in (Path(out_dir) / TIMES_DIR).glob("*.json"):
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        for name, t in data.items():
            acc = out.setdefault(name, {"seconds": 0.0, "batches": 0, "records": 0})
            for k in acc:
                acc[k] += t.get(k, 0)
    return out


def write_stage_times(out_dir: str | Path, order: list[str], extra: dict | None = None) -> None:
    """``stage_times.json``: each stage's own time, in pipeline order, summed over workers."""
    totals = stage_totals(out_dir)
    stages = {n: {"seconds": round(totals[n]["seconds"], 3), "batches": totals[n]["batches"],
                  "records": totals[n]["records"]} for n in order if n in totals}
    path = Path(out_dir) / "stage_times.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"stages": stages, **(extra or {})}, indent=1))
    os.replace(tmp, path)


def clear_stage_times(out_dir: str | Path) -> None:
    for p in (Path(out_dir) / TIMES_DIR).glob("*"):
        p.unlink(missing_ok=True)


class Progress:
    """The driver's progress line; ``with Progress(...)`` runs it for the length of the run."""

    def __init__(self, out_dir: str | Path, input_ids: list[str], name: str, interval_s: float = 30.0,
                 stream=None, enabled: bool = True):
        self.out = Path(out_dir)
        self.ids = input_ids
        self.name = name
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = 1.0 if self.tty else interval_s
        self.enabled = enabled
        self.records: dict[str, dict] = {}
        self._offsets: dict[Path, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.monotonic()
        self._done0: int | None = None

    def _read(self) -> None:
        for path in sorted((self.out / "manifest").glob("*.jsonl")):
            off = self._offsets.get(path, 0)
            try:
                with open(path, "rb") as f:
                    f.seek(off)
                    data = f.read()
            except OSError:
                continue
            end = data.rfind(b"\n") + 1  # a line still being written is read next time
            for line in data[:end].splitlines():
                rec = parse_record(line)
                if rec is not None:
                    self.records[rec["id"]] = rec
            self._offsets[path] = off + end

    def line(self) -> str:
        self._read()
        counts = {"written": 0, "filtered": 0, "failed": 0}
        for i in self.ids:
            o = outcome(i, self.records)
            if o:
                counts[o] += 1
        done = sum(counts.values())
        if self._done0 is None:
            self._done0 = done
        elapsed = max(time.monotonic() - self._t0, 1e-6)
        rate = (done - self._done0) / elapsed
        left = len(self.ids) - done
        eta = f"{_hms(left / rate)}" if rate > 0 else "?"
        totals = stage_totals(self.out)
        slow = max(totals.items(), key=lambda kv: kv[1]["seconds"], default=None)
        slowest = f"; slowest stage {slow[0]} ({slow[1]['seconds']:.0f} s)" if slow else ""
        return (f"braid {self.name}: {done}/{len(self.ids)} inputs done ({counts['written']} written, "
                f"{counts['filtered']} filtered, {counts['failed']} failed); {rate:.2f} inputs/s, "
                f"ETA {eta}, {_hms(elapsed)} elapsed{slowest}")

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._emit(self.line())

    def _emit(self, text: str, final: bool = False) -> None:
        try:
            if self.tty:
                self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
            else:
                self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def __enter__(self):
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, name="braid-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
            self._emit(self.line(), final=True)  # where the run ended, however short it was


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
