"""The run sink: written samples go into shards, every decision into the manifest.

Manifest records of written samples are appended only after their shard's stats file exists, so
a record never points at an incomplete shard. Filtered, failed and split records are appended at
once. Records whose id is already final in this output directory are skipped (resume, retries).
"""

from __future__ import annotations

from pathlib import Path

from schemas import ManifestWriter, ShardWriter

MANIFEST_FIELDS = ("id", "input", "status", "stage", "reason", "scores", "error_kind", "message",
                   "children", "shard", "key", "detail")


def manifest_record(rec: dict) -> dict:
    return {k: rec[k] for k in MANIFEST_FIELDS if k in rec}


class RunSink:
    def __init__(self, out_dir: str | Path, prefix: str, skip_ids: set[str] = frozenset(),
                 max_count: int = 1000, max_bytes: int = 1 << 30):
        self.out_dir = Path(out_dir)
        self.skip = set(skip_ids)
        self.manifest = ManifestWriter(self.out_dir / "manifest" / f"{prefix}.jsonl")
        self.writer = ShardWriter(self.out_dir, prefix, max_count, max_bytes, on_complete=self._shard_done)
        self.pending: dict[str, list[dict]] = {}
        self.counts = {"written": 0, "filtered": 0, "failed": 0, "split": 0, "skipped": 0}

    def consume(self, records: list[dict]) -> None:
        now = []
        for rec in records:
            if rec["id"] in self.skip:
                self.counts["skipped"] += 1
                continue
            self.skip.add(rec["id"])
            if rec["status"] == "ok":
                sample = rec.get("sample")
                if sample is None:
                    now.append({"id": rec["id"], "input": rec["input"], "status": "failed", "stage": "sink",
                                "error_kind": "no_sample", "message": "the pipeline ended without a sample"})
                    self.counts["failed"] += 1
                    continue
                shard = self.writer.write(sample)
                self.pending.setdefault(shard, []).append(
                    {"id": rec["id"], "input": rec["input"], "status": "written", "shard": shard, "key": sample.key})
            else:
                now.append(manifest_record(rec))
                self.counts[rec["status"]] += 1
        self.manifest.append(now)

    def _shard_done(self, shard: Path, keys: list[str]) -> None:
        recs = self.pending.pop(shard.name, [])
        self.counts["written"] += len(recs)
        self.manifest.append(recs)

    def close(self) -> dict:
        self.writer.close()
        self.manifest.close()
        return dict(self.counts)
