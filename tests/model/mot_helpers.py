"""Shards and samples for the model tests, built through schemas/: make_sample's layout with real photos
from ../shared/data/photos when present, else generated gradients."""

from __future__ import annotations

import io
from pathlib import Path

from samples import SHARED_DATA, make_sample


def photo_bytes(i: int, size=(64, 48)) -> bytes:
    """A real photo from ../shared/data/photos (cycled) as JPEG, or a generated gradient when it is absent."""
    from PIL import Image

    photos = sorted((SHARED_DATA / "photos").glob("*.jpg")) if (SHARED_DATA / "photos").is_dir() else []
    if photos:
        im = Image.open(photos[i % len(photos)]).convert("RGB").resize(size)
    else:
        im = Image.linear_gradient("L").resize(size).convert("RGB").rotate(37 * i)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


CAPTIONS = ["the ball moves left", "a cat jumps on the table", "the red car turns right", "waves hit the rocks"]


def photo_sample(i: int, n_images: int = 3):
    """make_sample's layout (frame, change caption, frame, ...) with real images and varied captions."""
    from schemas import ImageSegment

    s = make_sample(f"s-{i:04d}", caption=CAPTIONS[i % len(CAPTIONS)], n_images=n_images)
    segs, k = [], 0
    for seg in s.segments:
        if isinstance(seg, ImageSegment):
            data = photo_bytes(i + k)
            segs.append(ImageSegment(data, "jpg", 64, 48, understanding=True, generation=seg.generation,
                                     role="frame"))
            k += 1
        else:
            segs.append(seg)
    return s.replace(segments=tuple(segs))


def write_shards(out: Path, n_samples: int, per_shard: int, start: int = 0) -> list[Path]:
    from schemas import ShardWriter

    with ShardWriter(out, max_count=per_shard) as w:
        for i in range(start, start + n_samples):
            w.write(photo_sample(i))
    return sorted(out.glob("*.tar"))
