"""The training loop behind ``braid train``: optimizer, schedule, accumulation, EMA, evaluation,
checkpoints, metrics and the loss curve; data-parallel over ``torchrun`` ranks."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path

import torch

from model import checkpoint as ck
from model.attention import attend, block_tiles, build_mask
from model.autoencoder import build_autoencoder
from model.data import DataError, pack
from model.flops import FlopCounter, peak_tflops
from model.mot import MoT
from model.objective import compute_losses
from model.prefetch import PackSource, pack_items

log = logging.getLogger(__name__)
LOSS_KEYS = ("loss", "ce", "mse")


def setup_distributed(device: str | None):
    """(rank, world size, device) from torchrun's environment; gloo on CPU, NCCL on GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return rank, world, torch.device(device)


def lr_at(step: int, tcfg) -> float:
    if step < tcfg.warmup:
        return tcfg.lr * (step + 1) / tcfg.warmup
    if tcfg.schedule == "constant":
        return tcfg.lr
    frac = min(1.0, (step - tcfg.warmup) / max(1, tcfg.steps - tcfg.warmup))
    floor = tcfg.lr * tcfg.min_lr_ratio
    return floor + (tcfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * frac))


class Trainer:
    def __init__(self, out: Path, cfgs: dict, tok, stream, eval_stream, rank: int, world: int, device):
        self.out, self.cfgs, self.tok = out, cfgs, tok
        self.mcfg, self.tcfg = cfgs["model"], cfgs["train"]
        self.stream, self.eval_stream = stream, eval_stream
        self.rank, self.world, self.device = rank, world, device
        self.model = MoT(self.mcfg).to(device)
        self.ae = build_autoencoder(cfgs["autoencoder"])
        if self.tcfg.compile:
            self.model.compile_blocks(dynamic=True)
        # the module that runs the forward: under torchrun, DistributedDataParallel averages the gradients
        self.net = self.model
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            # a pack may lack CE tokens, ViT images or latents, leaving those parameters out of its graph
            self.net = DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda"
                                               else None, find_unused_parameters=True)
        t = self.tcfg
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=t.lr, betas=(t.beta1, t.beta2), eps=t.eps,
                                     weight_decay=t.weight_decay, fused=device.type == "cuda")
        self.ema = {k: v.detach().clone().float() for k, v in self.model.state_dict().items()} if t.ema else None
        self.step, self.position = 0, (0, 0)
        self.mask_kind = t.attention
        if self.mask_kind == "auto":
            self.mask_kind = "flex" if device.type == "cuda" else "dense"
        self.flops = FlopCounter(self.model)
        self.peak = t.peak_tflops or (peak_tflops(torch.cuda.get_device_name(device)) if device.type == "cuda"
                                      else None)

    # -- one batch ---------------------------------------------------------------------------------

    def losses(self, batch, generator, net=None, tiles=None):
        """Forward one host-side pack; ``tiles``: its block mask's tiles built on the host (``host_mask``),
        so the GPU never builds masks."""
        if tiles is None and self.mask_kind == "flex" and self.tcfg.host_mask:
            tiles = block_tiles(batch.mask_spec())
        batch = batch.to(self.device)
        mask = build_mask(batch.mask_spec(), self.mask_kind, tiles)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            return compute_losses(net or self.model, self.ae, batch, mask, attend, generator,
                                  weights=(self.tcfg.ce_weight, self.tcfg.mse_weight))

    def _generator(self, *parts: int) -> torch.Generator:
        seed = 0
        for p in (self.tcfg.seed, *parts):
            seed = (seed * 1_000_003 + p) % (2**63)
        return torch.Generator(device=self.device).manual_seed(seed)

    # -- checkpoints -------------------------------------------------------------------------------

    def save(self) -> None:
        if self.rank != 0:
            return
        ckdir = self.out / "checkpoint"
        ckdir.mkdir(exist_ok=True)
        ck.save_tensors(self.out / "model.safetensors", self.model.state_dict(), {"step": str(self.step)})
        if self.ema is not None:
            ck.save_tensors(self.out / "ema.safetensors", self.ema, {"step": str(self.step)})
        flat, groups = ck.optimizer_tensors(self.opt)
        ck.save_tensors(ckdir / "optimizer.safetensors", flat)
        state = {"step": self.step, "position": list(self.position), "param_groups": groups, "world": self.world}
        if getattr(self, "rank_digests", None):
            state["rank_weights_sha256"] = self.rank_digests
        ck.write_json(ckdir / "trainer_state.json", state)
        self._write_skips()

    def load(self) -> None:
        ckdir = self.out / "checkpoint"
        state = json.loads((ckdir / "trainer_state.json").read_text())
        self.model.load_state_dict(ck.load_tensors(self.out / "model.safetensors", self.device))
        ck.restore_optimizer(self.opt, ck.load_tensors(ckdir / "optimizer.safetensors"), state["param_groups"])
        if self.ema is not None and (self.out / "ema.safetensors").is_file():
            self.ema = ck.load_tensors(self.out / "ema.safetensors", self.device)
        self.step, self.position = state["step"], tuple(state["position"])
        metrics = self.out / "metrics.jsonl"
        if self.rank == 0 and metrics.is_file():  # drop lines logged after the checkpoint
            keep = [ln for ln in metrics.read_text().splitlines() if ln and json.loads(ln)["step"] <= self.step]
            metrics.write_text("".join(ln + "\n" for ln in keep))

    def _add_skips(self, skips: list) -> None:
        """Record skips reported by the pack workers (each worker reports every skip; kept once)."""
        known = {(s["shard"], s["key"]) for s in self.stream.skips}
        for s in skips:
            if (s["shard"], s["key"]) not in known:
                known.add((s["shard"], s["key"]))
                self.stream.skips.append(s)

    def _write_skips(self) -> None:
        skips = self.stream.skips + (self.eval_stream.skips if self.eval_stream else [])
        (self.out / "skips.jsonl").write_text("".join(json.dumps(s) + "\n" for s in skips))

    # -- the loop ----------------------------------------------------------------------------------

    def eval_loss(self) -> dict | None:
        if self.eval_stream is None:
            return None
        if not hasattr(self, "_eval_batches"):
            packs = []
            try:
                for plans, pos in self.eval_stream.packs():
                    packs.append(pack(plans, self.tok, self.mcfg, sort_experts=True))
                    if len(packs) >= self.tcfg.eval_batches or pos[0] > 0:
                        break
            except DataError as e:  # e.g. a single small shard whose hash split holds out nothing
                log.warning("no evaluation: %s", e)
                self.eval_stream = None
                return None
            self._eval_batches = packs
        self.model.eval()
        tot = {"loss": 0.0, "ce": 0.0, "mse": 0.0}
        with torch.no_grad():
            for i, b in enumerate(self._eval_batches):
                out = self.losses(b, self._generator(7919, i))  # fixed noise: evals comparable over steps
                for k in tot:
                    tot[k] += out[k].item() / len(self._eval_batches)
        self.model.train()
        return {f"eval_{k}": v for k, v in tot.items()}

    def train(self, resume: bool = False) -> None:
        t = self.tcfg
        if resume:
            self.load()
        workers = t.loader_workers if t.loader_workers >= 0 else (2 if self.device.type == "cuda" else 0)
        items = pack_items(PackSource(self.stream, self.tok, self.mcfg, self.position, self.rank, self.world,
                                      self.mask_kind == "flex" and t.host_mask), workers)
        bar = None
        if self.rank == 0:
            from tqdm import tqdm

            bar = tqdm(total=t.steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True,
                       disable=None)  # no bar when the output is not a terminal (logs, CI)
        if self.step == 0 and self.rank == 0:  # the starting point of the eval curve
            ev = self.eval_loss()
            if ev:
                self._log({"step": 0, **ev})
        t0, tokens, flops = time.time(), 0, 0.0  # since the last logged row
        while self.step < t.steps:
            lr = lr_at(self.step, t)
            for g in self.opt.param_groups:
                g["lr"] = lr
            # losses and the grad norm stay on the device until a row is logged: no host sync per step,
            # so packing and masking the next batch overlaps this step's kernels
            sums = torch.zeros(3, device=self.device)
            for micro in range(t.accum):
                item = next(items)
                self._add_skips(item.skips)
                if item.error:
                    raise DataError(item.error)
                batch, self.position = item.batch, item.position
                tokens += batch.n_real
                flops += self.flops.pack(batch, item.pairs)
                last = micro == t.accum - 1
                # DDP averages gradients over the ranks in the last micro-step's backward only
                sync = self.net.no_sync() if self.world > 1 and not last else contextlib.nullcontext()
                with sync:
                    out = self.losses(batch, self._generator(self.step, micro, self.rank), self.net, item.tiles)
                    (out["loss"] / t.accum).backward()
                sums += torch.stack([out[k].detach().float() for k in LOSS_KEYS]) / t.accum
            gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.clip)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            if self.ema is not None:
                with torch.no_grad():
                    live = self.model.state_dict()
                    torch._foreach_lerp_(list(self.ema.values()), [live[k].float() for k in self.ema], 1 - t.ema)
            self.step += 1
            evaluate = self.rank == 0 and (self.step % t.eval_every == 0 or self.step == t.steps)
            if self.rank == 0 and (evaluate or self.step % t.log_every == 0 or self.step == t.steps):
                losses = dict(zip(LOSS_KEYS, sums.tolist()))  # reading them waits for the step's kernels
                dt = max(1e-9, time.time() - t0)
                # tokens/s and MFU of every rank together since the last row (this rank's packs x world)
                row = {"step": self.step, **losses, "lr": lr, "grad_norm": float(gnorm),
                       "epoch": self.position[0], "tokens_per_s": tokens * self.world / dt}
                if self.peak:
                    row["mfu"] = flops / dt / (self.peak * 1e12)
                ev = self.eval_loss() if evaluate else None
                if ev:
                    row.update(ev)
                self._log(row)
                bar.set_postfix(loss=f"{losses['loss']:.4f}", ce=f"{losses['ce']:.3f}", mse=f"{losses['mse']:.4f}")
            if self.rank == 0:
                bar.update(1)
            if self.step % t.ckpt_every == 0 or self.step == t.steps:
                self.save()
            if self.step % t.log_every == 0 or evaluate:  # the next row's window starts after eval and save
                t0, tokens, flops = time.time(), 0, 0.0
        if self.world > 1:
            self._check_in_sync()
        if self.rank == 0:
            bar.close()
            self.save()
            plot_losses(self.out / "metrics.jsonl", self.out / "loss.png")

    def _log(self, row: dict) -> None:
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def _check_in_sync(self) -> None:
        """Every rank's weight digest (sha256 of the parameters' bytes), kept in trainer_state.json; raises
        when the ranks' weights differ."""
        import torch.distributed as dist

        h = hashlib.sha256()
        for p in self.model.parameters():
            h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        mine = torch.tensor(list(h.digest()), dtype=torch.uint8 if self.device.type == "cpu" else torch.int32,
                            device=self.device)
        seen = [torch.zeros_like(mine) for _ in range(self.world)]
        dist.all_gather(seen, mine)
        self.rank_digests = [bytes(x.cpu().to(torch.uint8).tolist()).hex() for x in seen]
        if len(set(self.rank_digests)) > 1:
            raise RuntimeError("ranks ended with different weights")


def plot_losses(metrics: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(ln) for ln in metrics.read_text().splitlines() if ln.strip()]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for key, style in (("loss", "-"), ("ce", ":"), ("mse", "--")):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            ax.plot(*zip(*pts), style, label=f"train {key}")
    ev = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    if ev:
        ax.plot(*zip(*ev), "o-", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
