"""The dropped data ``braid view`` shows: for every filter reason, how many units it dropped and N examples with
the scores that dropped them; the same for failures; and image-level drops inside web documents.

Where it comes from (nothing here re-runs a filter):

- clip- and document-level drops: the run's manifest, final ``filtered`` / ``failed`` records (stage, reason or
  error kind, scores, detail or message, uri);
- image-level drops: the ``images`` list of web documents' manifest records, written or filtered (source, stage,
  reason, scores per image not in the sample); for runs that predate it, ``meta.image_log`` of written samples
  and the ``src: reason`` pairs of a filtered document's ``detail``. Each image counts once.

Thumbnails: an entry's ``thumb`` (or a record's ``thumbs``), a path relative to the run folder, is shown when the
file exists; else an image whose source is a local file (``file://`` or a path) is thumbnailed from that file.
Remote images and video clips get no picture unless the pipeline kept one (the entries then show their source
and scores only).
"""

from __future__ import annotations

import random
from pathlib import Path
from urllib.parse import unquote, urlparse

from pipelines.commands.view_scan import thumbnail
from schemas.manifest import iter_records

MAX_SOURCE_BYTES = 64 << 20
DETAIL_SRC_CHARS = 80  # the web pipeline cuts each source in a filtered document's detail to this length


def _reservoir_add(bucket: dict, item: dict, n: int, rng: random.Random) -> None:
    bucket["count"] += 1
    ex = bucket["examples"]
    if len(ex) < n:
        ex.append(item)
    else:
        j = rng.randrange(bucket["count"])
        if j < n:
            ex[j] = item


def _bucket(groups: dict, level: str, stage: str, reason: str) -> dict:
    return groups.setdefault((level, stage, reason), {"level": level, "stage": stage, "reason": reason, "count": 0,
                                                      "examples": []})


def _detail_pairs(detail: str) -> list[dict]:
    """``src: reason; src: reason`` (a filtered document's detail) as image-log entries."""
    out = []
    for part in detail.split("; "):
        src, sep, reason = part.rpartition(": ")
        if sep and src and reason and " " not in reason:
            out.append({"src": src, "reason": reason, "stage": "?", "cut": len(src) >= DETAIL_SRC_CHARS})
    return out


def collect_drops(run_dirs: list[Path], written_logs: list[tuple[str, str, list]], n: int, seed: int = 0) -> dict:
    """Groups of dropped units, keyed by (level, stage, reason), each with a count and up to ``n`` examples.

    ``written_logs``: (sample key, uri, image_log) of written web samples, read from the shards.
    Levels: ``unit`` (a clip, document or record the manifest says was filtered), ``image`` (an image dropped
    inside a document), ``failed`` (a unit that failed).
    """
    rng = random.Random(seed)
    groups: dict = {}
    seen: set = set()  # (sample key or unit id, src, position) of image drops already counted
    manifests = 0
    for run in run_dirs:
        if not (run / "manifest").is_dir():
            continue
        manifests += 1
        latest: dict[str, dict] = {}
        for rec in iter_records(run):
            latest[rec["id"]] = rec
        for rec in latest.values():
            uri = rec.get("uri") or rec.get("input") or rec["id"]
            if rec["status"] == "failed":
                item = {"id": rec["id"], "uri": uri, "message": rec.get("message", ""), "retryable": rec.get("retryable"),
                        "run": str(run)}
                _reservoir_add(_bucket(groups, "failed", rec.get("stage", "?"), str(rec.get("error_kind"))), item, n, rng)
                continue
            scores = rec.get("scores") if isinstance(rec.get("scores"), dict) else {}
            if rec["status"] == "filtered":
                item = {"id": rec["id"], "uri": uri, "scores": {k: v for k, v in scores.items() if k != "image_log"},
                        "detail": rec.get("detail", ""), "thumbs": rec.get("thumbs") or [], "run": str(run)}
                if rec.get("span"):
                    item["span"] = rec["span"]
                _reservoir_add(_bucket(groups, "unit", rec.get("stage", "?"), str(rec.get("reason"))), item, n, rng)
            elif rec["status"] != "written":
                continue
            # image-level drops: the record's whole list (``images``), else older runs' image_log or detail pairs
            log = rec.get("images") or rec.get("image_log") or scores.get("image_log")
            if not isinstance(log, list):
                log = _detail_pairs(rec.get("detail") or "") if rec["status"] == "filtered" else []
            owner = rec.get("key") or rec["id"]
            for e in log:
                if isinstance(e, dict) and e.get("reason"):
                    seen.add((owner, str(e.get("src", "")), e.get("pos")))
                    _add_image(groups, e, owner, uri, run, n, rng)
    for key, uri, log in written_logs:
        for e in log:
            if e.get("reason") and (key, str(e.get("src", "")), e.get("pos")) not in seen:
                _add_image(groups, e, key, uri, None, n, rng)
    out = sorted(groups.values(), key=lambda g: ({"image": 0, "unit": 1, "failed": 2}[g["level"]], -g["count"]))
    return {"groups": out, "manifests": manifests}


def _add_image(groups: dict, e: dict, owner: str, uri: str, run: Path | None, n: int, rng: random.Random) -> None:
    item = {"id": owner, "uri": uri, "src": str(e.get("src", "")), "scores": e.get("scores") or {},
            "pos": e.get("pos"), "cut": bool(e.get("cut")), "thumb": e.get("thumb"),
            "run": str(run) if run else None}
    _reservoir_add(_bucket(groups, "image", str(e.get("stage", "?")), str(e["reason"])), item, n, rng)


def _local_file(src: str, base: Path | None) -> Path | None:
    if src.startswith("file://"):
        p = Path(unquote(urlparse(src).path))
    elif "://" in src or not src:
        return None
    else:
        p = Path(src) if Path(src).is_absolute() or base is None else base / src
    try:
        return p if p.is_file() and p.stat().st_size <= MAX_SOURCE_BYTES else None
    except OSError:
        return None


def drop_thumbnails(drops: dict, view: Path, side: int) -> None:
    """Give each example the thumbnails that exist (see module docstring), written under ``<view>/thumbs/drops``."""
    folder = view / "thumbs" / "drops"
    n = 0
    for g in drops["groups"]:
        for ex in g["examples"]:
            run = Path(ex["run"]) if ex.get("run") else None
            candidates = [*(ex.get("thumbs") or []), *([ex["thumb"]] if ex.get("thumb") else [])]
            files = [f for c in candidates if isinstance(c, str) and (f := _local_file(c, run)) is not None]
            if not files and ex.get("src") and not ex.get("cut"):
                f = _local_file(ex["src"], None)
                files = [f] if f is not None else []
            ex["pics"] = []
            for f in files[:4]:
                got = thumbnail(f.read_bytes(), side)
                if got is None:
                    continue
                folder.mkdir(parents=True, exist_ok=True)
                name = f"{n:06d}.{got[1]}"
                (folder / name).write_bytes(got[0])
                ex["pics"].append(f"thumbs/drops/{name}")
                n += 1
            for k in ("thumbs", "thumb", "run"):
                ex.pop(k, None)
