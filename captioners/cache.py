"""The request cache: a finished caption is never asked for twice, across resumed and repeated runs.

A request's key is the sha256 of (model, prompt id, system text, few-shot turns and rendered prompt
text, image fingerprints, max_tokens, temperature, top_p, seed). Only ``ok`` and ``truncated`` results
are stored; ``error`` results are asked for again next time. Identical requests within one call are
sent once.

Storage is one SQLite file (``caption_cache.sqlite`` in the output directory) in WAL mode with a busy
timeout, so several processes (Ray workers on one machine, or on machines sharing a POSIX file system
with working locks) can read and write it at once; each ``caption`` call writes its results in one
transaction. Object stores and NFS without locking cannot hold it: give a local directory.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path

from captioners.base import CaptionRequest, CaptionResult
from captioners.inputs import RequestError, image_fingerprint, render_text

CACHE_FILE = "caption_cache.sqlite"


def request_key(model: str, req: CaptionRequest) -> str | None:
    """The cache key of ``req`` sent to ``model``; None when the request cannot even be rendered."""
    try:
        prompt, text = render_text(req)
    except RequestError:
        return None
    blob = json.dumps(
        {
            "model": model,
            "prompt_id": prompt.id,
            "system": prompt.system,
            "few_shot": prompt.few_shot,
            "text": text,
            "images": [image_fingerprint(im) for im in req.images],
            "sampling": [req.max_tokens, req.temperature, req.top_p, req.seed],
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class RequestCache:
    """Key -> finished result, in SQLite (WAL). Safe to open from several processes at once."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 60.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE), so a writer waits for the
        # lock up front instead of failing to upgrade a read lock under contention
        self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        self._setup(busy_timeout_s)

    def _setup(self, busy_timeout_s: float) -> None:
        # switching to WAL can answer "database is locked" at once, without the busy handler, while another
        # process creates the same file: retry the idempotent set-up until the busy timeout
        deadline = time.monotonic() + busy_timeout_s
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS captions (key TEXT PRIMARY KEY, text TEXT NOT NULL,"
                    " status TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL)"
                )
                return
            except sqlite3.OperationalError as e:
                if ("locked" not in str(e) and "busy" not in str(e)) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def get_many(self, keys: list[str]) -> dict[str, CaptionResult]:
        found: dict[str, CaptionResult] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(unique), 500):  # SQLite caps bound parameters per statement
                part = unique[start : start + 500]
                rows = self._db.execute(
                    "SELECT key, text, status, prompt_tokens, output_tokens FROM captions WHERE key IN"
                    f" ({','.join('?' * len(part))})",
                    part,
                ).fetchall()
                for key, text, status, pt, ot in rows:
                    found[key] = CaptionResult(
                        text=text, status=status, prompt_tokens=pt, output_tokens=ot, cached=True
                    )
        return found

    def put_many(self, items: list[tuple[str, CaptionResult]]) -> None:
        rows = [(k, r.text, r.status, r.prompt_tokens, r.output_tokens) for k, r in items if r.status != "error"]
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO captions VALUES (?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM captions").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedCaptioner:
    """Wraps a backend: answers from the cache, sends only the misses, stores what came back finished."""

    def __init__(self, inner, cache: RequestCache):
        self.inner = inner
        self.cache = cache
        self.backend = inner.backend
        self.model = inner.model

    def caption(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        keys = [request_key(self.model, r) for r in requests]
        hits = self.cache.get_many([k for k in keys if k is not None])
        results: list[CaptionResult | None] = [hits.get(k) if k is not None else None for k in keys]
        to_send: dict[str, int] = {}  # key -> position in `missing`, so duplicates are sent once
        missing: list[CaptionRequest] = []
        slots: list[int] = []  # for each request to fill: its index in `missing`
        fill: list[int] = []
        for i, (req, key) in enumerate(zip(requests, keys)):
            if results[i] is not None:
                continue
            if key is None or key not in to_send:
                if key is not None:
                    to_send[key] = len(missing)
                slots.append(len(missing))
                missing.append(req)
            else:
                slots.append(to_send[key])
            fill.append(i)
        if missing:
            fresh = self.inner.caption(missing)
            for i, slot in zip(fill, slots):
                results[i] = fresh[slot]
            self.cache.put_many([(k, fresh[pos]) for k, pos in to_send.items()])
            # a duplicate within the call is served by its twin: mark it as not freshly paid for
            seen: set[int] = set()
            for i, slot in zip(fill, slots):
                if slot in seen and results[i].status != "error":
                    results[i] = replace(results[i], cached=True)
                seen.add(slot)
        return results  # type: ignore[return-value]

    def close(self) -> None:
        self.inner.close()
        self.cache.close()
