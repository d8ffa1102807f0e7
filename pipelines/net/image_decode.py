"""Image bytes from a fetch to the bytes a sample keeps: checked, size-capped, SVGs rasterised.

``decode_image`` keeps JPEG, PNG and WebP bytes as they are and turns other raster formats (GIF, BMP,
TIFF) and SVGs into PNG. The pixel cap is checked from the header before decoding (decompression
bombs); SVGs are parsed without entities, DTDs or network and rendered without scripts or external
files. A byte string that is not an image we can use raises ``Refused`` with its fetch outcome
(``not_an_image``, ``pixel_cap``, ``svg_rejected``).
"""

from __future__ import annotations

import io
import re
import warnings

from pipelines.net.netguard import Refused


UNITS = {"px": 1.0, "pt": 4 / 3, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54, "in": 96.0}
KEEP_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
DECODE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO")


def _is_svg(data: bytes) -> bool:
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith(b"<svg") or (head.startswith((b"<?xml", b"<!doctype svg", b"<!--")) and b"<svg" in head)


def _svg_size(data: bytes, max_side: int) -> tuple[int, int]:
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as e:
        raise Refused("not_an_image", f"SVG does not parse: {e}") from None

    def num(v):
        m = re.fullmatch(r"\s*([0-9.]+)\s*(px|pt|pc|mm|cm|in)?\s*", str(v or ""))
        try:
            return float(m.group(1)) * UNITS[m.group(2) or "px"] if m else None
        except ValueError:
            return None

    w, h = num(root.get("width")), num(root.get("height"))
    if not (w and h):
        vb = (root.get("viewBox") or "").replace(",", " ").split()
        if len(vb) == 4 and num(vb[2]) and num(vb[3]):
            w, h = num(vb[2]), num(vb[3])
        else:
            w, h = float(max_side), float(max_side)
    scale = min(1.0, max_side / max(w, h))  # intrinsic size, only ever scaled down
    return max(1, round(w * scale)), max(1, round(h * scale))


def rasterize_svg(data: bytes, max_side: int) -> bytes:
    """SVG to PNG with its longest side at ``max_side``; no scripts, no external files, no entities."""
    try:
        import cairosvg
    except ImportError:  # pragma: no cover - checked at configuration time
        raise Refused("svg_rejected", "cairosvg is not installed (pip install cairosvg)") from None
    w, h = _svg_size(data, max_side)
    try:
        return cairosvg.svg2png(bytestring=data, output_width=w, output_height=h, unsafe=False)
    except Exception as e:  # noqa: BLE001 - any renderer failure is a bad image, not a crash
        raise Refused("not_an_image", f"SVG does not render: {type(e).__name__}: {e}") from None


def decode_image(data: bytes, cfg) -> tuple[bytes, str, int, int]:
    """(bytes, ext, width, height) of an image we keep; raises Refused when the bytes are not one we can use.

    JPEG, PNG and WebP keep their bytes; other raster formats (GIF, BMP, TIFF) become PNG, and so do SVGs.
    """
    from PIL import Image

    if _is_svg(data):
        if cfg.svg == "reject":
            raise Refused("svg_rejected", "SVG images are rejected by configuration")
        data = rasterize_svg(data, cfg.svg_max_side)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=DECODE_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise Refused("pixel_cap", str(e)) from None
        except Exception as e:  # noqa: BLE001 - undecodable bytes are data, not a crash
            raise Refused("not_an_image", f"{type(e).__name__}: {e}") from None
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
            raise Refused("not_an_image", f"{type(e).__name__}: {e}") from None
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
