"""Document and image rules with their scores: UI URLs, size and aspect, clarity, duplicates, header/footer.

Each check returns ``(reason or None, scores)`` so that what decided is recorded next to the decision.
Duplicates: exact (sha256 of the kept bytes) and near (64-bit DCT perceptual hash within a Hamming
distance), inside a document and across the run. Across the run means: every image this worker process
has kept, plus the set persisted under ``OUT/dedup/`` by earlier and concurrent workers (read at start,
appended as images are kept). A document is never a duplicate of itself, so a resumed document that
registered its images before a crash is not dropped against its own earlier attempt.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import numpy as np

TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """Word and punctuation tokens: a tokenizer-free stand-in close to subword counts for English prose."""
    return len(TOKEN_RE.findall(text))


ALT_UI_MAX_WORDS = 4  # a UI element's alt text names it ("XMR Logo"); a longer one describes a picture


def url_rule(src: str, patterns: tuple[str, ...], alt: str = "") -> tuple[str | None, dict]:
    """UI elements: a pattern anywhere in the URL (BAGEL's rule), or as a word of a short alt text ("XMR Logo";
    "Screenshot of the New repository button on GitHub" describes a content image and is kept)."""
    low = "" if src.startswith("data:") else src.lower()  # data: URIs carry no name worth matching
    short_alt = alt if len(alt.split()) <= ALT_UI_MAX_WORDS else ""
    for p in patterns:
        if p and p.lower() in low:
            return "ui_url", {"url_pattern": p}
        if p and short_alt and re.search(rf"\b{re.escape(p.lower())}s?\b", short_alt.lower()):
            return "ui_url", {"alt_pattern": p}
    return None, {}


def size_rule(w: int, h: int, cfg) -> tuple[str | None, dict]:
    scores = {"width": w, "height": h, "aspect": round(w / h, 4) if h else 0.0}
    if min(w, h) < cfg.min_side or max(w, h) > cfg.max_side:
        return "image_size", scores
    if not (cfg.min_aspect <= scores["aspect"] <= cfg.max_aspect):
        return "aspect_ratio", scores
    return None, scores


def load_gray(data: bytes, max_side: int = 512) -> np.ndarray:
    """The image as a grey uint8 array with its longest side at ``max_side`` (transparency on white)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.draft("L", (max_side, max_side))
        if im.mode in ("RGBA", "LA", "P"):
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(bg, im)
        g = im.convert("L")
        g.thumbnail((max_side, max_side))
        return np.asarray(g)


def clarity(gray: np.ndarray) -> float:
    """Variance of the Laplacian: high for sharp edges, near zero for blurred or flat images."""
    import cv2

    # 16-bit output holds the uint8 Laplacian exactly (|value| <= 8 * 255); the variance is taken in float64
    return float(cv2.Laplacian(gray, cv2.CV_16S).var(dtype=np.float64))


def phash(gray: np.ndarray) -> int:
    """64-bit perceptual hash: signs of the 8x8 low-frequency DCT block of a 32x32 grey image vs its median."""
    import cv2

    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()
    bits = low > np.median(low[1:])
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


class DedupIndex:
    """Exact and near-duplicate lookup over images kept so far (see module docstring).

    Near lookups use 8 bands of 8 bits: two hashes within distance <= 7 share at least one band exactly.
    """

    def __init__(self, max_distance: int, persist_dir: str | Path | None = None):
        self.max_distance = max_distance
        self.exact: dict[str, str] = {}
        self.hashes: dict[int, str] = {}
        self.bands: list[dict[int, list[int]]] = [{} for _ in range(8)]
        self._file = None
        if persist_dir is not None:
            d = Path(persist_dir)
            d.mkdir(parents=True, exist_ok=True)
            for path in sorted(d.glob("*.jsonl")):
                for line in path.read_text(encoding="utf-8").splitlines():
                    try:
                        rec = json.loads(line)
                        self._add(rec["sha256"], int(rec["phash"], 16), rec["doc"])
                    except (json.JSONDecodeError, KeyError, ValueError, TypeError):
                        continue  # a torn last line from a killed worker
            # kept open for the worker's life (appends as images are kept); closed by close()
            self._file = open(d / f"seen-{os.getpid()}-{id(self):x}.jsonl", "a", encoding="utf-8")  # noqa: SIM115

    def _add(self, sha: str, ph: int, doc: str) -> None:
        self.exact.setdefault(sha, doc)
        if ph not in self.hashes:
            self.hashes[ph] = doc
            for i in range(8):
                self.bands[i].setdefault((ph >> (8 * i)) & 0xFF, []).append(ph)

    def lookup(self, sha: str, ph: int, doc: str) -> tuple[str | None, dict]:
        """``("duplicate_exact" | "duplicate_near", scores)`` against images of other documents, else (None, {})."""
        other = self.exact.get(sha)
        if other is not None and other != doc:
            return "duplicate_exact", {"duplicate_of_doc": other}
        best = None
        if self.max_distance > 0:
            for i in range(8):
                for cand in self.bands[i].get((ph >> (8 * i)) & 0xFF, ()):
                    dist = hamming(ph, cand)
                    if dist <= self.max_distance and self.hashes[cand] != doc and (best is None or dist < best[0]):
                        best = (dist, self.hashes[cand])
        if best is not None:
            return "duplicate_near", {"phash_distance": best[0], "duplicate_of_doc": best[1]}
        return None, {}

    def add(self, sha: str, ph: int, doc: str) -> None:
        self._add(sha, ph, doc)
        if self._file is not None:
            self._file.write(json.dumps({"sha256": sha, "phash": f"{ph:016x}", "doc": doc}) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def within_doc_duplicate(sha: str, ph: int, kept: list[tuple[str, int]], max_distance: int) -> tuple[str | None, dict]:
    for s, p in kept:
        if s == sha:
            return "duplicate_exact", {"phash_distance": 0}
        if hamming(p, ph) <= max_distance:
            return "duplicate_near", {"phash_distance": hamming(p, ph)}
    return None, {}


def trim_ends(items: list[dict], cfg) -> tuple[list[dict], int]:
    """Drop boilerplate text blocks (bylines, share links, copyright lines) from both ends of a document.

    Only text before the first image and after the last image is eligible, and only blocks of at most
    ``trim_max_words`` words that match a pattern; the body between images is never touched.
    """
    pats = [re.compile(p) for p in cfg.trim_patterns]

    def boiler(it: dict) -> bool:
        return it["type"] == "text" and len(it["text"].split()) <= cfg.trim_max_words and \
            any(p.search(it["text"]) for p in pats)

    img_idx = [i for i, it in enumerate(items) if it["type"] == "image"]
    first, last = (img_idx[0], img_idx[-1]) if img_idx else (len(items), -1)
    keep = [not ((i < first or i > last) and boiler(it)) for i, it in enumerate(items)]
    # a footer is a tail: everything after the first boilerplate line past the last image goes too
    tail = next((i for i in range(max(last + 1, 0), len(items)) if not keep[i]), None)
    if tail is not None:
        for i in range(tail, len(items)):
            keep[i] = False
    out = [it for it, k in zip(items, keep) if k]
    return out, len(items) - len(out)


def image_count_rule(n: int, cfg) -> tuple[str | None, dict]:
    scores = {"images": n, "min_images": cfg.min_images, "max_images": cfg.max_images}
    if n < cfg.min_images:
        return "too_few_images", scores
    if n > cfg.max_images and cfg.over_max == "filter":
        return "too_many_images", scores
    return None, scores
