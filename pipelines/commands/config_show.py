"""``braid config show video|web|reason [--preset P]``: a pipeline's settings as YAML that ``--config`` accepts."""

from __future__ import annotations

import argparse

from pipelines.registry import PIPELINES, load_pipeline
from schemas.config import ConfigError, dump_yaml


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("show",), help="show: print the settings")
    parser.add_argument("pipeline", choices=sorted(PIPELINES), help="which pipeline")
    parser.add_argument("--preset", help="a named preset instead of the defaults")


def run(args: argparse.Namespace) -> int:
    from pipelines.commands.run import presets

    cls = load_pipeline(args.pipeline).CONFIG
    if args.preset and args.preset not in presets(cls):
        raise ConfigError(f"unknown preset {args.preset!r} (known: {', '.join(presets(cls))})")
    cfg = getattr(cls, args.preset)() if args.preset else cls()
    print(f"# braid {args.pipeline} settings ({args.preset or 'defaults'}); edit and pass with --config FILE")
    print(dump_yaml(cfg), end="")
    return 0
