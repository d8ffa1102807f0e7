"""The hf captioner batched versus one request at a time, on a random-weight VLM of real size.

    python benchmarks/bench_captioner_batching.py                  # Qwen2.5-VL-3B shape, bf16, CUDA
    python benchmarks/bench_captioner_batching.py --size tiny --device cpu --dtype float32   # smoke run

The model is a Qwen2.5-VL-3B built offline from its published configuration with random weights (no
download), behind a tokenizer trained here; captions are gibberish, the work per image is real: the same
vision tower, the same language model, the same image tokens (448x448 -> 256 tokens) and exactly
``--max-tokens`` generated tokens per image (random weights never emit end-of-sequence). Both modes go
through ``HFCaptioner.caption`` on the same images; the baseline sends one request per call, the batched
mode sends them all in one call, which the backend runs ``--batch-size`` at a time. Prints images/s for
both and the ratio. Target: batched at least 5x faster.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Qwen2.5-VL-3B-Instruct's config.json (text and vision towers), as published
QWEN25_VL_3B_TEXT = {
    "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
    "num_attention_heads": 16, "num_key_value_heads": 2, "max_position_embeddings": 128000, "rms_norm_eps": 1e-6,
    "hidden_act": "silu", "tie_word_embeddings": True,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
}  # fmt: skip
QWEN25_VL_3B_VISION = {
    "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "in_channels": 3,
    "out_hidden_size": 2048, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
    "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "hidden_act": "silu",
}  # fmt: skip
TINY_TEXT = {**QWEN25_VL_3B_TEXT, "vocab_size": 2048, "hidden_size": 128, "intermediate_size": 256,
             "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
             "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [8, 12, 12]}}  # fmt: skip
TINY_VISION = {**QWEN25_VL_3B_VISION, "depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2,
               "out_hidden_size": 128, "fullatt_block_indexes": [1]}  # fmt: skip


def build_model(size: str, device: str, dtype: str):
    """Processor and random-weight Qwen2.5-VL built on ``device`` (no checkpoint, no download)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from captioners.tiny import build_processor, build_tokenizer, token_ids

    tokenizer = build_tokenizer()
    side = 448  # 32x32 patches of 14 px, merged 2x2: 256 image tokens per image
    processor = build_processor(tokenizer, family="qwen2_5_vl", min_pixels=side * side, max_pixels=side * side)
    ids = token_ids(tokenizer)
    text = dict(QWEN25_VL_3B_TEXT if size == "3b" else TINY_TEXT)
    text.update(bos_token_id=ids["bos_token_id"], eos_token_id=ids["eos_token_id"], pad_token_id=ids["pad_token_id"])
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=QWEN25_VL_3B_VISION if size == "3b" else TINY_VISION,
        image_token_id=ids["image_token_id"],
        video_token_id=ids["video_token_id"],
        vision_start_token_id=ids["vision_start_token_id"],
        vision_end_token_id=ids["vision_end_token_id"],
        tie_word_embeddings=text["tie_word_embeddings"],
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=getattr(torch, dtype)).eval()
    model.generation_config.eos_token_id = ids["eos_token_id"]
    model.generation_config.pad_token_id = ids["pad_token_id"]
    return processor, model


def make_images(n: int, side: int = 448, seed: int = 0):
    """Distinct noise images (JPEG bytes, as pipelines pass them)."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        arr = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=("3b", "tiny"), default="3b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    ap.add_argument("--images", type=int, default=32, help="images captioned in each mode (the same ones)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=32)
    args = ap.parse_args(argv)

    import torch

    from captioners import CaptionerConfig, build_request
    from captioners.hf import HFCaptioner

    t0 = time.perf_counter()
    processor, model = build_model(args.size, args.device, args.dtype)
    n_params = sum(p.numel() for p in model.parameters())
    cfg = CaptionerConfig(backend="hf", model=f"random-qwen2.5-vl-{args.size}", device=args.device,
                          dtype=args.dtype, batch_size=args.batch_size)  # fmt: skip
    cap = HFCaptioner(cfg, processor=processor, model=model)
    images = make_images(args.images)
    reqs = [build_request("image_caption@v1", images=(im,), max_tokens=args.max_tokens) for im in images]
    print(
        f"model: {n_params / 1e9:.2f} B parameters, {args.dtype} on {args.device}, built in {time.perf_counter() - t0:.1f} s"
    )
    if args.device.startswith("cuda"):
        print(f"device: {torch.cuda.get_device_name()}")

    cap.caption(reqs[: args.batch_size])  # warm-up: kernels, allocator, both batch shapes
    cap.caption(reqs[:1])

    def timed(fn):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        results = fn()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start, results

    t_single, single = timed(lambda: [cap.caption([r])[0] for r in reqs])
    t_batch, batched = timed(lambda: cap.caption(reqs))
    for name, res in (("one at a time", single), ("batched", batched)):
        bad = [r for r in res if r.status == "error"]
        if bad:
            print(f"{name}: {len(bad)} errors, first: {bad[0].error}")
            return 1
    tokens = (sum(r.output_tokens for r in single), sum(r.output_tokens for r in batched))
    prompt = (
        sum(r.prompt_tokens for r in single) // len(single),
        sum(r.prompt_tokens for r in batched) // len(batched),
    )
    print(f"prompt tokens per image: {prompt[0]} / {prompt[1]}; output tokens in all: {tokens[0]} / {tokens[1]}")
    print(f"{'mode':<16}{'images':>8}{'seconds':>10}{'images/s':>10}")
    print(f"{'one at a time':<16}{len(reqs):>8}{t_single:>10.2f}{len(reqs) / t_single:>10.2f}")
    print(f"{'batched (' + str(args.batch_size) + ')':<16}{len(reqs):>8}{t_batch:>10.2f}{len(reqs) / t_batch:>10.2f}")
    print(f"ratio batched / one at a time: {t_single / t_batch:.1f}x (target >= 5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
