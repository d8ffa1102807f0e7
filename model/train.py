"""``braid train SHARDS... --out RUN_DIR [--config tiny|small|base|FILE] [--steps N] [--resume]``

Trains the bundled MoT on Braid shards. The run folder describes itself: ``config.json`` (model, train,
data and autoencoder settings), ``tokenizer/``, ``autoencoder.json``, ``model.safetensors`` (and
``ema.safetensors``), ``checkpoint/`` (optimizer state and ``trainer_state.json`` with the data position,
written last), ``metrics.jsonl``, ``skips.jsonl`` and ``loss.png``. Under ``torchrun`` every rank takes
its own packs of one global stream and gradients are averaged (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from model.autoencoder import AutoencoderConfig, AutoencoderError
from model.data import DataConfig, DataError, ShardStream, TextTokenizer, held_out
from model.mot import MoTConfig
from schemas.config import ConfigError, apply_settings

log = logging.getLogger(__name__)


class TrainError(ConfigError):
    """Bad arguments or run folder; one sentence, before any work."""


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 20000
    lr: float = 1e-4
    min_lr_ratio: float = 0.1  # cosine floor as a share of lr
    schedule: str = "cosine"  # "cosine" or "constant" (after warm-up)
    warmup: int = 500
    weight_decay: float = 0.0  # BAGEL: 0
    beta1: float = 0.9
    beta2: float = 0.95  # BAGEL's AdamW betas and eps (eps 1e-15 against loss spikes)
    eps: float = 1e-15
    clip: float = 1.0
    accum: int = 1  # packs per rank per optimizer step
    ema: float = 0.0  # EMA decay; 0 turns EMA off (BAGEL: 0.9999 in pre-training)
    eval_every: int = 500
    eval_batches: int = 8
    ckpt_every: int = 1000
    log_every: int = 10
    seed: int = 0
    compile: bool = False  # torch.compile each decoder block
    attention: str = "auto"  # "auto" (flex on GPU, dense on CPU), "flex", "dense" or "sample" (per-sample SDPA)
    host_mask: bool = True  # flex: build the block mask's tiles on the host with the pack, off the GPU's path
    ce_weight: float = 0.25  # loss = ce_weight * CE + mse_weight * MSE (BAGEL's weights)
    mse_weight: float = 1.0
    loader_workers: int = -1  # processes packing ahead of the step; -1: 2 on a GPU, 0 (in-process) on CPU
    peak_tflops: float = 0.0  # for the MFU in metrics.jsonl; 0: the GPU's dense bf16 peak by name (H100/H200: 989)

    @classmethod
    def preset(cls, name: str) -> TrainConfig:
        return {
            "tiny": cls(steps=200, lr=1e-3, warmup=10, eval_every=50, eval_batches=4, ckpt_every=100),
            "small": cls(steps=5000, lr=3e-4, warmup=200, eval_every=250, ckpt_every=1000),
            "base": cls(ema=0.9999),
        }[name]


PRESET_DATA = {"tiny": DataConfig(max_tokens=1024), "small": DataConfig(max_tokens=8192), "base": DataConfig()}
SECTIONS = {"model": MoTConfig, "train": TrainConfig, "data": DataConfig, "autoencoder": AutoencoderConfig}


def load_configs(spec: str) -> dict:
    """Preset name or a JSON/YAML file ``{preset?, model?, train?, data?, autoencoder?}`` -> the four configs."""
    if spec in ("tiny", "small", "base"):
        doc: dict = {"preset": spec}
    else:
        path = Path(spec)
        if not path.is_file():
            raise TrainError(f"--config {spec!r} is neither a preset (tiny, small, base) nor a file")
        import yaml

        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise TrainError(f"{spec}: not valid YAML/JSON ({e})") from None
        if not isinstance(doc, dict) or set(doc) - {"preset", *SECTIONS}:
            raise TrainError(f"{spec}: expected a mapping with keys preset, {', '.join(SECTIONS)}")
    preset = doc.get("preset", "tiny")
    if preset not in ("tiny", "small", "base"):
        raise TrainError(f"preset {preset!r} is not one of tiny, small, base")
    mcfg = MoTConfig.preset(preset)
    cfgs = {"model": mcfg, "train": TrainConfig.preset(preset), "data": PRESET_DATA[preset],
            "autoencoder": AutoencoderConfig(downsample=mcfg.latent_downsample)}
    for name in SECTIONS:
        if doc.get(name):
            cfgs[name] = apply_settings(cfgs[name], doc[name], name + ".")
    ae = cfgs["autoencoder"]
    cfgs["model"] = cfgs["model"].replace(latent_channels=ae.latent_channels, latent_downsample=ae.downsample)
    if cfgs["train"].attention not in ("auto", "flex", "dense"):
        raise TrainError("train.attention must be auto, flex or dense")
    return cfgs


def configure(parser) -> None:
    parser.add_argument("shards", nargs="*", help="training shards (.tar)")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--config", default="tiny", help="tiny | small | base | a YAML/JSON file")
    parser.add_argument("--steps", type=int, help="optimizer steps (overrides the config)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--eval", nargs="*", default=None, metavar="SHARD",
                        help="held-out shards (default: the last shard when there are several, else 10%% by key)")
    parser.add_argument("--tokenizer", help="a tokenizer folder (tokenizer.json); default: fit a byte-level BPE")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the decoder blocks")


def run(args) -> int:
    try:
        return _run(args)
    except (TrainError, DataError, AutoencoderError) as e:
        print(f"braid train: error: {e}", file=sys.stderr)
        return 2


def _check_args(args) -> tuple[list[str], list[str] | None, Path]:
    shards = [str(s) for s in args.shards]
    if not shards:
        raise TrainError("no shards given: pass one or more .tar shards to train on")
    for s in shards + list(args.eval or []):
        if not Path(s).is_file():
            raise TrainError(f"shard {s} does not exist")
    out = Path(args.out)
    ckpt = out / "checkpoint" / "trainer_state.json"
    if args.resume and not ckpt.is_file():
        raise TrainError(f"--resume: {out} holds no checkpoint to resume from")
    if not args.resume and ckpt.is_file():
        raise TrainError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    return shards, args.eval, out


def _run(args) -> int:
    import torch

    from model import checkpoint as ck
    from model.loop import Trainer, setup_distributed

    shards, eval_arg, out = _check_args(args)
    if args.resume:
        saved = json.loads((out / "config.json").read_text())
        for k in ("ce_weight", "mse_weight"):  # run folders from when the loss weights sat in the model section
            if k in saved["model"]:
                saved["train"].setdefault(k, saved["model"].pop(k))
        cfgs = {k: C(**saved[k]) for k, C in SECTIONS.items()}
    else:
        cfgs = load_configs(args.config)
    tcfg = cfgs["train"]
    if args.steps is not None:
        tcfg = dataclasses.replace(tcfg, steps=args.steps)
    if args.compile:
        tcfg = dataclasses.replace(tcfg, compile=True)
    cfgs["train"] = tcfg

    if eval_arg:
        train_shards, eval_shards = shards, list(eval_arg)
    elif len(shards) >= 2:
        train_shards, eval_shards = shards[:-1], shards[-1:]
    else:
        train_shards, eval_shards = shards, None

    rank, world, device = setup_distributed(args.device)
    out.mkdir(parents=True, exist_ok=True)
    tok_dir = out / "tokenizer"
    if not args.resume and rank == 0:  # one rank writes the run's tokenizer; the others wait, then read it
        src = TextTokenizer.load(args.tokenizer) if args.tokenizer else TextTokenizer.fit(
            _texts(train_shards), cfgs["model"].vocab_size)
        src.save(tok_dir)
    _barrier(world)
    tok = TextTokenizer.load(tok_dir)
    if not args.resume:
        vocab = -(-tok.vocab_size // 64) * 64  # rounded up for matrix-friendly shapes
        cfgs["model"] = cfgs["model"].replace(vocab_size=vocab)
        if rank == 0:
            cfgs["autoencoder"].save(out / "autoencoder.json")
            doc = {k: dataclasses.asdict(v) for k, v in cfgs.items()}
            doc.update(train_shards=train_shards, eval_shards=eval_shards)
            ck.write_json(out / "config.json", doc)
    elif tok.vocab_size > cfgs["model"].vocab_size:
        raise TrainError(f"{out}/tokenizer has {tok.vocab_size} tokens but the model only {cfgs['model'].vocab_size}")

    mcfg, dcfg = cfgs["model"], cfgs["data"]
    frac = dcfg.eval_fraction if eval_shards is None else 0.0
    stream = ShardStream(train_shards, tok, mcfg, dcfg, seed=tcfg.seed,
                         keep=(lambda k: not held_out(k, frac)) if frac else None)
    eval_stream = None
    if eval_shards is not None:
        eval_stream = ShardStream(eval_shards, tok, mcfg, dcfg, seed=tcfg.seed, dropout=False)
    elif frac:
        eval_stream = ShardStream(train_shards, tok, mcfg, dcfg, seed=tcfg.seed, dropout=False,
                                  keep=lambda k: held_out(k, frac))
    torch.manual_seed(tcfg.seed)
    trainer = Trainer(out, cfgs, tok, stream, eval_stream, rank, world, device)
    trainer.train(resume=args.resume)
    if world > 1:  # a rank that exits with its process group alive can abort in Gloo's teardown (SIGABRT)
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return 0


def _texts(shards: list[str], limit: int = 50000):
    from schemas import SampleError, ShardError, read_samples

    n = 0
    for shard in shards:
        try:
            for sample in read_samples(shard):
                for seg in sample.texts:
                    yield seg.text
                n += 1
                if n >= limit:
                    return
        except (ShardError, SampleError, OSError):
            continue  # the stream records the problem when it reads the shard


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()

