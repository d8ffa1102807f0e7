"""The ``braid`` command. The pipelines (``pipelines.registry``) all run through one runner
(``pipelines.commands.run``); every other command lives in its own module with ``configure(parser)`` and
``run(args)``. Only the chosen command's module is imported."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys

from pipelines.registry import PIPELINES, load_pipeline

COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("pipelines.commands.config_show", "print a pipeline's settings as YAML (braid config show web)"),
    "validate": ("pipelines.commands.validate", "check shards: schema, member layout, images decode"),
    "stats": ("pipelines.commands.stats", "print a run's summary"),
    "status": ("pipelines.commands.status", "what is done, pending and failed, from the manifest alone"),
    "view": ("pipelines.commands.view", "a paged viewer of samples and dropped data (a static folder: open index.html)"),
    "export": ("pipelines.commands.export", "export shards to BAGEL, Hugging Face or OmniCorpus formats"),
    "push": ("pipelines.commands.export", "upload an exported Hugging Face dataset"),
    "make-tiny-vlm": ("captioners.tiny", "build a tiny random-weight VLM for tests and smoke runs"),
    "train": ("model.train", "train the bundled MoT on shards"),
    "infer": ("model.infer", "generate text or images with a trained MoT"),
    "spotcheck": ("pipelines.commands.spotcheck", "score and render a spot-check report of shards"),
    "score": ("pipelines.commands.score", "score every sample with a checkpoint's losses into a parquet file"),
    "filter": ("pipelines.commands.filter", "keep the samples whose scores meet a condition, in new shards"),
}


def _available() -> dict[str, tuple[str, str]]:
    out = {}
    for name, (mod, help_) in COMMANDS.items():
        if importlib.util.find_spec(mod) is not None:
            out[name] = (mod, help_)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cmds = _available()
    if not argv or (argv[0] not in cmds and argv[0] not in PIPELINES):
        top = argparse.ArgumentParser(prog="braid", description="Build interleaved image-text training data.")
        sub = top.add_subparsers(dest="command", metavar="COMMAND")
        for name in PIPELINES:
            sub.add_parser(name, help=load_pipeline(name).DESCRIPTION, add_help=False)
        for name, (_, help_) in cmds.items():
            sub.add_parser(name, help=help_, add_help=False)
        top.parse_args(argv or ["--help"])
        return 2
    name = argv[0]
    if name in PIPELINES:
        from pipelines.commands import run as runner_mod

        pipe = load_pipeline(name)
        parser = argparse.ArgumentParser(prog=f"braid {name}", description=pipe.DESCRIPTION)
        parser.add_argument("-v", "--verbose", action="store_true", help="log progress and Ray's own output")
        runner_mod.configure(parser, pipe)
        runner = lambda a: runner_mod.run_command(a, pipe)
    else:
        module = importlib.import_module(cmds[name][0])
        parser = argparse.ArgumentParser(prog=f"braid {name}", description=cmds[name][1])
        parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
        configure = getattr(module, f"configure_{name.replace('-', '_')}", None) or module.configure
        runner = getattr(module, f"run_{name.replace('-', '_')}", None) or module.run
        configure(parser)
    args = parser.parse_args(argv[1:])
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    from captioners.base import CaptionerConfigError
    from schemas.config import ConfigError

    ray_before = _ray_running()
    try:
        return int(runner(args) or 0)
    except (ConfigError, CaptionerConfigError) as e:
        print(f"braid {name}: configuration error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        if not ray_before and _ray_running():
            sys.modules["ray"].shutdown()  # a command never leaves behind a Ray it started


def _ray_running() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and getattr(ray, "is_initialized", lambda: False)()


if __name__ == "__main__":
    sys.exit(main())
