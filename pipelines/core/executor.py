"""One executor, two ways to run: in-process, or as a Ray Data streaming job. Only file importing Ray.

Both ways read the same inputs, run the same stage list and end in the same sink; the driver
then writes ``summary.json``. Resume: inputs whose outcome is already final in the output
directory are not run again; parts already final are skipped by the sink; incomplete shards
(no stats file) and temp files are removed first. A command that writes its own results
(``braid score``) runs its stages through ``stream_stages`` instead and gets their output records
back as batches finish (sized first, if it needs to be, from ``session``'s resources).

On Ray, actor stages together hold at most half of the cluster's CPUs (see ``plan_cpus``): actors
keep their CPUs for the whole job, and on a small machine they would otherwise starve the tasks
that feed them and the job would wait forever. A local Ray instance started here is shut down at
the end of the run; one that was already running (a cluster, a test session) is left alone.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from pipelines.core.limits import apply_limited
from pipelines.core.progress import Progress, StageClock, clear_stage_times, write_stage_times
from pipelines.core.redact import redact
from pipelines.core.sections import RunConfig
from pipelines.core.sink import RunSink
from pipelines.core.stage import Stage
from schemas import load_manifest, outcome, summarize
from schemas.config import ConfigError, config_dict
from schemas.manifest import needs_retry, read_part
from schemas.writer import SHARD_RE, is_complete

log = logging.getLogger("braid")


def _pool(st: Stage) -> tuple[int, int]:
    """(min, max) actor pool size of a set-up stage; ``concurrency`` is a size or a range."""
    c = st.concurrency
    lo, hi = (c[0], c[-1]) if isinstance(c, (tuple, list)) else (c, c)
    return lo, max(lo, hi)


def check_stages(stages: list[Stage]) -> None:
    """ConfigError, with one sentence, for a stage list that cannot run."""
    if not stages:
        raise ConfigError("the pipeline has no stages")
    names = [st.name for st in stages]
    for st in stages:
        if names.count(st.name) > 1:
            raise ConfigError(f"stage name {st.name!r} is used twice; stage names must be distinct")
        if not callable(st.fn) or (st.setup is not None and not callable(st.setup)):
            raise ConfigError(f"stage {st.name!r}: fn and setup must be callables")
        if isinstance(st.batch_size, bool) or not isinstance(st.batch_size, int) or st.batch_size < 1:
            raise ConfigError(f"stage {st.name!r}: batch_size must be a positive integer, not {st.batch_size!r}")
        if st.num_cpus < 0 or st.num_gpus < 0:
            raise ConfigError(f"stage {st.name!r}: num_cpus and num_gpus must not be negative")
        try:
            lo, hi = _pool(st)
        except (TypeError, IndexError):
            raise ConfigError(f"stage {st.name!r}: concurrency must be a pool size or a (min, max) pair") from None
        if not (isinstance(lo, int) and isinstance(hi, int)) or lo < 1:
            raise ConfigError(f"stage {st.name!r}: concurrency must be at least 1, not {st.concurrency!r}")
        if st.num_gpus and not st.setup:
            raise ConfigError(f"stage {st.name!r} asks for GPUs but has no setup step; GPU stages run as actors")


def clean_incomplete(out_dir: Path) -> list[str]:
    """Remove temp files and shards without a stats file; returns what was removed."""
    removed = []
    for p in list(out_dir.glob("*.tmp")) + [p for p in out_dir.glob("*.tar") if not is_complete(p)]:
        p.unlink(missing_ok=True)
        removed.append(p.name)
    return removed


def _attempt(out_dir: Path, run_info: dict) -> int:
    runs = out_dir / "runs.jsonl"
    n = 0
    if runs.exists():
        with open(runs, encoding="utf-8") as f:
            n = sum(1 for _ in f)
    with open(runs, "a") as f:
        f.write(json.dumps({"attempt": n, "started": time.time(), **run_info}, default=str) + "\n")
    return n


def run_pipeline(stages: list[Stage], inputs: list[dict], run: RunConfig, name: str, config: object = None, *,
                 retry_failed: bool = True, progress: bool = False) -> dict:
    """Run ``stages`` over ``inputs`` (records from ``stage.new_record``) into ``run.out_dir``; returns the summary.

    Bad configuration (stages, duplicate input ids, an unreachable Ray cluster) raises ConfigError
    before anything is written. ``retry_failed``: inputs that failed in a retryable way in an earlier run
    (``retryable`` in the manifest) run again. ``progress``: print the progress line (``core.progress``).
    The config is written to ``runs.jsonl`` with its secrets masked (``core.redact``).
    """
    t0 = time.time()
    check_stages(stages)
    ids = [r["id"] for r in inputs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"input id {dup!r} appears more than once; give each input a distinct id")
    out = Path(run.out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output directory {str(out)!r} exists and is not a directory")
    records = load_manifest(out) if out.is_dir() else {}
    pending, retried = [], []
    for r in inputs:  # one outcome per input: a resumed run of a million inputs starts at once
        if outcome(r["id"], records) is None:
            pending.append(r)
        elif retry_failed and needs_retry(r["id"], records):
            pending.append(r)
            retried.append(r["id"])
    done_units = {i for i, r in records.items()
                  if r["status"] != "split" and not (retry_failed and r["status"] == "failed" and r.get("retryable"))}
    ray, started = (None, False)
    try:
        if pending and run.executor == "ray":
            ray, started = _ray_init(run)  # before anything is written: an unreachable cluster is a ConfigError
            plan = _ray_plan(ray, stages, run)
        out.mkdir(parents=True, exist_ok=True)
        removed = clean_incomplete(out)  # incomplete shards hold no final records: pending is unaffected
        if removed:
            log.info("resume: removed %d incomplete files", len(removed))
        cfg_json = redact(config_dict(config)) if config is not None and hasattr(config, "__dataclass_fields__") else None
        attempt = _attempt(out, {"pipeline": name, "inputs": len(inputs), "pending": len(pending), "config": cfg_json})
        (out / "inputs.json").write_text(json.dumps(ids))
        prefix = f"shard-r{attempt:02d}"
        clear_stage_times(out)
        ray_text = None
        if pending:
            log.info("%s: %d of %d inputs to run (%s executor)", name, len(pending), len(inputs), run.executor)
            with Progress(out, ids, name, run.progress_s, enabled=progress):
                if run.executor == "local":
                    _run_local(stages, pending, run, out, prefix, done_units)
                else:
                    ray_text = _run_ray(ray, plan, stages, pending, run, out, prefix, done_units)
            write_stage_times(out, [st.name for st in stages], {"attempt_prefix": prefix, "executor": run.executor,
                                                                **({"ray_data": ray_text} if ray_text else {})})
    finally:
        if started:
            ray.shutdown()
    summary = summarize(load_manifest(out), ids, time.time() - t0, pipeline=name, attempt=attempt,
                        resumed_inputs=len(inputs) - len(pending), retried_inputs=len(retried))
    shards = sorted(p.name for p in out.glob("*.tar") if SHARD_RE.match(p.name) and is_complete(p))
    summary["shards"] = len(shards)
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1, sort_keys=True))
    os.replace(tmp, out / "summary.json")
    return summary


def _timed(clock: StageClock, st: Stage, part: list[dict], run: RunConfig, state=None) -> list[dict]:
    t = time.perf_counter()
    done = apply_limited(st, part, run.task_time_limit_s, run.task_memory_limit_mb, state)
    clock.add(st.name, time.perf_counter() - t, len(part))
    return done


def _run_local(stages, pending, run, out, prefix, done_units) -> None:
    sink = RunSink(out, prefix, done_units, run.max_samples_per_shard, run.max_shard_bytes, _uris(pending))
    try:
        with closing(_stream_local(stages, pending, run, out)) as batches:
            for batch in batches:
                sink.consume(batch)
    finally:
        sink.close()


def _stream_local(stages, pending, run, out) -> Iterator[list[dict]]:
    """In-process: chunk by chunk, each stage over the whole chunk in its batch size; the last stage's
    batches are yielded as they finish."""
    states = [st.setup(st.cfg) if st.setup else None for st in stages]
    clock = StageClock(out)
    try:
        for i in range(0, len(pending), run.chunk_size):
            batch = pending[i : i + run.chunk_size]
            for st, state in zip(stages[:-1], states[:-1]):
                batch = [r for j in range(0, len(batch), st.batch_size)
                         for r in _timed(clock, st, batch[j : j + st.batch_size], run, state)]
            for j in range(0, len(batch), stages[-1].batch_size):
                yield _timed(clock, stages[-1], batch[j : j + stages[-1].batch_size], run, states[-1])
    finally:
        clock.flush()
        for state in states:
            close = getattr(state, "close", None)
            if callable(close):
                close()


@contextmanager
def session(run: RunConfig) -> Iterator[dict[str, float]]:
    """The resources a job run inside the block gets, so a caller can size its stages before running them
    (one actor per GPU, say). With ``executor: ray`` Ray stays connected for the whole block and yields the
    cluster's resources (a local instance started here is shut down after the block); in-process, this
    machine's CPUs. ConfigError for an unreachable cluster."""
    if run.executor != "ray":
        yield {"CPU": float(os.cpu_count() or 1)}
        return
    ray, started = _ray_init(run)
    try:
        yield {k: float(v) for k, v in ray.cluster_resources().items()}
    finally:
        if started:
            ray.shutdown()


