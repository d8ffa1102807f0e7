"""One executor, two ways to run: in-process, or as a Ray Data streaming job. Only file importing Ray.

Both ways read the same inputs, run the same stage list and end in the same sink; the driver
then writes ``summary.json``. Resume: inputs whose outcome is already final in the output
directory are not run again; parts already final are skipped by the sink; incomplete shards
(no stats file) and temp files are removed first.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from schemas import load_manifest, outcome, summarize
from schemas.writer import SHARD_RE, is_complete

from .sink import RunSink
from .stage import Stage, apply_stage

log = logging.getLogger("braid")


@dataclass(frozen=True)
class RunConfig:
    """Where and how a pipeline runs.

    out_dir: output directory (shards, manifest/, summary.json).
    executor: ``ray`` (a local Ray instance unless ray_address is set) or ``local`` (in-process).
    ray_address: join a running cluster (``auto`` or ``ray://host:port``).
    num_cpus: CPUs for a local Ray instance (default: all).
    max_samples_per_shard / max_shard_bytes: shard rollover limits.
    chunk_size: records per in-process chunk.
    """

    out_dir: str = "out"
    executor: str = "ray"
    ray_address: str | None = None
    num_cpus: int | None = None
    max_samples_per_shard: int = 1000
    max_shard_bytes: int = 1 << 30
    chunk_size: int = 32

    def __post_init__(self):
        if self.executor not in ("ray", "local"):
            raise ValueError(f"executor must be 'ray' or 'local', not {self.executor!r}")
        if self.max_samples_per_shard < 1 or self.max_shard_bytes < 1:
            raise ValueError("max_samples_per_shard and max_shard_bytes must be positive")


def clean_incomplete(out_dir: Path) -> list[str]:
    """Remove temp files and shards without a stats file; returns what was removed."""
    removed = []
    for p in list(out_dir.glob("*.tmp")) + [p for p in out_dir.glob("*.tar") if not is_complete(p)]:
        p.unlink(missing_ok=True)
        removed.append(p.name)
    return removed


def _final_records(out_dir: Path) -> dict[str, dict]:
    """Manifest records, less written ones whose shard is not complete."""
    recs = load_manifest(out_dir)
    return {i: r for i, r in recs.items() if r["status"] != "written" or is_complete(out_dir / r["shard"])}


def _attempt(out_dir: Path, run_info: dict) -> int:
    runs = out_dir / "runs.jsonl"
    n = sum(1 for _ in open(runs)) if runs.exists() else 0
    with open(runs, "a") as f:
        f.write(json.dumps({"attempt": n, "started": time.time(), **run_info}, default=str) + "\n")
    return n


def run_pipeline(stages: list[Stage], inputs: list[dict], run: RunConfig, name: str, config: object = None) -> dict:
    """Run ``stages`` over ``inputs`` (records from ``stage.new_record``) into ``run.out_dir``; returns the summary."""
    t0 = time.time()
    out = Path(run.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = [r["id"] for r in inputs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"input id {dup!r} appears more than once; give each input a distinct id")
    removed = clean_incomplete(out)
    if removed:
        log.info("resume: removed %d incomplete files", len(removed))
    records = _final_records(out)
    pending = [r for r in inputs if outcome(r["id"], records) is None]
    done_units = {i for i, r in records.items() if r["status"] != "split"}
    attempt = _attempt(out, {"pipeline": name, "inputs": len(inputs), "pending": len(pending),
                             "config": asdict(config) if config is not None and hasattr(config, "__dataclass_fields__") else None})
    (out / "inputs.json").write_text(json.dumps(ids))
    prefix = f"shard-r{attempt:02d}"
    if pending:
        log.info("%s: %d of %d inputs to run (%s executor)", name, len(pending), len(inputs), run.executor)
        if run.executor == "local":
            _run_local(stages, pending, run, out, prefix, done_units)
        else:
            _run_ray(stages, pending, run, out, prefix, done_units)
    summary = summarize(_final_records(out), ids, time.time() - t0, pipeline=name, attempt=attempt,
                        resumed_inputs=len(inputs) - len(pending))
    shards = sorted(p.name for p in out.glob("*.tar") if SHARD_RE.match(p.name))
    summary["shards"] = len(shards)
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1, sort_keys=True))
    os.replace(tmp, out / "summary.json")
    return summary


def _run_local(stages, pending, run, out, prefix, done_units) -> None:
    states = [st.setup(st.cfg) if st.setup else None for st in stages]
    sink = RunSink(out, prefix, done_units, run.max_samples_per_shard, run.max_shard_bytes)
    try:
        for i in range(0, len(pending), run.chunk_size):
            batch = pending[i : i + run.chunk_size]
            for st, state in zip(stages, states):
                nxt = []
                for j in range(0, len(batch), st.batch_size):
                    nxt.extend(apply_stage(st, batch[j : j + st.batch_size], state))
                batch = nxt
            sink.consume(batch)
    finally:
        sink.close()
        for st, state in zip(stages, states):
            close = getattr(state, "close", None)
            if callable(close):
                close()


# ---------------------------------------------------------------- Ray Data


def _ray_init(run: RunConfig):
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        kw = {"address": run.ray_address} if run.ray_address else {"num_cpus": run.num_cpus, "include_dashboard": False}
        ray.init(log_to_driver=False, logging_level=logging.WARNING, **kw)
    return ray


class _Box:
    """Keeps a record opaque to Ray Data (records vary in shape; Arrow must not infer a schema)."""

    __slots__ = ("rec",)

    def __init__(self, rec: dict):
        self.rec = rec


def _rows(batch) -> list[dict]:
    return [b.rec for b in batch["rec"]]


def _pack(records: list[dict]):
    import numpy as np

    arr = np.empty(len(records), dtype=object)
    arr[:] = [_Box(r) for r in records]
    return {"rec": arr}


class _TaskStage:
    def __init__(self, stage: Stage):
        self.stage = stage

    def __call__(self, batch):
        return _pack(apply_stage(self.stage, _rows(batch)))


class _ActorStage:
    def __init__(self, stage: Stage):
        self.stage, self.state = stage, stage.setup(stage.cfg)

    def __call__(self, batch):
        return _pack(apply_stage(self.stage, _rows(batch), self.state))


def _make_sink(out: Path, prefix: str, done_units: set[str], run: RunConfig):
    from ray.data import Datasink
    from ray.data.block import BlockAccessor

    class BraidDatasink(Datasink):
        """Each write task owns a shard prefix and a manifest part; a retried task skips what it already wrote."""

        def write(self, blocks, ctx):
            task_prefix = f"{prefix}t{ctx.task_idx:05d}"
            mine = {r["id"] for r in _part_records(out, task_prefix)}
            sink = RunSink(out, task_prefix, done_units | mine, run.max_samples_per_shard, run.max_shard_bytes)
            try:
                for block in blocks:
                    sink.consume([row["rec"].rec for row in BlockAccessor.for_block(block).iter_rows(public_row_format=False)])
            finally:
                counts = sink.close()
            return counts

        @property
        def supports_distributed_writes(self) -> bool:
            return True

    return BraidDatasink()


def _part_records(out: Path, part: str) -> list[dict]:
    path = out / "manifest" / f"{part}.jsonl"
    if not path.exists():
        return []
    recs = []
    for line in open(path, encoding="utf-8"):
        try:
            recs.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return recs


def _run_ray(stages, pending, run, out, prefix, done_units) -> None:
    ray = _ray_init(run)
    total_cpus = float(ray.cluster_resources().get("CPU", 1))
    ds = ray.data.from_items([{"rec": _Box(r)} for r in pending], override_num_blocks=max(1, min(len(pending), 64)))
    for st in stages:
        if st.setup:
            # actors hold their CPUs for the whole job: cap them so tasks always keep a share
            # (on 2 cores, two 1-CPU actors would starve the read tasks and deadlock)
            cpus = min(st.num_cpus, total_cpus / (2 * max(1, st.concurrency)))
            ds = ds.map_batches(_ActorStage, fn_constructor_args=(st,), batch_size=st.batch_size,
                                concurrency=st.concurrency, num_cpus=cpus, num_gpus=st.num_gpus or None,
                                batch_format="numpy", zero_copy_batch=False)
        else:
            ds = ds.map_batches(_TaskStage(st), batch_size=st.batch_size, num_cpus=min(st.num_cpus, total_cpus),
                                batch_format="numpy", zero_copy_batch=False)
    ds.write_datasink(_make_sink(out, prefix, done_units, run))
