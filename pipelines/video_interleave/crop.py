"""Stage 3, crop: find letterbox / pillarbox borders on a clip's candidate frames and cut them off.

A row (column) is border when 98% of its pixels stay below ``threshold`` in up to 12 candidate frames
spread over the clip.
Only the outer runs of border rows/columns count, and only when each is at least ``min_border`` of
the side and together they leave at least ``1 - max_crop`` of it (otherwise the scene is dark, not
bordered, and the quality filter decides). Record keys added: ``crop`` (left, top, right, bottom in
decoded pixels, and ``source_box`` in source pixels); ``cands`` and ``thumbs`` are cropped in place.
"""

from __future__ import annotations

import numpy as np

from pipelines.video_interleave.config import CropConfig
from pipelines.video_interleave.shots import grey

STAGE = "crop"


def _outer_run(is_border: np.ndarray) -> tuple[int, int]:
    """Lengths of the border runs at the start and the end of a 1-D mask."""
    n = len(is_border)
    lead = n if is_border.all() else int(np.argmin(is_border))
    trail = n if is_border.all() else int(np.argmin(is_border[::-1]))
    return lead, trail


def detect_borders(frames: np.ndarray, cfg: CropConfig) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the picture inside the borders of RGB frames (N, H, W, 3)."""
    n, h, w = frames.shape[:3]
    if n == 0:
        return 0, 0, w, h
    # borders are static: a dozen frames spread over the clip see them as well as all would
    pick = np.unique(np.linspace(0, n - 1, min(n, 12)).round().astype(int))
    peak = grey(frames[pick]).max(0)  # (H, W): brightest value each pixel reaches
    rows = np.percentile(peak, 98, axis=1) < cfg.threshold
    cols = np.percentile(peak, 98, axis=0) < cfg.threshold
    box = [0, 0, w, h]
    for mask, side, lo, hi in ((rows, h, 1, 3), (cols, w, 0, 2)):
        a, b = _outer_run(mask)
        if a + b > cfg.max_crop * side:
            continue
        if a >= cfg.min_border * side:
            box[lo] = a
        if b >= cfg.min_border * side:
            box[hi] = side - b
    return tuple(box)


def crop_clips(batch: list[dict], cfg: CropConfig) -> list[dict]:
    out = []
    for rec in batch:
        cands = rec["cands"]
        h, w = cands.shape[1:3] if len(cands) else (1, 1)
        box = detect_borders(cands, cfg) if cfg.enabled else (0, 0, w, h)
        l, t, r, b = box
        v = rec["video"]
        sx, sy = v["width"] / w, v["height"] / h
        crop = {"box": [l, t, r, b], "source_box": [round(l * sx), round(t * sy), round(r * sx), round(b * sy)],
                "cropped": box != (0, 0, w, h)}
        rec = {**rec, "crop": crop}
        if crop["cropped"]:
            th, tw = rec["thumbs"].shape[1:3]
            fx, fy = tw / w, th / h
            tl, tt = int(np.ceil(l * fx)), int(np.ceil(t * fy))
            tr, tb = max(tl + 1, int(r * fx)), max(tt + 1, int(b * fy))
            rec["cands"] = np.ascontiguousarray(cands[:, t:b, l:r])
            rec["thumbs"] = np.ascontiguousarray(rec["thumbs"][:, tt:tb, tl:tr])
        out.append(rec)
    return out
