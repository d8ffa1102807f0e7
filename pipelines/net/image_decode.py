"""Image bytes from a fetch to the bytes a sample keeps: checked, size-capped, SVGs rasterised.

``decode_image`` keeps JPEG, PNG and WebP bytes as they are and turns other raster formats (GIF, BMP,
TIFF) and SVGs into PNG. The pixel cap is checked from the header before decoding (decompression
bombs); SVGs are rasterised in a child process under a time and memory limit (``svg_raster.py``).
A byte string that is not an image we can use raises ``Refused`` with its fetch outcome
(``not_an_image``, ``pixel_cap``, ``svg_rejected``, ``decode_limit``); when the bytes are an HTML page
or other text (a login wall, an error page served with status 200), the detail says so.
"""

from __future__ import annotations

import io
import warnings

from pipelines.net.netguard import Refused
from pipelines.net.svg_raster import rasterize_svg

KEEP_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
DECODE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO")


def _is_svg(data: bytes) -> bool:
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith(b"<svg") or (head.startswith((b"<?xml", b"<!doctype svg", b"<!--")) and b"<svg" in head)


def what_it_is(data: bytes) -> str:
    """A few words on bytes that are not an image: an HTML page, other text, nothing, or unknown binary."""
    if not data:
        return "an empty body"
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<meta", b"<title")) or b"<html" in head:
        return "an HTML page, not an image"
    if head.startswith((b"{", b"[")):
        return "JSON text, not an image"
    if head.startswith(b"<"):
        return "XML or markup text, not an image"
    try:
        data[:1024].decode("utf-8")
        return "plain text, not an image"
    except UnicodeDecodeError:
        return "bytes in no image format we read"


def decode_image(data: bytes, cfg) -> tuple[bytes, str, int, int]:
    """(bytes, ext, width, height) of an image we keep; raises Refused when the bytes are not one we can use.

    JPEG, PNG and WebP keep their bytes; other raster formats (GIF, BMP, TIFF) become PNG, and so do SVGs
    (rasterised within ``cfg.timeout_s``).
    """
    from PIL import Image

    if _is_svg(data):
        if cfg.svg == "reject":
            raise Refused("svg_rejected", "SVG images are rejected by configuration")
        data = rasterize_svg(data, cfg.svg_max_side, cfg.timeout_s)
    Image.init()  # register every plugin, so the formats named below all exist
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=DECODE_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise Refused("pixel_cap", str(e)) from None
        except Exception:  # noqa: BLE001 - undecodable bytes are data, not a crash
            raise Refused("not_an_image", f"the body is {what_it_is(data)}") from None
        w, h = im.size
        if w * h > cfg.max_pixels:
            raise Refused("pixel_cap", f"{w}x{h} = {w * h} pixels > {cfg.max_pixels}")
        if im.format == "JPEG":
            # the whole bitstream is still decoded (truncation and corruption still fail), only the
            # inverse DCT runs at 1/8 scale: the kept bytes are the original ones, never these pixels
            im.draft(im.mode, (max(1, w // 8), max(1, h // 8)))
        try:
            im.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise Refused("pixel_cap", str(e)) from None
        except Exception as e:  # noqa: BLE001
            raise Refused("not_an_image", f"{im.format} image does not decode: {type(e).__name__}: {e}") from None
    if im.format in KEEP_FORMATS and not getattr(im, "is_animated", False):
        return data, KEEP_FORMATS[im.format], w, h
    frame = im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB")
    buf = io.BytesIO()
    frame.save(buf, "PNG")
    return buf.getvalue(), "png", w, h


def image_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return im.size
