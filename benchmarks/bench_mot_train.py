"""Training throughput of the bundled MoT: tokens/s and MFU of the trainer's path, each speed change on its
own, and the baselines a user would run instead.

One packed batch of about ``--tokens`` tokens (interleaved samples: captions, generation targets as
noised + clean latents + ViT tokens), one optimizer step per iteration (forward, backward, AdamW), bf16
autocast; ``--accum N`` runs N packs per optimizer step. The step time is the mean over ``--steps`` steps
run back to back with one synchronisation at the end, as ``braid train`` runs them (the synchronised
per-step median is printed too). Every variant runs on the same batch from the same weights in one process.

Baselines, on the same compiled blocks: per-sample SDPA (``sample``: each sample of the pack attends within
itself under its own mask, as BAGEL's ``forward_train``) and whole-pack SDPA (``dense``: one call over the
pack with a (T, T) mask). ``attention_alone`` times one layer's attention (forward + backward) for the
three. Model FLOPs per pack are ``model.flops.FlopCounter`` (the figure ``braid train`` logs), MFU against
``--peak`` TFLOP/s (989 for H100/H200 dense bf16). Results go to benchmarks/results/ through
benchmarks/record.py; ``--runs`` records `braid train` runs (their logged MFU and loss curves) beside them.

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


def run_path(variant, model, ae, batch, steps, warmup, opt, device, accum=1, profile=False, tiles=None):
    """Time one variant: ``attention-blocks-layout[+change...]``. attention: flex (FlexAttention block mask),
    sample (one SDPA call per sample, BAGEL's ``forward_train``) or dense (one SDPA call over the pack with a
    (T, T) mask); flex builds its block mask on the device every pack unless ``+hostmask`` (tiles built on the
    host, as the data loader does, moved with the pack); the SDPA baselines get their masks built beforehand,
    as BAGEL's data loader builds them."""
    import contextlib

    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from model.attention import attend, block_mask, dense_mask, sample_masks
    from model.objective import compute_losses

    kind = variant.split("+")[0].split("-")[0]
    hostmask = "+hostmask" in variant
    if kind == "flex" and device.type != "cuda":
        kind = "dense"  # FlexAttention has no CPU backward; the dry run takes the dense path
    fixed = {"dense": dense_mask, "sample": sample_masks}.get(kind)
    fixed = fixed(batch.mask_spec()) if fixed else None

    def dense_ctx():  # the dense paths as BAGEL runs them: SDPA's memory-efficient kernel with an explicit mask
        if kind != "flex" and device.type == "cuda":
            return sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION])
        return contextlib.nullcontext()

    def step(i):
        for micro in range(accum):  # a new pack needs a new mask, so the mask is built for every pack
            spec = batch.mask_spec()
            mask = fixed if fixed is not None else block_mask(spec, tiles if hostmask else None)
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


