"""Training throughput of the bundled MoT: tokens/s and MFU, FlexAttention against the dense-mask path.

One packed batch of about ``--tokens`` tokens (interleaved samples: captions, generation targets as
noised + clean latents + ViT tokens), one optimizer step per iteration (forward, backward, AdamW), bf16
autocast; ``--accum N`` runs N packs per optimizer step. The step time is the mean over ``--steps`` steps
run back to back with one synchronisation at the end, as ``braid train`` runs them (the synchronised
per-step median is printed too). Both attention paths run on the same batch in the same process; the
ratio is printed.

Model FLOPs per pack (MFU against ``--peak`` TFLOP/s, 989 for H100/H200 dense bf16):
  6 * (LLM layer parameters of the token's expert) per token + 6 * D * V per CE token
  + 6 * (ViT + connector parameters) per ViT token + 6 * (latent in/out, time embedder) per latent token
  + attention 12 * H * Dh * (allowed query-key pairs) per layer (4 forward, 8 backward)
  + ViT attention 12 * d_vit * P^2 per image per layer.

    python benchmarks/bench_mot_train.py                 # GPU: base preset, 16k tokens, every variant
    python benchmarks/bench_mot_train.py --tiny          # CPU dry run of the same code (flex runs dense)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = ["the", "a", "cat", "dog", "ball", "moves", "left", "right", "jumps", "over", "table", "red", "car", "turns", "waves", "hit", "rocks", "slowly", "then", "person", "pours", "coffee", "into", "blue", "mug", "camera", "pans", "across", "landscape"]


def synthetic_samples(n: int, side: tuple[int, int], seed: int = 0):
    import numpy as np
    from PIL import Image

    from schemas import ImageSegment, Sample, Source, TextSegment

    rng = np.random.default_rng(seed)

    def jpeg(i):
        base = rng.integers(0, 255, (side[1] // 8, side[0] // 8, 3), dtype=np.uint8)
        im = Image.fromarray(base).resize(side, Image.BICUBIC)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=85)
        return buf.getvalue()

    samples = []
    for s in range(n):
        segs = []
        for i in range(4):
            segs.append(TextSegment(" ".join(rng.choice(WORDS, 24)), role="change", loss=True))
            segs.append(
                ImageSegment(jpeg(i), "jpg", side[0], side[1], understanding=True, generation=True, role="frame")
            )
        samples.append(Sample(key=f"b-{s:04d}", kind="video", segments=tuple(segs), source=Source("file:///b.mp4")))
    return samples


def model_flops(model, batch, dense_mask) -> float:
    cfg = model.cfg
    n = batch.n_real
    kind = batch.kind[:n]
    n_gen = int((kind == 2).sum())
    n_vit = int((kind == 1).sum())
    n_und = n - n_gen
    layer_und = (
        sum(p.numel() for name, p in model.language_model.model.layers.named_parameters() if "_moe_gen" not in name)
        / cfg.n_layers
    )
    f = 6 * cfg.n_layers * layer_und * (n_und + n_gen)  # the generation twins have identical shapes
    f += 6 * cfg.d_model * cfg.vocab_size * int(batch.ce_idx.numel())
    vit_params = sum(p.numel() for p in model.vit_model.parameters()) + sum(
        p.numel() for p in model.connector.parameters()
    )
    f += 6 * vit_params * n_vit
    lat_params = sum(p.numel() for m in (model.vae2llm, model.llm2vae, model.time_embedder) for p in m.parameters())
    f += 6 * lat_params * n_gen
    pairs = float(dense_mask[:n, :n].sum())
    f += 12 * cfg.n_heads * cfg.head_dim * pairs * cfg.n_layers
    n_img = batch.vit_pixels.shape[0]
    f += 12 * cfg.vit_d * cfg.vit_grid**4 * cfg.vit_layers * n_img
    return f


def run_path(variant, model, ae, batch, steps, warmup, opt, device, accum=1, profile=False):
    """Time one variant: ``attention-blocks-layout`` (dense|flex, eager|compiled, seq|sorted)."""
    import contextlib

    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from model.attention import attend, block_mask, dense_mask
    from model.objective import compute_losses

    kind = variant.split("-")[0]
    if kind == "flex" and device.type != "cuda":
        kind = "dense"  # FlexAttention has no CPU backward; the dry run takes the dense path

    def dense_ctx():  # the dense path as BAGEL runs it: SDPA's memory-efficient kernel with an explicit mask
        if kind == "dense" and device.type == "cuda":
            return sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION])
        return contextlib.nullcontext()

    def step(i):
        for micro in range(accum):  # a new pack needs a new mask, so the mask is built for every pack
            spec = batch.mask_spec()
            mask = block_mask(spec) if kind == "flex" else dense_mask(spec)
            g = torch.Generator(device=device).manual_seed(i * accum + micro)
            with (
                torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"),
                dense_ctx(),
            ):
                out = compute_losses(model, ae, batch, mask, attend, g)
            (out["loss"] / accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t0 = time.time()
    first = None
    for i in range(warmup):
        out = step(i)
        first = first or {"first_ce": out["ce"].item(), "first_mse": out["mse"].item()}
        sync()
        print(f"  {variant} warm-up step {i}: {time.time() - t0:.1f} s", flush=True)
    t_warm = time.time() - t0
    times = []
    for i in range(steps):
        t = time.time()
        out = step(1000 + i)
        sync()
        times.append(time.time() - t)
    print(f"  {variant} steps, each synchronised: {[round(x, 3) for x in times]}", flush=True)
    # as the trainer runs: no host sync between steps, so the next step's set-up overlaps this one's kernels
    t = time.time()
    for i in range(steps):
        out = step(3000 + i)
    sync()
    window = (time.time() - t) / steps
    print(f"  {variant} {steps} steps back to back: {window:.3f} s/step", flush=True)
    if profile and device.type == "cuda":
        print_profile(step, sync)
    times.sort()
    return {
        "step_s": window,
        "synced_median_s": times[len(times) // 2],
        "min_s": times[0],
        "warmup_s": t_warm,
        **first,
        "loss": out["loss"].item(),
        "ce": out["ce"].item(),
        "mse": out["mse"].item(),
    }


def print_profile(step, sync) -> None:
    """Kernel time of two steps by kind (matmul, attention, fused Triton, other) and the top kernels."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for i in range(2):
            step(2000 + i)
        sync()
    groups: dict[str, float] = {}
    rows = []
    for e in prof.key_averages():
        us = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
        if not us or e.device_type.name != "CUDA":
            continue
        name = e.key.lower()
        if any(w in name for w in ("gemm", "nvjet", "cutlass", "cublas", "matmul", "xmma", "sm90_")):
            g = "matmul"
        elif "flex" in name or "attention" in name or "fmha" in name or "flash" in name:
            g = "attention"
        elif name.startswith("triton"):
            g = "triton fused"
        else:
            g = "other"
        groups[g] = groups.get(g, 0.0) + us / 2e3
        rows.append((us / 2e3, e.count // 2, e.key[:90]))
    print("profile, device ms per step by kind:", {k: round(v, 1) for k, v in sorted(groups.items())}, flush=True)
    print(f"  total {sum(groups.values()):.1f} ms")
    for ms, n, key in sorted(rows, reverse=True)[:25]:
        print(f"  {ms:7.2f} ms {n:5d}x  {key}")


def probe_flex() -> int:
    """Compile FlexAttention (forward and backward) on a small document mask and time it."""
    import torch

    from model.attention import MaskSpec, attend, block_mask

    T = 1024
    doc = torch.arange(T, device="cuda") // 300
    spec = MaskSpec(doc, doc, torch.zeros_like(doc))
    t = time.time()
    bm = block_mask(spec)
    torch.cuda.synchronize()
    print(f"probe: block mask {time.time() - t:.1f} s", flush=True)
    q = torch.randn(1, 8, T, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(1, 2, T, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    t = time.time()
    out = attend(q, k, k, bm)
    torch.cuda.synchronize()
    print(f"probe: flex forward compiled in {time.time() - t:.1f} s", flush=True)
    t = time.time()
    out.float().sum().backward()
    torch.cuda.synchronize()
    print(f"probe: flex backward compiled in {time.time() - t:.1f} s", flush=True)
    return 0


VARIANTS = "dense-eager-seq,flex-eager-seq,flex-compiled-sorted,dense-compiled-sorted,flex-compiled-seq"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="base")
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--peak", type=float, default=989.0, help="peak dense bf16 TFLOP/s")
    ap.add_argument("--paths", default=VARIANTS,
                    help="comma-separated attention-blocks-layout: dense|flex, eager|compiled (decoder blocks and "
                         "ViT layers through torch.compile), seq (sequence order, index routing) | sorted (rows "
                         "sorted by expert, slice routing); eager variants must come before compiled ones")
    ap.add_argument("--profile", default="flex-compiled-sorted", help="variant to profile after timing")
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode of the blocks (e.g. max-autotune-no-cudagraphs)")
    ap.add_argument("--accum", type=int, default=1, help="packs per optimizer step (gradient accumulation)")
    ap.add_argument("--flex-options", default="", help="JSON kernel_options for FlexAttention")
    ap.add_argument("--model-set", default="", help="comma-separated MoTConfig overrides, e.g. d_model=1536,n_layers=16")
    ap.add_argument("--tiny", action="store_true", help="CPU dry run: tiny preset, 512 tokens, 2 steps")
    ap.add_argument("--probe", action="store_true", help="only time compiling FlexAttention on a small shape")
    ap.add_argument("--dump-after", type=float, default=0, help="print every thread's stack after this many s")
    args = ap.parse_args(argv)

    import faulthandler
    import traceback

    # Inductor's pool of compile workers hung on the lent GPU machine; compiling in-process did not
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
    import torch

    if args.dump_after:
        faulthandler.dump_traceback_later(args.dump_after, exit=False)
    if args.probe:
        return probe_flex()

    from model import attention
    from model.attention import block_mask, dense_mask
    from model.autoencoder import AutoencoderConfig, build_autoencoder
    from model.data import DataConfig, TextTokenizer, pack, plan_sample
    from model.mot import MoT, MoTConfig

    if args.flex_options:
        attention.FLEX_KERNEL_OPTIONS.update(json.loads(args.flex_options))
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    if args.tiny:
        args.preset, args.tokens, args.steps, args.warmup = "tiny", 512, 2, 1
    mcfg = MoTConfig.preset(args.preset)
    if args.model_set:
        mcfg = mcfg.replace(**{k: int(v) for k, v in (kv.split("=") for kv in args.model_set.split(","))})
    side = (256, 192) if args.preset != "tiny" else (32, 24)
    samples = synthetic_samples(64, side)
    tok = TextTokenizer.fit([t.text for s in samples for t in s.texts], 2000)
    dcfg = DataConfig(max_tokens=args.tokens)
    plans, used = [], 0
    for s in samples:
        p = plan_sample(s, tok, mcfg, dcfg, None)
        if used + p.n_tokens > args.tokens:
            break
        plans.append(p)
        used += p.n_tokens
    batches = {"seq": pack(plans, tok, mcfg).to(device), "sorted": pack(plans, tok, mcfg, sort_experts=True).to(device)}
    batch = batches["seq"]
    torch.manual_seed(0)
    model = MoT(mcfg).to(device)
    ae = build_autoencoder(AutoencoderConfig(downsample=mcfg.latent_downsample))
    init = {k: v.clone() for k, v in model.state_dict().items()}  # each variant starts from the same weights
    dm = dense_mask(batch.mask_spec())
    flops = model_flops(model, batch, dm)
    density = float(dm[: batch.n_real, : batch.n_real].sum()) / batch.n_real**2
    del dm
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    info = {
        "device": name,
        "torch": torch.__version__,
        "preset": args.preset,
        "model_set": args.model_set,
        "compile_mode": args.compile_mode,
        "accum": args.accum,
        "flex_options": args.flex_options,
        "params_und_expert": model.num_params("und"),
        "params_total": sum(p.numel() for p in model.parameters()),
        "tokens": batch.n_real,
        "padded": int(batch.input_ids.shape[0]),
        "samples": len(plans),
        "ce_tokens": int(batch.ce_idx.numel()),
        "latent_tokens": int(batch.gen_idx.numel()),
        "vit_tokens": int(batch.vit_idx.numel()),
        "mask_density": density,
        "model_tflop_per_pack": flops / 1e12,
    }
    print(json.dumps(info, indent=1), flush=True)
    if device.type == "cuda":  # mask builds: block masks (ours, create_block_mask's), the dense mask

        def create(sp):
            from torch.nn.attention.flex_attention import create_block_mask

            from model.attention import BLOCK_SIZE, _allowed

            n = sp.doc.shape[0]
            return create_block_mask(lambda b, h, q, k: _allowed(sp, q, k), None, None, n, n, device=device,
                                     BLOCK_SIZE=BLOCK_SIZE)

        for label, layout, build in (("block_seq", "seq", block_mask), ("block_sorted", "sorted", block_mask),
                                     ("create_block_mask_seq", "seq", create), ("dense_seq", "seq", dense_mask)):
            ts = []
            for _ in range(4):
                t = time.time()
                bm = build(batches[layout].mask_spec())
                torch.cuda.synchronize()
                ts.append(time.time() - t)
            info[f"mask_{label}_s"] = min(ts[1:])
            if label.startswith("block"):
                info[f"mask_{label}_tiles"] = int(bm.kv_num_blocks.sum()) + int(bm.full_kv_num_blocks.sum())
        print({k: round(v, 4) for k, v in info.items() if k.startswith("mask_")}, flush=True)
    results = {}
    compiled = False
    t_start = time.time()
    for variant in args.paths.split(","):
        _, blocks, layout = variant.split("-")
        if blocks == "compiled" and not compiled:
            model.compile_blocks(**({"mode": args.compile_mode} if args.compile_mode else {}))
            compiled = True
        model.load_state_dict(init)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-15, fused=device.type == "cuda")
        print(f"[{time.time() - t_start:.0f} s] {variant}", flush=True)
        try:
            r = run_path(variant, model, ae, batches[layout], args.steps, args.warmup, opt, device, args.accum,
                         profile=variant == args.profile)
        except Exception as e:  # noqa: BLE001 -- one failing variant (memory, compile) leaves the others
            traceback.print_exc()
            r = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if "step_s" in r:
            r["tokens_per_s"] = args.accum * batch.n_real / r["step_s"]
            r["tflops"] = args.accum * flops / r["step_s"] / 1e12
            r["mfu"] = r["tflops"] / args.peak
            if device.type == "cuda":
                r["max_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
                torch.cuda.reset_peak_memory_stats()
        results[variant] = r
        del opt
        print(variant, json.dumps(r), flush=True)
    info["results"] = results
    print(f"\n{'variant':22} {'step s':>7} {'tokens/s':>9} {'TFLOP/s':>8} {'MFU':>6} {'GiB':>5}  first CE / MSE"
          f"   ({name}, torch {torch.__version__}, {args.accum} x {batch.n_real} tokens, "
          f"{args.accum * flops / 1e12:.2f} TFLOP/step)")
    for variant, r in results.items():
        if "step_s" in r:
            print(f"{variant:22} {r['step_s']:7.3f} {r['tokens_per_s']:9.0f} {r['tflops']:8.1f} {r['mfu']:6.1%} "
                  f"{r.get('max_mem_gib', 0):5.1f}  {r['first_ce']:.4f} / {r['first_mse']:.5f}")
        else:
            print(f"{variant:22} {r['error']}")
    ok = {v: r["step_s"] for v, r in results.items() if "step_s" in r}
    for blocks, layout in (("eager", "seq"), ("compiled", "sorted"), ("compiled", "seq")):
        d, f = f"dense-{blocks}-{layout}", f"flex-{blocks}-{layout}"
        if d in ok and f in ok:
            info[f"flex_over_dense_{blocks}_{layout}"] = ok[d] / ok[f]
            print(f"flex / dense speed-up ({blocks} blocks, {layout}): {ok[d] / ok[f]:.2f}x")
    out = os.environ.get("OUT")
    if out:
        Path(out, "bench_mot_train.json").write_text(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
