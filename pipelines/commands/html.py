"""Self-contained HTML rendering of samples, for ``braid view`` and spot-check reports.

Everything a page needs is inline: CSS in a ``<style>`` element, images as base64 ``data:`` URIs
(thumbnails re-encoded as JPEG, or PNG when the image has transparency), no scripts, nothing
fetched. Text is escaped; metadata sits folded in ``<details>``.
"""

from __future__ import annotations

import base64
import html
import io
import json

from pipelines.core.thumbs import scale_image
from schemas import ImageSegment, TextSegment

MAX_PIXELS = 64_000_000  # an image with more pixels is not decoded (decompression bombs)

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; background: #f4f4f2; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; }
.note { color: #666; margin: 0 0 18px; }
.sample { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 14px 16px; margin: 0 0 20px; }
.sample > header { display: flex; gap: 10px; align-items: baseline; flex-wrap: wrap; margin-bottom: 10px; }
.key { font: 600 14px ui-monospace, monospace; }
.badge { display: inline-block; font-size: 11px; padding: 1px 6px; border-radius: 9px; background: #e6e6e6; }
.badge.loss { background: #ffe1c2; } .badge.noloss { background: #e3e3e3; color: #666; }
.badge.und { background: #d4e8ff; } .badge.gen { background: #dff5d8; }
.seg { margin: 8px 0; }
.seg.text p { white-space: pre-wrap; margin: 4px 0 0; }
.seg.text.noloss p { color: #666; }
.seg.image figure { margin: 0; }
.seg.image img { max-width: 100%; min-width: 48px; image-rendering: pixelated; border: 1px solid #ccc; display: block; }
.seg.image figcaption { font-size: 12px; color: #555; margin-top: 3px; }
.broken { color: #a00; font-weight: 600; }
details { margin-top: 10px; } summary { cursor: pointer; color: #555; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; font-size: 12px; }
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def thumbnail_data_uri(data: bytes, max_side: int = 320, max_pixels: int = MAX_PIXELS) -> str:
    """A ``data:`` URI of the image scaled to fit ``max_side``; ValueError when it does not decode."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > max_pixels:
                raise ValueError(f"{im.width}x{im.height} is over the limit of {max_pixels} pixels")
            data, ext = scale_image(im, max_side, quality=85)
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"does not decode ({type(e).__name__}: {e})") from None
    mime = "image/png" if ext == "png" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def details(summary: str, obj: object) -> str:
    """A folded JSON block."""
    body = json.dumps(obj, indent=1, ensure_ascii=False, sort_keys=True, default=str)
    return f"<details><summary>{esc(summary)}</summary><pre>{esc(body)}</pre></details>"


def render_text(seg: TextSegment) -> str:
    loss = '<span class="badge loss">loss</span>' if seg.loss else '<span class="badge noloss">no loss</span>'
    extra = f' <span class="badge">{esc(seg.status)}</span>' if seg.status else ""
    cls = "seg text" + ("" if seg.loss else " noloss")
    return (f'<div class="{cls}" data-role="{esc(seg.role)}"><span class="badge">{esc(seg.role)}</span> {loss}{extra}'
            f"<p>{esc(seg.text)}</p></div>")


def render_image(seg: ImageSegment, index: int, max_side: int = 320) -> str:
    flags = []
    if seg.understanding:
        flags.append('<span class="badge und">understanding</span>')
    if seg.generation:
        flags.append('<span class="badge gen">generation</span>')
    caption = (f'image {index} · <span class="badge">{esc(seg.role)}</span> {" ".join(flags)} · '
               f"{seg.width}×{seg.height} {esc(seg.ext)}")
    try:
        uri = thumbnail_data_uri(seg.data, max_side)
        body = f'<img src="{uri}" alt="image {index} ({esc(seg.role)})">'
    except ValueError as e:
        body = f'<div class="broken">image {index} {esc(e)}</div>'
    return f'<div class="seg image"><figure>{body}<figcaption>{caption}</figcaption></figure></div>'


def page(title: str, body: str, note: str = "", css: str = "") -> str:
    """A complete, self-contained HTML document."""
    note_html = f'<p class="note">{esc(note)}</p>' if note else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<style>{CSS}{css}</style></head><body><h1>{esc(title)}</h1>{note_html}{body}</body></html>\n")
