"""Inputs for the reasoning tests: real shards written through schemas, edit tables, and stand-in captioners.

Images are drawn scenes (gradient, shapes) encoded as real JPEG/PNG; shards follow the layouts the
video pipeline (frame, change, frame, ...) and the web pipeline (body, caption, image, ...) write.
"""

from __future__ import annotations

import io
from pathlib import Path

from captioners.base import CaptionResult
from schemas import CaptionerInfo, ImageSegment, Sample, ShardWriter, Source, TextSegment


def scene(seed: int, size=(96, 80), fmt="JPEG") -> bytes:
    from PIL import Image, ImageDraw

    w, h = size
    im = Image.new("RGB", size)
    px = im.load()
    for y in range(h):
        for x in range(w):
            px[x, y] = ((x * 3 + seed * 40) % 256, (y * 3 + seed * 70) % 256, (seed * 90 + x + y) % 256)
    d = ImageDraw.Draw(im)
    x0 = 8 + (seed * 13) % (w - 40)
    d.rectangle([x0, 20, x0 + 24, 44], fill=((seed * 50) % 256, 200, 40))
    d.ellipse([w - 40, h - 36, w - 12, h - 8], fill=(250, (seed * 30) % 256, 90))
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def _img(seed: int, role: str, und: bool, gen: bool) -> ImageSegment:
    return ImageSegment(scene(seed), "jpg", 96, 80, understanding=und, generation=gen, role=role,
                        provenance={"seed": seed})


def video_sample(i: int) -> Sample:
    segs = []
    for f in range(4):
        segs.append(_img(10 * i + f, "frame", True, f > 0))
        if f < 3:
            segs.append(TextSegment(f"The green square slides {'left' if f % 2 else 'right'} as the camera holds still.",
                                    role="change", loss=True, prompt_id="change_caption@v1"))
    return Sample(key=f"clip-{i:03d}", kind="video", segments=tuple(segs),
                  source=Source(f"file:///videos/v{i}.mp4", licence="CC0", span=(1.0 * i, 1.0 * i + 2.0)),
                  captioner=CaptionerInfo("stub", "stub", ("change_caption@v1",)))


def web_sample(i: int, n_images: int = 3) -> Sample:
    segs = [TextSegment(f"How to glaze a pot, part {i}. Start with a dry bisque piece.", role="body")]
    for k in range(n_images):
        segs.append(TextSegment(f"Step {k + 1}: a pot at stage {k + 1} on the wheel.", role="caption",
                                prompt_id="image_caption@v1"))
        segs.append(_img(100 + 10 * i + k, "image", True, True))
        segs.append(TextSegment(f"Then do step {k + 2} carefully and let it dry.", role="body"))
    return Sample(key=f"doc-{i:03d}", kind="web", segments=tuple(segs),
                  source=Source(f"https://example.org/doc{i}", licence="CC-BY-4.0", position=i),
                  captioner=CaptionerInfo("stub", "stub", ("image_caption@v1",)))


def pair_sample(i: int) -> Sample:
    segs = (_img(300 + i, "image", True, True), TextSegment("A lighthouse on a rocky coast at dusk.", role="caption"))
    return Sample(key=f"pair-{i:03d}", kind="pair", segments=segs, source=Source(f"https://example.org/p{i}.jpg"))


def write_shard(out_dir: Path, prefix: str, samples: list[Sample]) -> Path:
    """One complete shard ``<out_dir>/<prefix>-000000.tar`` (with its stats file)."""
    with ShardWriter(out_dir, prefix=prefix, max_count=1000) as w:
        for s in samples:
            w.write(s)
    return w.completed[0]


def write_edit_table(path: Path, n: int = 3, bad_row: bool = True) -> Path:
    """Rows of (source image, target image, instruction); optionally one row whose source is not an image."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = [scene(500 + k) for k in range(n)]
    tgt = [scene(600 + k, fmt="PNG") for k in range(n)]
    ins = [f"Make the background {c}." for c in ("blue", "darker", "snowy", "warmer")[:n]]
    if bad_row:
        src.append(b"not an image at all"), tgt.append(scene(700)), ins.append("Add a cat.")
    pq.write_table(pa.table({"source_image": src, "target_image": tgt, "instruction": ins}), path, row_group_size=2)
    return path


def write_bagel_table(path: Path) -> Path:
    """BAGEL's layout: image_list (encoded images), instruction_list (per transition, alternatives)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = {"image_list": [[scene(800), scene(801), scene(802)], [scene(803)]],
            "instruction_list": [[["Turn the square red.", "Make the square red."], ["Remove the circle."]], []]}
    pq.write_table(pa.table(rows), path)
    return path


# ---------------------------------------------------------------- stand-in captioners

GOOD = {
    "t2i_query@v1": "A playful abstract poster with a bright square.",
    "t2i_trace@v1": ("Guidance: The picture needs one bold square and a round shape over a soft colour gradient.\n"
                     "Refined prompt: A green square left of centre and an orange disc in the lower right corner "
                     "over a smooth purple to teal gradient, flat graphic style."),
    "edit_instruction@v1": "Slide the green square a little to the side.",
    "edit_trace@v1": ("The background colour shifts while the square and the disc keep their places, sizes and "
                      "shapes; the layout stays the same."),
    "edit_trace_video@v1": ("The square moves sideways across the frame; the disc, the gradient and the fixed "
                            "camera view stay as they are."),
    "concept_pair@v1": "1 -> 3",
    "concept_question@v1": "Question: What will this piece look like after the last stage?\nAnswer: a glazed vase",
    "concept_judge@v1": "ACCEPT: clear progression between the stages.",
    "concept_explain@v1": ("The first picture shows raw clay early in the process. After shaping, drying and "
                           "firing, the finished object stands upright with a glossy coloured surface, smooth "
                           "curved walls and a narrow neck, lit from the side on the same table."),
}


class StandInCaptioner:
    """Returns well-formed content for every reasoning prompt (stage logic only; no model)."""

    backend = "standin"
    model = "well-formed"
    replies = GOOD

    def __init__(self):
        self.calls: list[str] = []

    def caption(self, requests):
        from captioners.prompts import get_prompt

        out = []
        for r in requests:
            p = get_prompt(r.prompt_id)
            assert len(r.images) == p.n_images, (r.prompt_id, len(r.images))
            p.render(r.variables)  # every variable the prompt needs is there
            self.calls.append(r.prompt_id)
            text = self.replies[r.prompt_id]
            out.append(CaptionResult(text=text, status="ok", output_tokens=len(text.split())))
        return out

    def close(self):
        pass


BAD = {
    "t2i_query@v1": "poster " * 30,  # degenerate repetition
    "t2i_trace@v1": "Guidance: a square.",
    "edit_instruction@v1": "Move the square.",
    "edit_trace@v1": "ok\x00\x01 the \ufffd layout",
    "edit_trace_video@v1": "word " * 200,
    "concept_pair@v1": "1 -> 3",
    "concept_question@v1": "Question: Which glazed vase comes out of the kiln?\nAnswer: a glazed vase",
    "concept_judge@v1": "ACCEPT: fine",
    "concept_explain@v1": "It is fine.",
}


class BadCaptioner(StandInCaptioner):
    """Returns the kinds of output the checks must reject, and errors for edit instructions."""

    model = "misbehaving"
    replies = BAD

    def caption(self, requests):
        out = super().caption(requests)
        return [CaptionResult(text="", status="error", error="server went away") if r.prompt_id == "edit_instruction@v1"
                else res for r, res in zip(requests, out)]
