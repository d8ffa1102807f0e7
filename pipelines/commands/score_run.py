"""How ``braid score`` runs: two stages through the executor (``pipelines.core.executor.stream_stages``), in this
process or on Ray, with the same rows either way.

- ``read`` (a CPU task per shard): the shard's samples not yet final in ``--out``, each a record; a sample that
  does not decode is a ``failed`` row, an unreadable shard one more ``failed`` row with an empty key.
- ``score`` (a set-up stage: the checkpoint is loaded once per worker): batches of samples through the model.
  In-process, the one model loaded before any work; on Ray, an actor pool: one actor per GPU (each holding
  that GPU) when the cluster has GPUs, else ``--actors`` CPU actors (default 1, at most half the CPUs).

The driver writes rows into ``OUT.parts/`` as they come back, so a run killed at any point loses at most one
part's worth of work. A batch whose actor died (killed, out of memory, a crash in native code) is retried once
on the restarted actor; if it dies again its samples get ``failed`` rows marked ``retryable`` and the job
goes on; so does a sample whose scoring raised. The next run into the same ``--out`` scores those again.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

from pipelines.commands.score_table import failed_row, part_files, score_row, write_table
from pipelines.core.executor import session, stream_stages
from pipelines.core.sections import RunConfig
from pipelines.core.stage import Stage, new_record, split
from schemas import SampleError, ShardError, decode_sample, iter_members
from schemas.config import ConfigError

TASK_RETRIES = 1  # a batch whose actor died runs once more on the restarted actor, then its samples fail
LOST = ("the worker scoring this sample died twice while scoring its batch (killed, out of memory or crashed); "
        "the next run into the same --out scores it again")


@dataclass(frozen=True)
class ScoreJob:
    """What every worker needs: the checkpoint, where and how to score."""

    checkpoint: str
    device: str | None
    weights: str
    timesteps: tuple[float, ...]
    seed: int


def load_checkpoint(path: str, device: str | None, weights: str = "auto"):
    """(bundle, ``score_many(bundle, samples, timesteps, seed) -> [SampleScore]``) for a ``braid train`` run folder
    or a BAGEL checkpoint folder; ConfigError naming what is wrong."""
    from model.bagel_load import is_bagel_folder

    if is_bagel_folder(path):
        from model.bagel_score import load_bagel_bundle, score_samples_bagel

        try:
            return load_bagel_bundle(path, device, weights), score_samples_bagel
        except ValueError as e:
            raise ConfigError(f"--checkpoint: {e}") from None
    from model.run_folder import InferError, load_run
    from model.score import score_sample

    def score_many(bundle, samples, timesteps, seed):
        return [score_sample(bundle, s, timesteps, seed) for s in samples]

    try:
        return load_run(path, device, weights=weights), score_many
    except InferError as e:
        raise ConfigError(f"--checkpoint: {e}") from None


def weights_name(path: str, weights: str) -> str:
    """The weights file a worker will load, found without loading it (the driver of a Ray run loads no model)."""
    from model.bagel_load import is_bagel_folder
    from model.checkpoint import WEIGHT_FILES, find_weights

    folder = Path(path)
    if not is_bagel_folder(folder) and not (folder / "config.json").is_file():
        raise ConfigError(f"--checkpoint: {folder} is neither a braid train run folder (config.json) nor a BAGEL "
                          "checkpoint folder (llm_config.json, vit_config.json, ae.safetensors)")
    found = find_weights(folder, weights)
    if found is None:
        raise ConfigError(f"--checkpoint: {folder} holds no weights ({' or '.join(WEIGHT_FILES[weights])})")
    return found.name


def read_shard(batch: list[dict], job: ScoreJob) -> list[dict]:
    """Each shard record becomes a ``split`` marker (listing the keys it read, for the driver's accounting)
    followed by one record per sample not yet final: ``ok`` with the decoded sample, or ``failed`` with its row."""
    out: list[dict] = []
    for rec in batch:
        shard, done, parts = rec["shard"], set(rec["done"]), []
        try:
            for key, members in iter_members(shard):
                if key in done:
                    continue
                try:
                    parts.append({"shard": shard, "key": key, "sample": decode_sample(key, members)})
                except SampleError as e:
                    parts.append({"shard": shard, "key": key, "status": "failed", "row": failed_row(shard, key, str(e))})
        except ShardError as e:
            parts.append({"shard": shard, "key": "", "status": "failed", "row": failed_row(shard, "", str(e))})
        marker, *children = split(rec, parts)
        out += [{**marker, "keys": [p["key"] for p in parts]}, *children]
    return out


def load_scorer(job: ScoreJob):
    """A worker's (bundle, score_many), or the ConfigError that kept the checkpoint from loading there (its
    samples then fail with that sentence, retryable)."""
    try:
        return load_checkpoint(job.checkpoint, job.device, job.weights)
    except ConfigError as e:
        return e


def score_batch(batch: list[dict], job: ScoreJob, state) -> list[dict]:
    """One row per sample record; a batch whose scoring raises is scored sample by sample, so only the
    culprit fails."""
    if isinstance(state, ConfigError):
        rows = [_failed(r, f"the checkpoint did not load on this worker: {state}") for r in batch]
    else:
        bundle, score_many = state
        try:
            scores = score_many(bundle, [r["sample"] for r in batch], job.timesteps, job.seed)
            rows = [score_row(r["shard"], r["sample"], sc) for r, sc in zip(batch, scores, strict=True)]
        except Exception:  # noqa: BLE001 - scored one by one below, so the culprit is found
            rows = [_score_one(r, job, bundle, score_many) for r in batch]
    return [{"id": r["id"], "input": r["input"], "status": "ok", "row": row} for r, row in zip(batch, rows)]


def _score_one(rec: dict, job: ScoreJob, bundle, score_many) -> dict:
    try:
        return score_row(rec["shard"], rec["sample"], score_many(bundle, [rec["sample"]], job.timesteps, job.seed)[0])
    except Exception as e:  # noqa: BLE001 - a model error on one sample is that sample's failed row
        return _failed(rec, f"scoring raised {type(e).__name__}: {e}")


def _failed(rec: dict, message: str) -> dict:
    s = rec["sample"]
    return failed_row(rec["shard"], rec["key"], message, s.kind, s.source.uri, retryable=True)


def build_stages(job: ScoreJob, run: RunConfig, resources: dict, batch_size: int, actors: int | None,
                 preloaded=None) -> list[Stage]:
    """The read and score stages, the score stage sized from the cluster (ConfigError when it cannot be)."""
    read = Stage("read", read_shard, job, batch_size=1)
    if run.executor == "local":
        return [read, Stage("score", score_batch, job, setup=lambda _job: preloaded, batch_size=batch_size)]
    gpus, cpus = int(resources.get("GPU", 0)), resources.get("CPU", 1.0)
    if gpus and job.device != "cpu":  # Ray shows each actor its own GPU only, as cuda:0
        return [read, Stage("score", score_batch, replace(job, device="cuda"), setup=load_scorer, num_gpus=1.0,
                            batch_size=batch_size, concurrency=actors or gpus)]
    if job.device not in (None, "cpu"):
        raise ConfigError(f"--device {job.device}: the Ray cluster has no GPUs; use --device cpu or join a cluster "
                          "with GPUs (--ray-address)")
    most = max(1, int(cpus // 2))
    if (actors or 1) > most:
        raise ConfigError(f"--actors {actors}: the Ray cluster has {cpus:g} CPUs and CPU scoring actors may hold at "
                          f"most half of them ({most})")
    return [read, Stage("score", score_batch, replace(job, device="cpu"), setup=load_scorer, num_cpus=1.0,
                        batch_size=batch_size, concurrency=actors or 1)]


def score_shards(job: ScoreJob, shards: list[str], done: dict[str, set[str]], parts: Path, meta: dict,
                 run: RunConfig, batch_size: int, actors: int | None, preloaded=None) -> int:
    """Score every sample of ``shards`` not in ``done`` (keys by shard), writing parts of about ``batch_size``
    rows into ``parts`` as results come back; every sample read gets a row. Returns how many samples got one."""
    inputs = [new_record(s, uri=s, shard=s, done=sorted(done.get(s, ()))) for s in shards]
    parts.mkdir(parents=True, exist_ok=True)
    n_part = len(part_files(parts))
    got: set[tuple[str, str]] = set()
    listed: dict[str, list[str]] = {}  # shard -> the keys its read task listed
    pending: list[dict] = []

    def flush() -> None:
        nonlocal n_part, pending
        if pending:
            write_table(parts / f"part-{n_part:05d}.parquet", pending, meta)
            n_part += 1
            got.update((r["shard"], r["key"]) for r in pending)
            pending = []

    with session(run) as resources:
        stages = build_stages(job, run, resources, batch_size, actors, preloaded)
        for batch in stream_stages(stages, inputs, run, parts, task_retries=TASK_RETRIES):
            for rec in batch:
                if rec["status"] == "split":
                    listed[rec["uri"]] = rec["keys"]
                elif "row" in rec:
                    pending.append(rec["row"])
            if len(pending) >= batch_size:
                flush()
        flush()
    lost = []
    for s in shards:  # a batch lost with its actor: its samples are accounted for here
        keys = listed[s] if s in listed else _keys(s, done.get(s, set()))
        lost += [failed_row(s, k, LOST, retryable=True) for k in keys if (s, k) not in got]
    if lost:
        print(f"braid score: {len(lost)} samples were lost with a scoring worker; they are recorded as failed "
              "and the next run scores them", file=sys.stderr)
        pending = lost
        flush()
    return sum(1 for _, k in got if k)


def _keys(shard: str, done: set[str]) -> list[str]:
    """The keys a read of ``shard`` lists (its read result was lost with an actor's batch): read again here."""
    keys = []
    try:
        for k, _ in iter_members(shard):
            if k not in done:
                keys.append(k)
    except ShardError:
        keys.append("")
    return keys
