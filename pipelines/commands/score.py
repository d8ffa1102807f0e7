"""``braid score SHARDS... --checkpoint DIR --out scores.parquet``: one row per sample with the model's losses.

``DIR`` is a ``braid train`` run folder (scored by ``model.score.score_sample``) or a BAGEL checkpoint folder
(``llm_config.json``, ``vit_config.json``, ``ema.safetensors``, ``ae.safetensors``, ``tokenizer.json``; scored by
``model.bagel_score.score_samples_bagel`` with BAGEL's own layout and losses). Each sample is scored as if alone
(mean CE per text segment, velocity MSE per generation target at fixed timesteps and fixed noise, the combined
training objective), so a score depends neither on order nor on which batch or worker scored it. Samples are
scored in batches of ``--batch-size`` (a BAGEL checkpoint packs a batch into shared forwards within its token
budget; each sample still attends only to itself).

``--executor local`` (the default) scores in this process with one model on ``--device``; ``--executor ray``
scores on Ray (a local instance, or the cluster at ``--ray-address``) with an actor pool where each actor loads
the checkpoint once: one actor per GPU when the cluster has GPUs, else ``--actors`` CPU actors (see
``pipelines.commands.score_run``). Both give the same rows.

Rows are written as parquet parts under ``OUT.parts/`` as batches finish; at the end the parts and any earlier
``OUT`` are merged into ``OUT`` (written by rename; columns in ``pipelines.commands.score_table``). Re-running
with the same ``--out`` (also after a killed run) skips samples already final; the checkpoint, timesteps and
seed must match those the earlier rows were made with.

Every sample gets one row: ``scored`` (score set), ``unscored`` (the model cannot score it: over the token
budget, nothing to score, an image that does not decode; ``note`` says why) or ``failed`` (the sample does not
decode; a shard that cannot be read gets one row with an empty key; a sample whose scoring raised or whose
worker died is ``failed`` and ``retryable``, and the next run scores it again).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from pipelines.commands.score_run import ScoreJob, load_checkpoint, score_shards, weights_name
from pipelines.commands.score_table import COLUMNS, is_final, merge, part_files, read_earlier, read_scores, write_table
from pipelines.commands.view import shard_paths
from pipelines.core.sections import RunConfig
from schemas.config import ConfigError

__all__ = ["COLUMNS", "configure", "load_checkpoint", "read_scores", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shards", nargs="+", help="shard files (.tar) or directories holding them")
    parser.add_argument("--checkpoint", required=True, help="a braid train run folder or a BAGEL checkpoint folder "
                        "(llm_config.json, vit_config.json, ema.safetensors, ae.safetensors, tokenizer files)")
    parser.add_argument("--out", required=True, help="the parquet file to write (re-running resumes it)")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per scoring batch and written part "
                        "(default 64)")
    parser.add_argument("--timesteps", default="0.25,0.5,0.75",
                        help="flow-matching timesteps the image MSE is averaged over (default 0.25,0.5,0.75)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fixed noise (default 0)")
    parser.add_argument("--weights", default="auto", choices=("auto", "ema", "model"))
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when there is a GPU)")
    parser.add_argument("--executor", default="local", choices=("local", "ray"),
                        help="local (in this process, the default) or ray (an actor pool, one model per actor)")
    parser.add_argument("--ray-address", default=None,
                        help="join a running Ray cluster ('auto' or ray://host:port) (default: a local instance)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local Ray instance (default: all)")
    parser.add_argument("--actors", type=int, default=None, help="scoring actors on Ray (default: one per GPU of "
                        "the cluster, or one CPU actor when it has none; CPU actors hold at most half the CPUs)")


def _timesteps(text: str) -> tuple[float, ...]:
    try:
        ts = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ConfigError(f"--timesteps must be comma-separated numbers, not {text!r}") from None
    if not ts or any(not 0.0 < t < 1.0 for t in ts):
        raise ConfigError("--timesteps must be one or more numbers strictly between 0 and 1")
    return ts


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    if args.actors is not None and args.actors < 1:
        raise ConfigError("--actors must be at least 1")
    if args.executor == "local" and (args.actors or args.ray_address or args.num_cpus):
        raise ConfigError("--actors, --ray-address and --num-cpus are for --executor ray")
    ts = _timesteps(args.timesteps)
    paths = shard_paths(args.shards)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        raise ConfigError(f"no such shard: {missing[0]}" if missing else "no .tar shards found in the given directories")
    out = Path(args.out)
    parts = out.with_name(out.name + ".parts")
    job = ScoreJob(str(Path(args.checkpoint).resolve()), args.device, args.weights, ts, args.seed)
    run_cfg = RunConfig(out_dir=str(parts), executor=args.executor, ray_address=args.ray_address,
                        num_cpus=args.num_cpus, chunk_size=1)
    # in-process, the model is loaded before any work; on Ray each actor loads it, and a load error there
    # fails that actor's samples (retryable) with the sentence
    preloaded = load_checkpoint(args.checkpoint, args.device, args.weights) if args.executor == "local" else None
    meta = {"checkpoint": job.checkpoint, "weights": preloaded[0].weights if preloaded else
            weights_name(args.checkpoint, args.weights), "timesteps": list(ts), "seed": args.seed}
    earlier = read_earlier(out, parts, meta)
    done: dict[str, set[str]] = {}
    for r in earlier:
        if is_final(r):
            done.setdefault(r["shard"], set()).add(r["key"])
    t0 = time.time()
    shards = list(dict.fromkeys(str(p.resolve()) for p in paths))
    n_new = score_shards(job, shards, done, parts, meta, run_cfg, args.batch_size, args.actors, preloaded)
    rows = merge(earlier + [r for f in part_files(parts) for r in read_scores(f)[0]])
    out.parent.mkdir(parents=True, exist_ok=True)
    write_table(out, rows, meta)
    shutil.rmtree(parts)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("scored", "unscored", "failed")}
    n_skipped = sum(len(done.get(s, ())) for s in shards)
    print(f"wrote {out}: {len(rows)} rows ({counts['scored']} scored, {counts['unscored']} unscored, "
          f"{counts['failed']} failed); {n_new} scored now, {n_skipped} already scored, {time.time() - t0:.1f} s")
    return 0