def stream_stages(stages: list[Stage], inputs: list[dict], run: RunConfig, work_dir: str | Path, *,
                  task_retries: int = -1) -> Iterator[list[dict]]:
    """Run ``stages`` over ``inputs`` (in-process or on Ray, as ``run.executor`` says) and yield the output
    records batch by batch as they finish (on Ray in no fixed order), for a caller that writes its results
    itself: no shards, manifest, resume or summary here; the caller owns its accounting. Stage times go
    under ``work_dir``.

    ``task_retries`` (Ray): how often a batch whose actor died (process killed, out of memory, a crash in
    native code) is retried on the restarted actor; -1, without limit. With a limit, a batch that still
    fails is left out (Ray logs it) and the job goes on: its records are missing from what is yielded.
    """
    check_stages(stages)
    work = Path(work_dir)
    if run.executor == "local":
        yield from _stream_local(stages, inputs, run, work)
        return
    ray, started = _ray_init(run)
    try:
        plan, _ = _ray_plan(ray, stages, run)
        ctx = ray.data.DataContext.get_current()
        errored = ctx.max_errored_blocks
        ctx.max_errored_blocks = -1 if task_retries >= 0 else errored
        try:
            ds = _dataset(ray, plan, stages, inputs, run, work, task_retries)
        finally:
            ctx.max_errored_blocks = errored  # the dataset keeps its own copy of the context
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            yield _rows(batch)
    finally:
        # Ray Data lets a finished pool's actors go by dropping its handles, but the error of a batch whose
        # actor died keeps one in a reference cycle: until collected, that actor (restarted) holds its CPUs
        # or GPU, and a later job on the same cluster from this process can wait for them forever
        gc.collect()
        if started:
            ray.shutdown()


