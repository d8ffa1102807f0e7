"""Small JPEG thumbnails of dropped data, so a person can see what a filter threw away.

Stages attach thumbnail bytes to the records they drop (``THUMBS`` on a dropped clip, ``THUMB`` on a web
image's log entry); the sink writes them under ``OUT/dropped/`` (a capped number per reason and writer)
and the manifest keeps their paths (``thumbs``, ``thumb``), which ``braid view`` shows.
"""

from __future__ import annotations

import io

THUMBS = "thumbs_jpeg"  # record field: list of JPEG bytes (clip-level drops)
THUMB = "thumb_jpeg"    # image log entry field: JPEG bytes (image-level drops)
SIDE = 192
DROPPED_DIR = "dropped"


def scale_image(im, max_side: int, quality: int = 80, keep_alpha: bool = True) -> tuple[bytes, str]:
    """An opened PIL image scaled to fit ``max_side``: (JPEG bytes, "jpg"), or (PNG bytes, "png") when it has
    transparency and ``keep_alpha``. A JPEG is decoded at a reduced scale (``draft``), cheaply."""
    im.draft("RGB", (max_side, max_side))
    im.load()
    alpha = keep_alpha and (im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info))
    im = im.convert("RGBA" if alpha else "RGB")
    im.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    im.save(buf, "PNG" if alpha else "JPEG", **({} if alpha else {"quality": quality}))
    return buf.getvalue(), "png" if alpha else "jpg"


def jpeg_thumb(image, side: int = SIDE) -> bytes | None:
    """A JPEG of at most ``side`` px from an RGB array or encoded image bytes; None when it cannot be read."""
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(image)) if isinstance(image, (bytes, bytearray)) else Image.fromarray(image)
        if img.width * img.height > 64_000_000:  # a decompression bomb is not worth a thumbnail
            return None
        return scale_image(img, side, keep_alpha=False)[0]
    except Exception:  # noqa: BLE001 - a thumbnail is a courtesy; the drop is recorded either way
        return None


def frame_thumbs(frames, n: int = 3) -> list[bytes]:
    """Up to ``n`` thumbnails spread over a clip's frames (an (N, H, W, 3) uint8 array)."""
    if frames is None or len(frames) == 0:
        return []
    idx = sorted({round(i * (len(frames) - 1) / max(1, n - 1)) for i in range(n)})
    return [t for t in (jpeg_thumb(frames[i]) for i in idx) if t]
