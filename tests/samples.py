"""Sample builders shared by the tests (import as ``from samples import make_sample``)."""

from __future__ import annotations

import io
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def jpeg_bytes(color=(200, 30, 30), size=(64, 48)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def make_sample(key: str = "s-000", kind: str = "video", n_images: int = 3, caption: str = "the ball moves left"):
    """A well-formed interleaved sample: image, text, image, text, ... image."""
    from schemas import CaptionerInfo, ImageSegment, Sample, Source, TextSegment

    segs = []
    for i in range(n_images):
        segs.append(ImageSegment(jpeg_bytes((40 * i % 255, 100, 200)), "jpg", 64, 48, understanding=True,
                                 generation=i > 0, role="frame", provenance={"t": float(i)}))
        if i < n_images - 1:
            segs.append(TextSegment(f"{caption} {i}", role="change", loss=True, prompt_id="change_caption@v1"))
    return Sample(key=key, kind=kind, segments=tuple(segs), source=Source("file:///v.mp4", span=(0.0, 2.0)),
                  captioner=CaptionerInfo("stub", "stub-model", ("change_caption@v1",)))
