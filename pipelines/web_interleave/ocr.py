"""Text-heavy image detection with an offline OCR engine (RapidOCR: PaddleOCR models on onnxruntime).

BAGEL drops document-style images with more than 100 OCR-detected text tokens. A token here is a
word of the recognised text lines, so "Press the lock switch" counts 4. The recogniser sometimes drops
the spaces between words ("pressthelockswitch"), so a line counts the larger of its words and its
letters / 5.5 (mean English word length), which keeps glued lines from counting as one word.
"""

from __future__ import annotations

import io

import numpy as np


class OcrCounter:
    """Counts OCR text tokens in an image; the engine loads once per worker."""

    def __init__(self, max_side: int = 1280, min_confidence: float = 0.5):
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError:  # pragma: no cover - a declared dependency
            from schemas.config import ConfigError

            raise ConfigError("filters.max_ocr_tokens needs rapidocr-onnxruntime (pip install rapidocr-onnxruntime) "
                              "or set it to null") from None
        self.engine = RapidOCR()
        self.max_side, self.min_confidence = max_side, min_confidence

    def _bgr(self, data: bytes) -> np.ndarray:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")
            im.thumbnail((self.max_side, self.max_side))
            return np.asarray(im)[:, :, ::-1].copy()  # RapidOCR takes OpenCV's BGR order

    def lines(self, data: bytes) -> list[tuple[str, float]]:
        """All recognised text lines with their confidence."""
        result, _ = self.engine(self._bgr(data), use_cls=False)  # no angle classifier: web images are upright
        return [(str(text), float(conf)) for _, text, conf in (result or [])]

    def count(self, data: bytes, limit: int | None = None) -> int:
        """OCR text tokens; with ``limit``, recognition stops once the count passes it (text-heavy images
        are the slow ones, and past the limit the exact number does not change the decision)."""
        eng = self.engine
        if limit is None or not all(hasattr(eng, a) for a in ("preprocess", "auto_text_det", "get_crop_img_list")):
            return sum(line_tokens(t) for t, conf in self.lines(data) if conf >= self.min_confidence)
        img, _, _ = eng.preprocess(self._bgr(data))
        if hasattr(eng, "maybe_add_letterbox"):
            img, _ = eng.maybe_add_letterbox(img, {})
        boxes, _ = eng.auto_text_det(img)
        if boxes is None or len(boxes) == 0:
            return 0
        crops = eng.get_crop_img_list(img, boxes)
        n = 0
        for i in range(0, len(crops), 16):
            rec, _ = eng.text_rec(crops[i : i + 16])
            n += sum(line_tokens(str(r[0])) for r in rec if float(r[1]) >= self.min_confidence)
            if n > limit:
                break
        return n


def line_tokens(text: str) -> int:
    letters = sum(1 for c in text if not c.isspace())
    return max(len(text.split()), round(letters / 5.5))
