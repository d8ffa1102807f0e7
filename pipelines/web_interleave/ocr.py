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
            from pipelines.config import ConfigError

            raise ConfigError("filters.max_ocr_tokens needs rapidocr-onnxruntime (pip install rapidocr-onnxruntime) "
                              "or set it to null") from None
        self.engine = RapidOCR()
        self.max_side, self.min_confidence = max_side, min_confidence

    def lines(self, data: bytes) -> list[tuple[str, float]]:
        """Recognised text lines with their confidence."""
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")
            im.thumbnail((self.max_side, self.max_side))
            arr = np.asarray(im)[:, :, ::-1].copy()  # RapidOCR takes OpenCV's BGR order
        result, _ = self.engine(arr, use_cls=False)  # the angle classifier triples the time; web images are upright
        return [(str(text), float(conf)) for _, text, conf in (result or [])]

    def count(self, data: bytes) -> int:
        return sum(line_tokens(text) for text, conf in self.lines(data) if conf >= self.min_confidence)


def line_tokens(text: str) -> int:
    letters = sum(1 for c in text if not c.isspace())
    return max(len(text.split()), round(letters / 5.5))
