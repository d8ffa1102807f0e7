"""The run sink: written samples go into shards, every decision into the manifest.

Written records of a shard are appended once the tar has its final name and before its stats file
is written; ``schemas.load_manifest`` ignores written records whose shard has no stats file, so a
kill at any point leaves either a complete shard with its records or an incomplete one that resume
removes and redoes. Filtered, failed and split records are appended at once. Records whose id is
already final in this output directory are skipped (resume, retries).
"""

from __future__ import annotations

from pathlib import Path

from pipelines.core.redact import redact, redact_url
from pipelines.core.retry import is_retryable
from pipelines.core.thumbs import DROPPED_DIR, THUMB, THUMBS
from schemas import ManifestWriter, SampleError, ShardWriter

MANIFEST_FIELDS = ("id", "uri", "input", "status", "stage", "reason", "scores", "error_kind", "message",
                   "retryable", "children", "shard", "key", "detail", "images", "span", "thumbs")
THUMBS_PER_REASON = 20  # thumbnails of dropped data kept per reason by one writer


def manifest_record(rec: dict) -> dict:
    """The record as the manifest keeps it: known fields only, secrets masked, failures marked retryable or not."""
    out = {k: rec[k] for k in MANIFEST_FIELDS if rec.get(k) is not None}
    if out["status"] == "failed":
        out["retryable"] = is_retryable(out.get("error_kind"))
    return redact(out)


def scrub_sample(sample):
    """The sample without credentials in its URLs (source uri, image provenance): signed URLs stay readable."""
    from dataclasses import replace

    from schemas import ImageSegment

    segs = tuple(replace(s, provenance=redact(s.provenance)) if isinstance(s, ImageSegment) and s.provenance else s
                 for s in sample.segments)
    uri = redact_url(sample.source.uri)
    if uri == sample.source.uri and segs == sample.segments:
        return sample
    return replace(sample, source=replace(sample.source, uri=uri), segments=segs)


def _sink_failure(rec: dict, error_kind: str, message: str) -> dict:
    return manifest_record({**rec, "status": "failed", "stage": "sink", "error_kind": error_kind, "message": message})


class RunSink:
    """Consumes finished records of one writer (one shard prefix, one manifest part)."""

    def __init__(self, out_dir: str | Path, prefix: str, skip_ids: set[str] = frozenset(),
                 max_count: int = 1000, max_bytes: int = 1 << 30, uris: dict[str, str] | None = None):
        self.out_dir = Path(out_dir)
        self.uris = uris or {}  # input id -> uri, for records a stage rebuilt without it
        self.prefix = prefix
        self.thumbs_kept: dict[str, int] = {}
        self.skip = set(skip_ids)
        self.manifest = ManifestWriter(self.out_dir / "manifest" / f"{prefix}.jsonl")
        self.writer = ShardWriter(self.out_dir, prefix, max_count, max_bytes, before_stats=self._shard_done)
        self.pending: dict[str, list[dict]] = {}
        self.keys: dict[str, str] = {}  # sample key -> record id, to catch two inputs claiming one key
        self.counts = {"written": 0, "filtered": 0, "failed": 0, "split": 0, "skipped": 0}

    def consume(self, records: list[dict]) -> None:
        now = []
        for rec in records:
            if rec["id"] in self.skip:
                self.counts["skipped"] += 1
                continue
            self.skip.add(rec["id"])
            if not rec.get("uri") and rec.get("input") in self.uris:
                rec = {**rec, "uri": self.uris[rec["input"]]}
            rec = self._keep_thumbs(rec)
            if rec["status"] != "ok":
                now.append(manifest_record(rec))
                self.counts[rec["status"]] += 1
                continue
            sample = rec.get("sample")
            if sample is None:
                now.append(_sink_failure(rec, "no_sample", "the pipeline ended without a sample"))
            elif sample.key in self.keys:
                now.append(_sink_failure(rec, "duplicate_key",
                                         f"sample key {sample.key!r} was already written for {self.keys[sample.key]!r}"))
            else:
                try:
                    shard = self.writer.write(scrub_sample(sample))
                except SampleError as e:
                    now.append(_sink_failure(rec, "invalid_sample", str(e)))
                else:
                    self.keys[sample.key] = rec["id"]
                    self.pending.setdefault(shard, []).append(
                        manifest_record({"id": rec["id"], "uri": rec.get("uri"), "input": rec["input"],
                                         "status": "written", "shard": shard, "key": sample.key,
                                         "images": rec.get("images") or None}))
                    continue
            self.counts["failed"] += 1
        self.manifest.append(now)

    def _save_thumb(self, reason: str, name: str, data: bytes) -> str | None:
        if not data or self.thumbs_kept.get(reason, 0) >= THUMBS_PER_REASON:
            return None
        self.thumbs_kept[reason] = self.thumbs_kept.get(reason, 0) + 1
        rel = f"{DROPPED_DIR}/{name}.jpg"
        path = self.out_dir / rel
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(f".{self.prefix}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        return rel

    def _keep_thumbs(self, rec: dict) -> dict:
        """Thumbnail bytes on a dropped clip or on a document's image entries become files and paths."""
        if THUMBS not in rec and not any(THUMB in e for e in rec.get("images") or () if isinstance(e, dict)):
            return rec
        rec = dict(rec)
        if rec["status"] == "filtered":
            paths = [self._save_thumb(rec.get("reason", "?"), f"{rec['id']}-{k}", t)
                     for k, t in enumerate(rec.get(THUMBS) or ())]
            if any(paths):
                rec["thumbs"] = [p for p in paths if p]
        rec.pop(THUMBS, None)
        images = []
        for e in rec.get("images") or ():
            if isinstance(e, dict) and THUMB in e:
                e = dict(e)
                path = self._save_thumb(e.get("reason", "?"), f"{rec['id']}-img{e.get('pos')}", e.pop(THUMB))
                if path:
                    e["thumb"] = path
            images.append(e)
        if images:
            rec["images"] = images
        return rec

    def _shard_done(self, shard: Path, keys: list[str]) -> None:
        recs = self.pending.pop(shard.name, [])
        self.counts["written"] += len(recs)
        self.manifest.append(recs)

    def close(self) -> dict:
        try:
            self.writer.close()
        finally:
            self.manifest.close()
        return dict(self.counts)
