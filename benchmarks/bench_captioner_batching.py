"""The hf captioner batched versus one request at a time, on a random-weight VLM of real size; and the vLLM
engine against hf on CPU with the tiny model.

    python benchmarks/bench_captioner_batching.py                  # Qwen2.5-VL-3B shape, bf16, CUDA
    python benchmarks/bench_captioner_batching.py --size tiny --device cpu --dtype float32   # smoke run
    python benchmarks/bench_captioner_batching.py --vllm-cpu       # vLLM (CPU) against hf (CPU), tiny model

Batching: a Qwen2.5-VL-3B built offline from its published configuration with random weights (no
download), behind a tokenizer trained here. Captions are gibberish, the work per image is real: the same
vision tower and language model, images of varied sizes (224 to 672 px a side, several aspect ratios, so
64 to 576 image tokens a prompt), and output lengths spread like real captions: the end-of-sequence logit
is biased so that each answer ends after 5 to 40 tokens, a length drawn for its image (a seeded hash, the
same in both modes; ``AnswerLengths``; the spread is printed and recorded). Both modes go through ``HFCaptioner.caption`` on the same requests;
the baseline sends one request per call, the batched mode sends them all in one call, which the backend
runs ``--batch-size`` at a time, paying for padding and for the longest answer of each batch.
Target: batched at least 5x faster on the GPU.

vLLM on CPU: the tiny test model (``captioners.tiny``, its output head fitted to end answers in a short
sentence) through the ``vllm`` backend (an in-process ``vllm.LLM``, given every request at once: the
engine schedules them, continuous batching) and through the ``hf`` backend (``--batch-size`` at a time,
and one at a time), the same requests, alternating order, median of ``--repeat`` rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
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
    # images keep their size between 224x224 (64 image tokens) and 672x672 (576) pixels
    processor = build_processor(tokenizer, family="qwen2_5_vl", min_pixels=224 * 224, max_pixels=672 * 672)
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
    return processor, model, ids["eos_token_id"]


class AnswerLengths:
    """Ends each answer after a length drawn for its image: 5 to 40 tokens, uniform, the same in both modes.

    A random model never emits end-of-sequence, or (biased) emits it at once: greedy decoding of random
    weights falls into loops, so a constant bias gives lengths of 1 or the cap. Instead the end-of-sequence
    logit is pushed down before an answer's length and up at it; the length comes from a hash of the first
    pixels of the request's image as the vision tower gets them (so batching cannot change it).
    """

    def __init__(self, model, eos_id: int, lo: int = 5, hi: int = 40):
        self.eos, self.lo, self.hi = eos_id, lo, hi
        self.targets, self.step = None, 0
        model.model.visual.register_forward_pre_hook(self._images, with_kwargs=True)
        model.register_forward_pre_hook(self._start, with_kwargs=True)
        model.lm_head.register_forward_hook(self._bias)

    def length_of(self, first_patch) -> int:
        import hashlib

        digest = hashlib.blake2b(first_patch.float().cpu().numpy().tobytes(), digest_size=8).digest()
        return self.lo + int.from_bytes(digest, "little") % (self.hi - self.lo + 1)

    def _images(self, _module, args, kwargs):
        """The vision tower's input, once per generate call: one image per request, in batch order."""
        import torch

        pv = args[0] if args else kwargs.get("hidden_states", kwargs.get("pixel_values"))
        grid = args[1] if len(args) > 1 else kwargs.get("grid_thw")
        sizes = grid.prod(-1)
        starts = torch.cumsum(sizes, 0) - sizes
        self.targets = torch.tensor([self.length_of(pv[int(a), :16]) for a in starts], device=pv.device)

    def _start(self, _module, _args, kwargs):
        ids = kwargs.get("input_ids")
        self.step = 0 if ids is None or ids.shape[1] > 1 else self.step + 1  # prefill, or one more token

    def _bias(self, _module, _inputs, logits):
        if self.targets is not None and logits.shape[0] == len(self.targets):
            at = (self.targets <= self.step).to(logits.dtype)
            logits[:, -1, self.eos] = at * 1e4 - (1 - at) * 1e4
        return logits