def attention_alone(batches, cfg, device, reps: int = 10) -> dict:
    """Forward + backward of one layer's attention over the pack (q (1, H, T, Dh), k/v (1, Hkv, T, Dh), bf16):
    FlexAttention (block mask, both row layouts), per-sample SDPA (sequence order, each sample its own mask)
    and whole-pack SDPA (one (T, T) mask). Masks are built beforehand; median ms over ``reps``."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from model.attention import attend, block_mask, block_tiles, dense_mask, sample_masks

    T = batches["seq"].input_ids.shape[0]
    g = torch.Generator(device=device).manual_seed(0)
    mk = lambda h: torch.randn(1, h, T, cfg.head_dim, device=device, dtype=torch.bfloat16, generator=g)
    q, k, v = mk(cfg.n_heads), mk(cfg.n_kv_heads), mk(cfg.n_kv_heads)
    dy = torch.randn_like(q)
    masks = {
        "flex_sorted": block_mask(batches["sorted"].mask_spec(), block_tiles(batches["sorted"].mask_spec().to("cpu"))),
        "flex_seq": block_mask(batches["seq"].mask_spec(), block_tiles(batches["seq"].mask_spec().to("cpu"))),
        "sample_sdpa": sample_masks(batches["seq"].mask_spec()),
        "dense_sdpa": dense_mask(batches["seq"].mask_spec()),
    }
    out = {}
    for name, mask in masks.items():
        def once(name=name, mask=mask):
            qq, kk, vv = (t.detach().requires_grad_() for t in (q, k, v))
            ctx = sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]) if not name.startswith("flex") else _null()
            with ctx:
                y = attend(qq, kk, vv, mask)
            y.backward(dy)
        try:
            for _ in range(3):
                once()
            torch.cuda.synchronize()
            ts = []
            for _ in range(reps):
                t = time.time()
                once()
                torch.cuda.synchronize()
                ts.append(time.time() - t)
            out[name] = sorted(ts)[len(ts) // 2] * 1e3
        except Exception as e:  # noqa: BLE001 -- report the others
            out[name] = f"{type(e).__name__}: {str(e)[:160]}"
        print(f"  attention alone {name}: {out[name]}", flush=True)
    return out


def _null():
    import contextlib

    return contextlib.nullcontext()


VARIANTS = ("flex-compiled-sorted,flex-compiled-sorted+hostmask,sample-compiled-seq,dense-compiled-sorted,"
            "flex-compiled-sorted+hostmask+trunk,flex-compiled-sorted+hostmask+swiglu,"
            "flex-compiled-sorted+hostmask+rope,flex-compiled-sorted+hostmask+rmsnorm,"
            "flex-compiled-sorted+hostmask+rmsnorm+swiglu+rope")
TODAY = "flex-compiled-sorted"  # the trainer's path before this benchmark's changes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="base")
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--peak", type=float, default=989.0, help="peak dense bf16 TFLOP/s")
    ap.add_argument("--paths", default=VARIANTS,
                    help="comma-separated attention-blocks-layout[+change...]: flex|sample|dense, eager|compiled "
                         "(decoder blocks and ViT layers through torch.compile), seq (sequence order, index "
                         "routing) | sorted (rows sorted by expert, slice routing); changes: hostmask (block-mask "
                         "tiles built on the host), rmsnorm / swiglu / rope (Liger kernels), trunk (compile the "
                         "whole decoder stack); eager variants must come before compiled ones")
    ap.add_argument("--profile", default="", help="variant to profile after timing")
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode of the blocks (e.g. max-autotune-no-cudagraphs)")
    ap.add_argument("--accum", type=int, default=1, help="packs per optimizer step (gradient accumulation)")
    ap.add_argument("--flex-options", default="", help="JSON kernel_options for FlexAttention")
    ap.add_argument("--model-set", default="", help="comma-separated MoTConfig overrides, e.g. d_model=1536,n_layers=16")
    ap.add_argument("--no-attention-alone", action="store_true", help="skip the attention-alone comparison")
    ap.add_argument("--tiny", action="store_true", help="CPU dry run: tiny preset, 512 tokens, 2 steps")
    ap.add_argument("--probe", action="store_true", help="only time compiling FlexAttention on a small shape")
    ap.add_argument("--write-shards", default="", metavar="DIR",
                    help="only write the benchmark's synthetic samples (base-preset image size) as shards for a "
                         "`braid train` run, and exit")
    ap.add_argument("--samples", type=int, default=256, help="samples for --write-shards")
    ap.add_argument("--runs", default="",
                    help="record `braid train` runs instead: label=metrics.jsonl,... (the first is the fast path, "
                         "'today' the path before); writes the loss-curve plot and bench_mot_train_loop's result")
    ap.add_argument("--bench-result", default=str(Path(__file__).parent / "results" / "bench_mot_train-h200.json"),
                    help="with --runs: the benchmark result whose best MFU the runs are compared with")
    ap.add_argument("--machine", default="", help="with --runs: the GPU the runs ran on")
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
    if args.runs:
        return record_runs(dict(kv.split("=", 1) for kv in args.runs.split(",")), Path(args.bench_result),
                           args.machine)
    if args.write_shards:
        from schemas import ShardWriter

        with ShardWriter(args.write_shards, max_count=max(1, args.samples // 2)) as w:
            for i, s in enumerate(synthetic_samples(args.samples, (256, 192))):
                w.write(s.replace(key=f"b-{i:05d}"))
        return 0

    from model import attention, kernels
    from model.attention import block_mask, block_tiles, dense_mask
    from model.autoencoder import AutoencoderConfig, build_autoencoder
    from model.data import DataConfig, TextTokenizer, pack, plan_sample
    from model.flops import FlopCounter
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
    host = {"seq": pack(plans, tok, mcfg), "sorted": pack(plans, tok, mcfg, sort_experts=True)}
    host_tiles, t_host = {}, {}
    for layout, b in host.items():  # what the data loader pays per pack for the block mask, on the host
        ts = []
        for _ in range(5):
            t = time.time()
            host_tiles[layout] = block_tiles(b.mask_spec())
            ts.append(time.time() - t)
        t_host[layout] = sorted(ts)[2]
    batches = {k: b.to(device) for k, b in host.items()}
    batch = batches["seq"]
    torch.manual_seed(0)
    model = MoT(mcfg).to(device)
    ae = build_autoencoder(AutoencoderConfig(downsample=mcfg.latent_downsample))
    init = {k: v.clone() for k, v in model.state_dict().items()}  # each variant starts from the same weights
    flops = FlopCounter(model).pack(host["seq"])
    dm = dense_mask(batch.mask_spec())
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
        "mask_host_tiles_seq_s": t_host["seq"],
        "mask_host_tiles_sorted_s": t_host["sorted"],
    }
    print(json.dumps(info, indent=1), flush=True)
    out_dir = os.environ.get("OUT")
    if device.type == "cuda":  # the block mask built on the device per pack (the path before host tiles)
        ts = []
        for _ in range(4):
            t = time.time()
            block_mask(batches["sorted"].mask_spec())
            torch.cuda.synchronize()
            ts.append(time.time() - t)
        info["mask_device_sorted_s"] = min(ts[1:])
        if not args.no_attention_alone:
            info["attention_alone_ms"] = attention_alone(batches, mcfg, device)
    results = {}
    state = None
    t_start = time.time()
    for variant in args.paths.split(","):
        base, *changes = variant.split("+")
        _, blocks, layout = base.split("-")
        want = (blocks, frozenset(c for c in changes if c in kernels.KERNELS), "trunk" in changes)
        if want != state:
            if state is not None and device.type == "cuda":
                torch._dynamo.reset()
            kernels.use(want[1])
            model.__dict__.pop("forward_hidden", None)
            if blocks == "compiled":
                model.compile_blocks(**({"mode": args.compile_mode} if args.compile_mode else {}))
            if want[2]:
                model.compile_trunk()
            state = want
        model.load_state_dict(init)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-15, fused=device.type == "cuda")
        print(f"[{time.time() - t_start:.0f} s] {variant}", flush=True)
        try:
            r = run_path(variant, model, ae, batches[layout], args.steps, args.warmup, opt, device, args.accum,
                         profile=variant == args.profile, tiles=host_tiles[layout])
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
        if out_dir:  # partial results survive a time limit
            Path(out_dir, "bench_mot_train_raw.json").write_text(json.dumps(info, indent=1))
            if not args.tiny:
                record(info, results, args, out_dir)
    kernels.use(())
    print(f"\n{'variant':52} {'step s':>7} {'tokens/s':>9} {'TFLOP/s':>8} {'MFU':>6} {'GiB':>5}  first CE / MSE"
          f"   ({name}, torch {torch.__version__}, {args.accum} x {batch.n_real} tokens, "
          f"{args.accum * flops / 1e12:.2f} TFLOP/step)")
    for variant, r in results.items():
        if "step_s" in r:
            print(f"{variant:52} {r['step_s']:7.3f} {r['tokens_per_s']:9.0f} {r['tflops']:8.1f} {r['mfu']:6.1%} "
                  f"{r.get('max_mem_gib', 0):5.1f}  {r['first_ce']:.4f} / {r['first_mse']:.5f}")
        else:
            print(f"{variant:52} {r['error']}")
    if not args.tiny:  # the dry run checks the code; its figures are not results
        record(info, results, args, out_dir)
    return 0


def record(info: dict, results: dict, args, out_dir) -> None:
    """Result rows: each change against today's path, the best path against both SDPA baselines (whole step
    and attention alone), and the MFU against the 40% target."""
    from benchmarks.record import Row, write_result

    ok = {v: r for v, r in results.items() if "step_s" in r}
    rows = []
    today = ok.get(TODAY)
    flex = {v: r for v, r in ok.items() if v.startswith("flex")}
    best = max(flex, key=lambda v: flex[v]["tokens_per_s"]) if flex else None
    for v, r in ok.items():
        if today and v != TODAY and v.startswith("flex"):
            rows.append(Row(name=f"step: {v}", metric="tokens/s", ours=r["tokens_per_s"], baseline=today["tokens_per_s"],
                            baseline_name=f"{TODAY} (the trainer's path before)", note=f"MFU {r['mfu']:.1%}"))
    for base in ("sample-compiled-seq", "dense-compiled-sorted"):
        if best and base in ok:
            label = "per-sample SDPA (BAGEL forward_train)" if base.startswith("sample") else "whole-pack SDPA, (T, T) mask"
            rows.append(Row(name=f"whole step: {best} vs {label}", metric="tokens/s", ours=flex[best]["tokens_per_s"],
                            baseline=ok[base]["tokens_per_s"], baseline_name=f"{base}, same compiled blocks"))
    att = info.get("attention_alone_ms", {})
    if isinstance(att.get("flex_sorted"), float):
        for base, label, target in (("sample_sdpa", "per-sample SDPA (BAGEL forward_train)", 1.5),
                                    ("dense_sdpa", "whole-pack SDPA, (T, T) mask", None)):
            if isinstance(att.get(base), float):
                rows.append(Row(name="attention alone (one layer, forward + backward): flex", metric="ms",
                                ours=att["flex_sorted"], baseline=att[base], baseline_name=label, higher_is_better=False,
                                target_ratio=target))
    if best:
        rows.append(Row(name=f"MFU of {best} (target 40%)", metric="MFU", ours=flex[best]["mfu"],
                        baseline=today["mfu"] if today else None, baseline_name=TODAY, met=flex[best]["mfu"] >= 0.40))
    if not rows:
        return
    kw = {"out_dir": Path(out_dir)} if out_dir else {}
    write_result("bench_mot_train", rows, libraries=("torch", "triton", "liger-kernel"),
                 extra={**info, "results": results, "best": best}, **kw)


def record_runs(runs: dict[str, str], bench_result: Path, machine: str, skip: int = 80) -> int:
    """`braid train` runs on the GPU: their logged MFU (median of the rows after ``skip`` steps, past the
    recompiles of new pack shapes) against the benchmark's, and the loss curves of the fast path against
    today's path (same steps, same packs, same noise)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.record import RESULTS, Row, write_result

    rows = {k: [json.loads(ln) for ln in Path(p).read_text().splitlines() if ln.strip()] for k, p in runs.items()}
    bench = json.loads(bench_result.read_text())
    best = bench["extra"]["best"]
    bench_mfu = bench["extra"]["results"][best]["mfu"]
    out, extra = [], {"runs": {}, "bench_result": bench_result.name, "bench_variant": best, "bench_mfu": bench_mfu}
    for label, rs in rows.items():
        mfus = sorted(r["mfu"] for r in rs if "mfu" in r and r["step"] > skip)
        tps = sorted(r["tokens_per_s"] for r in rs if "tokens_per_s" in r and r["step"] > skip)
        med = mfus[len(mfus) // 2] if mfus else None
        extra["runs"][label] = {f"median_mfu_after_step_{skip}": med, "median_tokens_per_s": tps[len(tps) // 2]
                                if tps else None, "last_step": max(r["step"] for r in rs), "file": runs[label]}
        if med is not None:
            out.append(Row(name=f"braid train MFU ({label}), median of logged rows after step {skip}", metric="MFU",
                           ours=med, baseline=bench_mfu, baseline_name=f"bench_mot_train {best} (same pack size)",
                           target_ratio=0.95, note="target: within 5% of the benchmark"))
    b = {r["step"]: r["loss"] for r in rows.get("today", []) if "loss" in r}
    extra["loss_curves"] = {}
    for label, rs in rows.items():
        if label == "today" or not b:
            continue
        a = {r["step"]: r["loss"] for r in rs if "loss" in r}
        common = sorted(set(a) & set(b))
        d = [abs(a[k] - b[k]) for k in common]
        extra["loss_curves"][label] = {"steps": common, "first": (a[common[0]], b[common[0]]),
                                       "last": (a[common[-1]], b[common[-1]]), "max_abs_diff": max(d)}
        out.append(Row(name=f"loss curve {label} vs today: first logged step ({common[0]})", metric="loss difference",
                       ours=d[0], higher_is_better=False, met=d[0] <= 1e-3,
                       note=f"target: equal to 1e-3; final (step {common[-1]}) differs by {d[-1]:.4f}, the largest "
                            f"over steps {common[0]}-{common[-1]} by {max(d):.4f}"))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for (label, rs), style in zip(rows.items(), ("-", "--", ":", "-.")):
        pts = [(r["step"], r["loss"]) for r in rs if "loss" in r]
        ax.plot(*zip(*pts), style, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (0.25 CE + MSE)")
    ax.set_title("braid train, base preset, one 16k-token pack per step")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    png = RESULTS / "bench_mot_train_loss.png"
    fig.savefig(png)
    extra["plot"] = png.name
    write_result("bench_mot_train_loop", out, extra=extra, machine=machine or bench["machine"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
