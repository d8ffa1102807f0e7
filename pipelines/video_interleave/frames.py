"""Stage 5, frames: about ``frames_per_clip`` frames per clip, spread in time, inside the shot, distinct.

Candidates closer than ``edge_margin_frames`` to a cut are never taken, so a sampled frame cannot
come from the neighbouring shot even when the cut was found a frame late. Targets are spread evenly
over the remaining span; a frame whose perceptual hash (DCT, 64 bits) is within ``phash_distance`` bits
of the previous kept frame is a near-duplicate and dropped, so consecutive frames show a visible
change. Kept frames are resized (longest side ``frame_side``, both sides multiples of ``multiple``,
never upscaled, aspect kept by a centre crop of at most ``multiple`` pixels) and encoded to JPEG once.

Record keys: ``frames`` (list of ``{data, width, height, frame, t, phash}``); the decoded arrays are
removed, so later stages move only the JPEG bytes.
"""

from __future__ import annotations

import numpy as np

from pipelines.core.stage import drop
from pipelines.video_interleave.config import FrameConfig

STAGE = "frames"
_HEAVY = ("thumbs", "thumb_idx", "cands", "cand_idx", "scores_change")


def phash(rgb: np.ndarray) -> int:
    """64-bit DCT perceptual hash."""
    import cv2

    g = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(g.astype(np.float32))[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def target_size(w: int, h: int, side: int, multiple: int) -> tuple[int, int]:
    """(width, height): longest side at most ``side`` (never upscaled), both multiples of ``multiple``."""
    s = min(1.0, side / max(w, h))
    return max(multiple, int(w * s) // multiple * multiple), max(multiple, int(h * s) // multiple * multiple)


def resize_to(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale to cover ``size`` keeping the aspect, then centre-crop to it."""
    import cv2

    h, w = rgb.shape[:2]
    tw, th = size
    s = max(tw / w, th / h)
    sw, sh = max(tw, round(w * s)), max(th, round(h * s))
    if (sw, sh) != (w, h):
        rgb = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    x, y = (sw - tw) // 2, (sh - th) // 2
    return rgb[y : y + th, x : x + tw]


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def pick_frames(cand_idx: np.ndarray, clip: dict, cfg: FrameConfig) -> list[int]:
    """Positions in ``cand_idx`` to sample: inside the clip, away from cuts, spread evenly."""
    lo = clip["start_frame"] + (cfg.edge_margin_frames if clip.get("cut_before") else 0)
    hi = clip["end_frame"] - (cfg.edge_margin_frames if clip.get("cut_after") else 0)
    ok = np.flatnonzero((cand_idx >= lo) & (cand_idx < hi))
    if len(ok) <= cfg.frames_per_clip:
        return ok.tolist()
    return ok[np.unique(np.linspace(0, len(ok) - 1, cfg.frames_per_clip).round().astype(int))].tolist()


def sample_frames(batch: list[dict], cfg: FrameConfig) -> list[dict]:
    out = []
    for rec in batch:
        c = rec["clip"]
        cands, cidx = rec["cands"], rec["cand_idx"]
        picked = pick_frames(cidx, c, cfg)
        kept, hashes, dropped = [], [], 0
        for p in picked:
            h = phash(cands[p])
            if hashes and hamming(h, hashes[-1]) < cfg.phash_distance:
                dropped += 1
                continue
            kept.append(p)
            hashes.append(h)
        base = {k: v for k, v in rec.items() if k not in _HEAVY}
        if len(kept) < cfg.min_frames:
            reason = "near_duplicate_frames" if dropped else "too_few_frames"
            out.append(drop(rec, STAGE, reason, {"candidates": len(picked), "distinct": len(kept),
                                                 "near_duplicates": dropped}))
            continue
        ch, cw = cands.shape[1:3]
        size = target_size(cw, ch, cfg.frame_side, cfg.multiple)
        fps = c["fps"] or 30.0
        frames = []
        for p, h in zip(kept, hashes):
            img = resize_to(cands[p], size)
            frames.append({"data": encode_jpeg(img, cfg.jpeg_quality), "width": size[0], "height": size[1],
                           "frame": int(cidx[p]), "t": round(int(cidx[p]) / fps, 3), "phash": f"{h:016x}"})
        out.append({**base, "frames": frames, "near_duplicates": dropped})
    return out
