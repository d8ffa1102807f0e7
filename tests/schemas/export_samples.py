"""Realistic Braid samples of every kind, with real encoded images, written as real shards for the export tests.

Layouts follow what the pipelines write: video clips (frame, change caption, frame, ...), caption-first web
documents (title and body text, caption before each image, trailing text), reasoning samples (system prompt,
query or instruction, ``<think>`` trace, target image), image-text pairs for generation and understanding.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from schemas import CaptionerInfo, ImageSegment, Sample, ShardWriter, Source, TextSegment, make_key

SYSTEM = "You should first think about the planning process in the mind and then generate the image."


def image_bytes(seed: int, size=(96, 64), fmt="JPEG", alpha=False) -> bytes:
    """A real picture: smooth gradients plus noise, so the encoders do real work."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * (3 + seed % 5)) % 256, (yy * (2 + seed % 3)) % 256, ((xx + yy) * 2 + seed * 40) % 256], -1)
    arr = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    im = Image.fromarray(arr, "RGB")
    if alpha:
        im = im.convert("RGBA")
        im.putalpha(Image.fromarray(((xx * 255) // max(w - 1, 1)).astype(np.uint8), "L"))
    buf = io.BytesIO()
    im.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _img(seed, ext="jpg", size=(96, 64), und=True, gen=True, role="image", alpha=False, **prov):
    fmt = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[ext]
    return ImageSegment(image_bytes(seed, size, fmt, alpha), ext, size[0], size[1], understanding=und, generation=gen,
                        role=role, provenance=prov)


CAP = CaptionerInfo("openai", "tiny-vlm", ("change_caption@v1", "caption_first@v1"))


def video_sample(i: int, n_frames: int = 4) -> Sample:
    segs = []
    for f in range(n_frames):
        segs.append(_img(100 * i + f, "jpg", (128, 72), und=True, gen=f > 0, role="frame", t=0.5 * f))
        if f < n_frames - 1:
            segs.append(TextSegment(f"The camera pans right as the cup moves {f + 1} cm closer.", "change", True,
                                    prompt_id="change_caption@v1", status="ok"))
    uri = f"file:///videos/clip{i}.mp4"
    return Sample(make_key(uri, 0.0, 2.0), "video", tuple(segs), Source(uri, licence="CC BY 4.0", span=(0.0, 2.0)),
                  CAP, meta={"shot": 0})


def web_sample(i: int, n_images: int = 3) -> Sample:
    segs = [TextSegment(f"How to repot a plant, part {i}", "body", True),
            TextSegment("Start with a pot one size larger than the old one.", "body", True)]
    for k in range(n_images):
        segs.append(TextSegment(f"A terracotta pot with soil, step {k + 1}.", "caption", True, prompt_id="caption_first@v1"))
        ext = ("jpg", "png", "webp")[k % 3]
        segs.append(_img(200 * i + k, ext, (80 + 8 * k, 60), und=True, gen=True, alt=f"step {k + 1}",
                         url=f"https://example.org/img/{i}/{k}.{ext}"))
        if k < n_images - 1:
            segs.append(TextSegment(f"Water lightly after step {k + 1} and wait a day.", "body", True))
    segs.append(TextSegment("Share this tutorial with your friends.", "body", True))
    uri = f"https://example.org/repot/{i}"
    return Sample(make_key(uri, 0), "web", tuple(segs), Source(uri, licence="CC BY-SA 4.0", position=0), CAP,
                  meta={"topic": "how-to"})


def reasoning_t2i_sample(i: int) -> Sample:
    segs = (TextSegment(SYSTEM, "system", False), TextSegment(f"a cosy reading corner {i}", "query", False),
            TextSegment("<think> The image should show an armchair by a window. The refined prompt is: a green "
                        "velvet armchair beside a rainy window, warm lamp light. </think>", "think", True),
            _img(300 + i, "png", (64, 64), und=False, gen=True, role="target"))
    uri = f"braid://reasoning_t2i/{i}"
    return Sample(make_key(uri), "reasoning_t2i", segs, Source(uri, licence="CC0 1.0"), CAP)


def reasoning_edit_sample(i: int, kind: str = "reasoning_edit") -> Sample:
    segs = (TextSegment(SYSTEM, "system", False),
            _img(400 + i, "jpg", (96, 64), und=True, gen=False, role="source"),
            TextSegment("Make the cup red.", "instruction", False),
            TextSegment("<think> The cup changes colour; the table and lighting stay the same. </think>", "think", True),
            _img(500 + i, "jpg", (96, 64), und=True, gen=True, role="target"))
    if kind == "reasoning_concept":
        segs = segs + (TextSegment("The answer shows the cup after painting.", "answer", True),)
    uri = f"braid://{kind}/{i}"
    return Sample(make_key(uri), kind, segs, Source(uri), CAP)


def pair_gen_sample(i: int) -> Sample:
    segs = (TextSegment(f"A red bicycle leaning on a blue wall, photo {i}.", "caption", False),
            _img(600 + i, "jpg", (96, 96), und=False, gen=True))
    uri = f"https://example.org/pairs/{i}.jpg"
    return Sample(make_key(uri), "pair", segs, Source(uri, licence="CC BY 4.0"), None)


def pair_und_sample(i: int) -> Sample:
    segs = (_img(700 + i, "png", (72, 72), und=True, gen=False, alpha=True),
            TextSegment("What is in the picture?", "query", False),
            TextSegment(f"A transparent sticker of a fox, number {i}.", "answer", True))
    uri = f"https://example.org/und/{i}.png"
    return Sample(make_key(uri), "pair", segs, Source(uri), None)


def all_samples() -> list[Sample]:
    return ([video_sample(i) for i in range(3)] + [video_sample(9, n_frames=2)] + [web_sample(i) for i in range(2)]
            + [reasoning_t2i_sample(i) for i in range(2)] + [reasoning_edit_sample(0),
               reasoning_edit_sample(1, "reasoning_concept")] + [pair_gen_sample(0), pair_und_sample(0)])


def write_run(out: Path, samples: list[Sample], max_count: int = 4) -> Path:
    """Shards plus the summary.json and runs.jsonl a pipeline run leaves beside them."""
    with ShardWriter(out, "shard-r00", max_count=max_count) as w:
        for s in samples:
            w.write(s)
    (out / "summary.json").write_text(json.dumps({
        "inputs": len(samples) + 3, "written": len(samples), "filtered": 2, "failed": 1, "samples_written": len(samples),
        "by_reason": {"too_few_images": 1, "blurry": 1}, "by_error_kind": {"fetch_timeout": 1}, "pipeline": "web"}))
    (out / "runs.jsonl").write_text(json.dumps({"attempt": 0, "pipeline": "web", "inputs": len(samples) + 3,
                                                "config": {"min_images": 3, "max_images": 8}}) + "\n")
    return out
