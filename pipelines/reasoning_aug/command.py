"""``braid reason SHARDS_OR_TABLES... --out OUT_DIR --kinds t2i,edit,concept [--captioner ...]``."""

from __future__ import annotations

import argparse
import json

from schemas.config import ConfigError, build_config
from pipelines.commands.job_flags import add_job_flags, check_captioner, job_overrides

from pipelines.reasoning_aug.config import GENERATORS, ReasonConfig

# flag -> dotted config field(s), beside the shared ones (pipelines.commands.job_flags)
FLAGS = {
    "kinds": "kinds",
    "batch_size": "batch_size",
    "concurrency": "concurrency",
    "num_gpus": "num_gpus",
    "per_record": ("t2i.max_per_record", "edit.max_per_record"),
    "seed": "seed",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="SHARDS_OR_TABLES",
                        help="Braid shards (.tar), edit tables (.parquet), directories or globs")
    parser.add_argument("--out", required=True, help="output directory (shards, manifest/, summary.json)")
    parser.add_argument("--kinds", help=f"generators to run, comma-separated (default: {','.join(GENERATORS)})")
    parser.add_argument("--config", help="YAML file of ReasonConfig settings (flags override it)")
    parser.add_argument("--preset", choices=["tiny"], help="start from a named preset")
    add_job_flags(parser, "t2i.max_per_record=2")
    parser.add_argument("--batch-size", type=int, help="records per generation batch")
    parser.add_argument("--concurrency", type=int, help="caption actors (Ray)")
    parser.add_argument("--num-gpus", type=float, help="GPUs per caption actor (Ray)")
    parser.add_argument("--per-record", type=int, help="samples per source record and generator (t2i and edit)")
    parser.add_argument("--seed", type=int, help="sampling seed and candidate choice")


def config_from_args(args: argparse.Namespace) -> ReasonConfig:
    overrides = job_overrides(args, FLAGS)
    cfg = build_config(ReasonConfig, args.config, overrides, preset=args.preset)
    check_captioner(cfg.captioner)
    return cfg


def run(args: argparse.Namespace) -> int:
    from captioners.base import CaptionerConfigError

    from pipelines.reasoning_aug.pipeline import reason

    cfg = config_from_args(args)
    try:
        summary = reason(cfg, args.inputs)
    except CaptionerConfigError as e:
        raise ConfigError(str(e)) from None
    brief = {k: summary[k] for k in ("inputs", "written", "filtered", "failed", "samples_written")}
    print(json.dumps({**brief, "kinds": {g: {k: v for k, v in c.items() if k != "by_error_kind"}
                                         for g, c in summary["kinds"].items()}}, indent=1))
    print(f"summary: {cfg.run.out_dir}/summary.json")
    return 0
