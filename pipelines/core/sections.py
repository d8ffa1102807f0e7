"""The config sections every pipeline shares: ``run`` (where and how it runs) and ``caption`` (how the caption
stage scales). A pipeline's config is a frozen dataclass made of these, ``captioner``
(``captioners.base.CaptionerConfig``) and its own sections."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.config import ConfigError


@dataclass(frozen=True)
class RunConfig:
    """Where and how a pipeline runs.

    out_dir: output directory (shards, manifest/, summary.json).
    executor: ``ray`` (a fresh local Ray instance unless a cluster is named) or ``local`` (in-process).
    ray_address: join a running cluster (``auto``, ``host:port`` or ``ray://host:port``); without it the
        RAY_ADDRESS environment variable (set by ``ray job submit``) is used when present.
    num_cpus: CPUs for a local Ray instance (default: all).
    max_samples_per_shard / max_shard_bytes: shard rollover limits.
    chunk_size: records per in-process chunk.
    task_time_limit_s / task_memory_limit_mb: limits per batch of a CPU stage (one without a setup step);
        a record that breaks one ends ``failed`` and the run goes on (see ``pipelines.core.limits``); set-up
        stages (captioners, fetchers) get the time limit too.
    progress_s: seconds between progress lines when the output is not a terminal.
    """

    out_dir: str = "out"
    executor: str = "ray"
    ray_address: str | None = None
    num_cpus: int | None = None
    max_samples_per_shard: int = 1000
    max_shard_bytes: int = 1 << 30
    chunk_size: int = 32
    task_time_limit_s: float | None = None
    task_memory_limit_mb: int | None = None
    progress_s: float = 30.0

    def __post_init__(self):
        if self.executor not in ("ray", "local"):
            raise ConfigError(f"executor must be 'ray' or 'local', not {self.executor!r}")
        if self.max_samples_per_shard < 1 or self.max_shard_bytes < 1:
            raise ConfigError("max_samples_per_shard and max_shard_bytes must be positive")
        if self.chunk_size < 1:
            raise ConfigError("chunk_size must be positive")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ConfigError("num_cpus must be at least 1")


@dataclass(frozen=True)
class CaptionConfig:
    """How the caption stage runs; a pipeline subclasses it to add its prompt ids and budgets.

    batch_size: records per captioner call.
    concurrency: captioner workers (Ray actors): a pool size, or a ``[min, max]`` range for an autoscaling pool.
    num_cpus / num_gpus: per captioner worker.
    prompts_file: a YAML file of extra prompts (id, version, text, token budget) that prompt ids may name.
    """

    batch_size: int = 8
    concurrency: int | tuple[int, int] = 1
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    prompts_file: str | None = None

    def __post_init__(self):
        lo, hi = (self.concurrency[0], self.concurrency[-1]) if isinstance(self.concurrency, (tuple, list)) else (
            self.concurrency, self.concurrency)
        if self.batch_size < 1 or lo < 1 or hi < lo:
            raise ConfigError("caption.batch_size must be positive and caption.concurrency a positive size or "
                              "a [min, max] range")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ConfigError("caption.num_cpus and caption.num_gpus must not be negative")
CACHE_DIR = "cache"  # the caption request cache under the output directory, the same in every pipeline
