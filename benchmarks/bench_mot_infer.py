"""Inference speed of the bundled MoT (random weights; speed does not depend on them), in one run:

- text decoding, tokens/s, over the static KV cache with each step a CUDA graph (on the GPU), against full
  recomputation of the sequence at every token (the baseline) and against the same cache without graphs,
  after a context of one image (clean latent + ViT) and a prompt (target on an H200, base preset: 200 tokens/s);
- seconds per generated image at ``--steps`` Euler steps, without guidance and with BAGEL's interleaved
  defaults (text scale 3, image scale 1.5, interval (0.4, 1]: three branches per guided step).

    python benchmarks/bench_mot_infer.py                      # base preset on the GPU (bf16)
    python benchmarks/bench_mot_infer.py --preset tiny --device cpu --steps 4 --new-tokens 8   # dry run
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def agreement(ours: list, eager: list, full: list) -> str:
    """How the decoded tokens compare: graphs against eager steps (the same arithmetic: equal), and against full
    recomputation (other kernels: in bf16 near-tied logits of random weights may part ways after a while)."""
    k = next((i for i, (a, b) in enumerate(zip(ours, full)) if a != b), min(len(ours), len(full)))
    return (f"tokens equal to the eager steps': {ours == eager}; first {k} of {min(len(ours), len(full))} equal "
            f"to full recomputation's")


def main(argv=None) -> int:
    import torch
    from PIL import Image

    from model.autoencoder import AutoencoderConfig, build_autoencoder
    from model.data import DataConfig, TextTokenizer
    from model.infer import Inferencer, TextGenConfig
    from model.mot import MoT, MoTConfig
    from model.run_folder import Bundle
    from model.sampler import ImageGenConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="base")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats per figure (median reported)")
    args = ap.parse_args(argv)

    dev = torch.device(args.device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    torch.manual_seed(0)
    tok = TextTokenizer.fit(["a small benchmark text to fit the special tokens"], 300)
    mcfg = MoTConfig.preset(args.preset)
    ae = build_autoencoder(AutoencoderConfig(downsample=mcfg.latent_downsample))
    model = MoT(mcfg)
    torch.nn.init.normal_(model.llm2vae.weight, std=0.02)  # a non-zero velocity head, as after training
    with torch.no_grad():
        model.language_model.lm_head.weight[tok.eos].zero_()  # random weights must not stop early at <|im_end|>
    model = model.to(dev, dtype).eval().requires_grad_(False)
    bundle = Bundle(model, tok, ae, mcfg, DataConfig(), dev, dtype)
    inf = Inferencer(bundle)

    side = mcfg.gen_max_side
    buf = io.BytesIO()
    Image.radial_gradient("L").convert("RGB").resize((side, side)).save(buf, "PNG")
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(10, tok.vocab_size, (args.prompt_tokens,), generator=g).tolist()

    def context(cached: bool):
        ctx = inf.add_image(inf.new_context(), buf.getvalue(), side, side, cached=cached)
        return inf.add_text(ctx, prompt, cached=cached)

    def timed(fn):
        times, out = [], None
        for _ in range(args.repeats):
            _sync(dev)
            t0 = time.perf_counter()
            out = fn()
            _sync(dev)
            times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2], out

    tcfg = TextGenConfig(max_new_tokens=args.new_tokens)
    rows = []
    with torch.no_grad():
        inf.generate_text(context(True), TextGenConfig(max_new_tokens=4))  # warm-up (kernels, graph capture)
        inf.generate_text(context(False), TextGenConfig(max_new_tokens=4), cached=False)
        ctx_c, ctx_f = context(True), context(False)
        t_c, out_c = timed(lambda: inf.generate_text(ctx_c, tcfg))
        t_f, out_f = timed(lambda: inf.generate_text(ctx_f, tcfg, cached=False))
        eager = Inferencer(bundle)
        eager.graphs = False
        eager.generate_text(ctx_c, TextGenConfig(max_new_tokens=4))
        t_e, out_e = timed(lambda: eager.generate_text(ctx_c, tcfg))
        n_c, n_f, n_e = len(out_c[2]), len(out_f[2]), len(out_e[2])
        same = agreement(out_c[2], out_e[2], out_f[2])
        rows.append(("text, full recompute (baseline)", f"{n_f / t_f:.1f} tokens/s", f"{n_f} tokens"))
        rows.append(("text, static KV cache, no graphs", f"{n_e / t_e:.1f} tokens/s", f"{n_e} tokens"))
        ratio = (n_c / t_c) / (n_f / t_f)
        graphs = dev.type == "cuda"
        note = f"{n_c} tokens; speed-up {ratio:.1f}x; {same}"
        rows.append((f"text, static KV cache{', CUDA graphs' if graphs else ''}", f"{n_c / t_c:.1f} tokens/s", note))

        full = ctx_c
        cfg_text = inf.add_image(inf.new_context(), buf.getvalue(), side, side)
        cfg_img = inf.add_text(inf.new_context(), prompt)
        inf.generate_image(full, side, side, ImageGenConfig(steps=2), seed=0)  # warm-up
        plain = ImageGenConfig(steps=args.steps, cfg_text_scale=1.0, cfg_img_scale=1.0)
        guided = ImageGenConfig(steps=args.steps, cfg_text_scale=3.0, cfg_img_scale=1.5)
        t_p, _ = timed(lambda: inf.generate_image(full, side, side, plain, seed=0))
        t_g, _ = timed(
            lambda: inf.generate_image(full, side, side, guided, seed=0, cfg_text_ctx=cfg_text, cfg_img_ctx=cfg_img)
        )
        n_lat = (side // (mcfg.latent_downsample * mcfg.latent_patch)) ** 2
        rows.append(
            (
                f"image {side}x{side}, {args.steps} steps, no guidance",
                f"{t_p:.3f} s/image",
                f"{n_lat} latent tokens, context {full.length} tokens",
            )
        )
        rows.append(
            (
                f"image {side}x{side}, {args.steps} steps, CFG text 3 + image 1.5",
                f"{t_g:.3f} s/image",
                "three branches on guided steps",
            )
        )

    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    n_und = model.num_params("und")
    print(
        f"\nbench_mot_infer: preset {args.preset} ({n_und / 1e6:.0f}M parameters per token path), {name}, "
        f"{str(dtype).replace('torch.', '')}, torch {torch.__version__}, batch 1, context "
        f"{ctx_c.length} tokens (image + {args.prompt_tokens}-token prompt)"
    )
    w = max(len(r[0]) for r in rows)
    for r in rows:
        print(f"  {r[0]:<{w}}  {r[1]:>16}  {r[2]}")
    from benchmarks.record import Row, write_result

    write_result(f"bench_mot_infer-{args.preset}", [
        Row(name=f"text decoding at batch 1, static KV cache{' + CUDA graphs' if graphs else ''}, {args.preset} preset",
            metric="tokens/s", ours=n_c / t_c, baseline=n_f / t_f,
            baseline_name="full recompute of the sequence at every token",
            met=(n_c / t_c >= 200) if graphs and args.preset == "base" else None, target=">= 200 tokens/s",
            note=f"target (base preset, H200): 200 tokens/s; same cache without graphs: {n_e / t_e:.1f} tokens/s; "
                 f"{same}"),
        Row(name=f"image {side}x{side}, {args.steps} steps, CFG text 3 + image 1.5", metric="s/image", ours=t_g,
            note=f"without guidance: {t_p:.3f} s/image"),
    ], extra={"preset": args.preset, "dtype": str(dtype), "context_tokens": ctx_c.length,
              "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens})
    return 0


if __name__ == "__main__":
    sys.exit(main())