def make_images(n: int, seed: int = 0, sides=(224, 320, 448, 560, 672)):
    """Distinct noise images of varied sizes and aspect ratios (JPEG bytes, as pipelines pass them)."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w, h = int(rng.choice(sides)), int(rng.choice(sides))
        arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def spread(lengths: list[int]) -> dict:
    q = statistics.quantiles(lengths, n=10) if len(lengths) > 1 else [lengths[0]] * 9
    return {"min": min(lengths), "p10": q[0], "median": statistics.median(lengths), "p90": q[-1], "max": max(lengths)}


def timed(fn, cuda: bool):
    import torch

    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    results = fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, results


def check(name: str, results) -> None:
    bad = [r for r in results if r.status == "error"]
    if bad:
        raise SystemExit(f"{name}: {len(bad)} errors, first: {bad[0].error}")


def batching(args) -> int:
    import torch

    from benchmarks.record import Row, write_result
    from captioners import CaptionerConfig, build_request
    from captioners.hf import HFCaptioner

    t0 = time.perf_counter()
    processor, model, eos = build_model(args.size, args.device, args.dtype)
    n_params = sum(p.numel() for p in model.parameters())
    cfg = CaptionerConfig(backend="hf", model=f"random-qwen2.5-vl-{args.size}", device=args.device,
                          dtype=args.dtype, batch_size=args.batch_size)  # fmt: skip
    cap = HFCaptioner(cfg, processor=processor, model=model)
    cuda = args.device.startswith("cuda")
    print(f"model: {n_params / 1e9:.2f} B parameters, {args.dtype} on {args.device}, "
          f"built in {time.perf_counter() - t0:.1f} s" + (f", {torch.cuda.get_device_name()}" if cuda else ""))

    def requests(images):
        return [build_request("image_caption@v1", images=(im,), max_tokens=args.max_tokens) for im in images]

    AnswerLengths(model, eos)
    reqs = requests(make_images(args.images, seed=0))
    cap.caption(reqs[: args.batch_size])  # warm-up: kernels, allocator, both batch shapes
    cap.caption(reqs[:1])
    t_single, single = timed(lambda: [cap.caption([r])[0] for r in reqs], cuda)
    t_batch, batched = timed(lambda: cap.caption(reqs), cuda)
    check("one at a time", single)
    check("batched", batched)
    lens = {"one at a time": [r.output_tokens for r in single], "batched": [r.output_tokens for r in batched]}
    prompts = [r.prompt_tokens for r in single]
    print(f"prompt tokens: {spread(prompts)}")
    for k, v in lens.items():
        print(f"output tokens, {k}: {sum(v)} in all, {spread(v)}")
    print(f"{'mode':<16}{'images':>8}{'seconds':>10}{'images/s':>10}")
    print(f"{'one at a time':<16}{len(reqs):>8}{t_single:>10.2f}{len(reqs) / t_single:>10.2f}")
    print(f"{'batched (' + str(args.batch_size) + ')':<16}{len(reqs):>8}{t_batch:>10.2f}{len(reqs) / t_batch:>10.2f}")
    print(f"ratio batched / one at a time: {t_single / t_batch:.1f}x (target >= 5x on the GPU)")
    if args.no_record:
        return 0
    row = Row(f"hf batched ({args.batch_size}) vs one at a time, {args.size} {args.dtype}", "images/s",
              len(reqs) / t_batch, len(reqs) / t_single, "the same hf captioner, one request per call",
              target_ratio=5.0 if cuda else None,
              note=f"{len(reqs)} images of varied size; answers {spread(lens['batched'])} tokens")
    write_result("bench_captioner_batching", [row], libraries=("torch", "transformers"),
                 extra={"load_avg": os.getloadavg(), "images": len(reqs), "max_tokens": args.max_tokens,
                        "output_tokens": lens, "prompt_tokens": prompts,
                        "seconds": {"one_at_a_time": t_single, "batched": t_batch}})
    return 0


def vllm_cpu(args) -> int:
    """The tiny model on CPU: vLLM engine (every request at once) against hf (batched, and one at a time)."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from benchmarks.record import Row, write_result
    from captioners import CaptionerConfig, build_request, make_captioner
    from captioners.tiny import make_tiny_vlm

    with tempfile.TemporaryDirectory() as tmp:
        model = str(make_tiny_vlm(Path(tmp) / "tiny-vlm"))
        reqs = [build_request("image_caption@v1", images=(im,), max_tokens=args.max_tokens)
                for im in make_images(args.images, seed=0, sides=(48, 64, 96, 128, 160))]
        hf = make_captioner(CaptionerConfig(backend="hf", model=model, batch_size=args.batch_size))
        engine_args = {"max_model_len": 1024, "enforce_eager": True, "distributed_executor_backend": "uni"}
        vl = make_captioner(CaptionerConfig(backend="vllm", model=model, dtype="float32", batch_size=len(reqs),
                                            engine_args=engine_args))
        sides = {"vllm": lambda: vl.caption(reqs), "hf batched": lambda: hf.caption(reqs),
                 "hf one at a time": lambda: [hf.caption([r])[0] for r in reqs]}
        for fn in sides.values():
            fn()  # warm-up
        times: dict[str, list[float]] = {k: [] for k in sides}
        results = {}
        for r in range(args.repeat):
            for k in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
                dt, results[k] = timed(sides[k], False)
                check(k, results[k])
                times[k].append(dt)
        vl.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    lens = {k: [x.output_tokens for x in v] for k, v in results.items()}
    for k in sides:
        print(f"{k:18s} median {med[k]:6.2f} s = {len(reqs) / med[k]:6.1f} images/s; answers {sum(lens[k])} tokens, "
              f"{spread(lens[k])}")
    print(f"vLLM / hf batched: {med['hf batched'] / med['vllm']:.2f}x; "
          f"vLLM / hf one at a time: {med['hf one at a time'] / med['vllm']:.2f}x")
    if args.no_record:
        return 0
    note = f"tiny Qwen2-VL on CPU, {len(reqs)} images; answers {spread(lens['vllm'])} tokens"
    rows = [Row("vLLM engine vs hf batched, CPU", "images/s", len(reqs) / med["vllm"], len(reqs) / med["hf batched"],
                f"hf captioner, batches of {args.batch_size}", note=note),
            Row("vLLM engine vs hf one at a time, CPU", "images/s", len(reqs) / med["vllm"],
                len(reqs) / med["hf one at a time"], "hf captioner, one request per call")]
    write_result("bench_captioner_vllm_cpu", rows, libraries=("vllm-cpu", "torch", "transformers"), machine=None,
                 extra={"load_avg": os.getloadavg(), "images": len(reqs), "repeat": args.repeat, "seconds": times,
                        "output_tokens": lens})
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=("3b", "tiny"), default="3b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    ap.add_argument("--images", type=int, default=32, help="images captioned in each mode (the same ones)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=48, help="cap on answer length")
    ap.add_argument("--vllm-cpu", action="store_true", help="vLLM against hf on CPU with the tiny model instead")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of the vLLM comparison; the median counts")
    ap.add_argument("--no-record", action="store_true", help="print only; write no result file")
    args = ap.parse_args(argv)
    return vllm_cpu(args) if args.vllm_cpu else batching(args)


if __name__ == "__main__":
    sys.exit(main())