# ---------------------------------------------------------------- Ray Data


def _ray_init(run: RunConfig):
    """(ray, started): Ray connected, and whether this call did it (the run then shuts it down or disconnects)."""
    import ray

    if ray.is_initialized():
        return ray, False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if _cluster_address(run):
        kw = {"address": _cluster_address(run)}
    else:
        # "local": a fresh instance even when another one (a `ray start` by someone else) runs on this machine
        kw = {"address": "local", "num_cpus": run.num_cpus, "include_dashboard": False}
    try:
        ray.init(log_to_driver=False, logging_level=logging.WARNING, **kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {_cluster_address(run)!r}" if _cluster_address(run) else "a local Ray instance"
        raise ConfigError(f"could not start or join {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return ray, True


def _ray_plan(ray, stages: list[Stage], run: RunConfig) -> tuple[list[float], float]:
    """``plan_cpus`` over the cluster's CPUs, after checking a local instance has the GPUs the stages ask for
    (a cluster may add GPU nodes on demand; a local instance cannot)."""
    total = ray.cluster_resources()
    plan = plan_cpus(stages, float(total.get("CPU", 1)))
    if not _cluster_address(run):
        _check_gpus(stages, float(total.get("GPU", 0)))
    return plan


def _cluster_address(run: RunConfig) -> str | None:
    """The cluster to join: ``ray_address``, else RAY_ADDRESS (set for drivers of ``ray job submit``)."""
    return run.ray_address or os.environ.get("RAY_ADDRESS") or None


def plan_cpus(stages: list[Stage], total_cpus: float) -> tuple[list[float], float]:
    """(CPUs per task or per actor of each stage, CPUs per shard-writer task): a job that cannot starve itself.

    Set-up stages run as actor pools that hold their CPUs for the whole job; together they get at
    most half of ``total_cpus`` (split evenly between stages, then between the actors of a pool at
    its largest size). Tasks (CPU stages and the shard writer) fit in what is left.
    """
    actor_stages = [st for st in stages if st.setup]
    share = total_cpus / 2 / max(1, len(actor_stages))
    per_actor = {st.name: min(st.num_cpus, share / _pool(st)[1]) for st in actor_stages}
    free = max(total_cpus - sum(per_actor[st.name] * _pool(st)[1] for st in actor_stages), 0.01)
    return [per_actor[st.name] if st.setup else min(st.num_cpus, free) for st in stages], min(1.0, free)


def _check_gpus(stages: list[Stage], gpus: float) -> None:
    for st in stages:
        need = st.num_gpus * _pool(st)[0]
        if need > gpus:
            raise ConfigError(f"stage {st.name!r} needs {need:g} GPU(s) for its actors but the local Ray instance "
                              f"has {gpus:g}; run on a machine or cluster with GPUs, or pick a CPU backend")


def _quiet_ray_data(ctx) -> None:
    """Keep Ray Data's console to warnings unless ``-v``; its full log still goes to the session log file."""
    # records cross Ray Data as opaque Python objects on purpose (see _Box); saying so explicitly
    # stops the once-per-process warning about falling back to pickled objects
    ctx.enable_fallback_to_arrow_object_ext_type = True
    if not log.isEnabledFor(logging.INFO):
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # its console lines; -v brings them back
        ctx.enable_progress_bars = False  # our progress line stands for them
        detectors = getattr(ctx, "issue_detectors_config", None)
        if detectors is not None:  # its memory hints are Ray Data's, about a job it does not know; -v keeps them
            detectors.detectors = []
        for h in logging.getLogger("ray.data").handlers:
            if type(h).__name__ != "SessionFileHandler":
                h.setLevel(logging.WARNING)


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
    def __init__(self, stage: Stage, run: RunConfig, out: Path):
        self.stage, self.run, self.out = stage, run, out
        self.clock = None

    def __call__(self, batch):
        self.clock = self.clock or StageClock(self.out)  # one per worker process
        out = _pack(_timed(self.clock, self.stage, _rows(batch), self.run))
        self.clock.flush()
        return out


def _actor_class(stage: Stage, run: RunConfig, out: Path) -> type:
    """A per-stage actor class: the stage travels with the class, not as constructor arguments
    (Ray would keep those in the object store, where a restarted actor may no longer find them)."""

    class _ActorStage:
        def __init__(self):
            self.stage, self.state, self.clock = stage, stage.setup(stage.cfg), StageClock(out)
            self.clock.start(stage.name)

        def __call__(self, batch):
            done = _pack(_timed(self.clock, self.stage, _rows(batch), run, self.state))
            self.clock.flush()
            return done

    _ActorStage.__name__ = _ActorStage.__qualname__ = stage.name
    return _ActorStage


def _uris(records: list[dict]) -> dict[str, str]:
    return {r["id"]: r["uri"] for r in records if isinstance(r.get("uri"), str)}


def _make_sink(out: Path, prefix: str, done_units: set[str], run: RunConfig, uris: dict[str, str]):
    from ray.data import Datasink
    from ray.data.block import BlockAccessor

    class BraidDatasink(Datasink):
        """Each write task owns a shard prefix and a manifest part; a retried task skips what it already wrote."""

        def write(self, blocks, ctx):
            task_prefix = f"{prefix}t{ctx.task_idx:05d}"
            # a retried task: its unfinished shard goes, its finished records stay done
            for p in out.glob(f"{task_prefix}-*.tar*"):
                if p.name.endswith(".tmp") or not is_complete(p):
                    p.unlink(missing_ok=True)
            mine = {r["id"] for r in _part_records(out, task_prefix)
                    if r.get("status") != "written" or is_complete(out / str(r.get("shard")))}
            sink = RunSink(out, task_prefix, done_units | mine, run.max_samples_per_shard, run.max_shard_bytes, uris)
            try:
                for block in blocks:
                    rows = BlockAccessor.for_block(block).iter_rows(public_row_format=False)
                    sink.consume([row["rec"].rec for row in rows])
            finally:
                counts = sink.close()
            return counts

        @property
        def supports_distributed_writes(self) -> bool:
            return True

        @property
        def min_rows_per_write(self) -> int:
            # without it every small block becomes a write task and a shard of its own
            return run.max_samples_per_shard

    return BraidDatasink()


def _part_records(out: Path, part: str) -> list[dict]:
    return read_part(out / "manifest" / f"{part}.jsonl")


def _run_ray(ray, plan, stages, pending, run, out, prefix, done_units) -> None:
    plan, writer_cpus = plan
    ds = _dataset(ray, plan, stages, pending, run, out)
    ds.write_datasink(_make_sink(out, prefix, done_units, run, _uris(pending)), ray_remote_args={"num_cpus": writer_cpus})
    return _ray_stats_text(ds)


def _dataset(ray, plan: list[float], stages, pending, run, out, task_retries: int = -1):
    """The Ray Data dataset of ``stages`` over ``pending``: tasks for CPU stages, actor pools for set-up stages."""
    ctx = ray.data.DataContext.get_current()
    _quiet_ray_data(ctx)
    ds = ray.data.from_items([{"rec": _Box(r)} for r in pending], override_num_blocks=max(1, min(len(pending), 64)))
    for st, cpus in zip(stages, plan):
        if st.setup:
            lo, hi = _pool(st)
            # a dead actor (node lost, process killed) is restarted and its batch retried, without limit
            # (unless ``task_retries`` says otherwise): a caption batch is pure work, and a stage error is
            # already a failed record, never a raise.
            # Said explicitly (it is also Ray Data's default) because differing remote args also keep Ray
            # Data from fusing the CPU task stage before into this pool, so CPU stages scale on their own
            with warnings.catch_warnings():  # Ray 2.60 flags these two as to-be-renamed; they still work
                warnings.simplefilter("ignore", DeprecationWarning)
                ds = ds.map_batches(_actor_class(st, run, out), batch_size=st.batch_size,
                                    compute=ray.data.ActorPoolStrategy(min_size=lo, max_size=hi),
                                    num_cpus=cpus, num_gpus=st.num_gpus or None, max_restarts=-1,
                                    max_task_retries=task_retries, batch_format="numpy", zero_copy_batch=False)
        else:
            # a per-stage subclass, so Ray Data's operator names and stats say which stage it is
            task = type(st.name, (_TaskStage,), {})(st, run, out)
            ds = ds.map_batches(task,
                                batch_size=st.batch_size, num_cpus=cpus, batch_format="numpy", zero_copy_batch=False)
    return ds


def _ray_stats_text(ds) -> str | None:
    """What Ray Data's ``ds.stats()`` prints (its operators, some fused), kept beside our per-stage times."""
    written = getattr(ds, "_write_ds", None) or ds  # write_datasink keeps the executed dataset here
    try:
        text = written.stats()
    except Exception as e:  # noqa: BLE001 - stats are a diagnostic; the run's results are already final
        log.warning("no Ray Data stats: %s", e)
        return None
    log.info("ray data stats:\n%s", text)
    return text
