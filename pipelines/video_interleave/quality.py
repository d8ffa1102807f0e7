"""Stage 4, quality: duration, resolution, clarity, brightness and motion (static, shaky) filters.

Every score is computed and recorded; the first failing check, in that order, is the reason a clip is
filtered, and the scores go into the manifest. Kept clips carry them in ``quality`` (and into the
sample's ``meta``).
"""

from __future__ import annotations

import numpy as np

from pipelines.core.stage import drop
from pipelines.core.thumbs import THUMBS, frame_thumbs
from pipelines.video_interleave.config import QualityConfig
from pipelines.video_interleave.shots import grey

STAGE = "quality"


def sharpness(frames: np.ndarray) -> float:
    """Median variance of the Laplacian over up to 8 of the frames, in grey (higher is sharper)."""
    import cv2

    if len(frames) == 0:
        return 0.0
    frames = frames[np.linspace(0, len(frames) - 1, min(len(frames), 8)).round().astype(int)]
    return float(np.median([cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.CV_32F).var() for f in frames]))


def motion(g: np.ndarray, steps_half_s: int) -> float:
    """Largest share of thumbnail pixels that change by more than 12 grey levels over about half a second."""
    if len(g) < 2:
        return 0.0
    k = max(1, min(steps_half_s, len(g) - 1))
    return float((np.abs(g[k:] - g[:-k]) > 12).mean((1, 2)).max())


def shake(g: np.ndarray) -> float:
    """Mean change of the frame-to-frame global shift (phase correlation), in thumbnail widths."""
    import cv2

    if len(g) < 3:
        return 0.0
    win = cv2.createHanningWindow((g.shape[2], g.shape[1]), cv2.CV_32F)
    shifts = np.array([cv2.phaseCorrelate(g[i], g[i + 1], win)[0] for i in range(len(g) - 1)], np.float32)
    return float(np.abs(np.diff(shifts, axis=0)).sum(1).mean() / g.shape[2])


def score_clip(rec: dict) -> dict:
    c, v = rec["clip"], rec["video"]
    g = grey(rec["thumbs"])
    sb = rec["crop"]["source_box"]
    fps = c["fps"] or 30.0
    tidx = rec["thumb_idx"]
    step = int(tidx[1] - tidx[0]) if len(tidx) > 1 else 1
    return {
        "duration_s": round((c["end_frame"] - c["start_frame"]) / fps, 3),
        "min_side": int(min(sb[2] - sb[0], sb[3] - sb[1])) if sb else int(min(v["width"], v["height"])),
        "sharpness": round(sharpness(rec["cands"]), 2),
        "brightness": round(float(g.mean()) if g.size else 0.0, 2),
        "motion": round(motion(g, max(1, round(fps / step / 2))), 4),
        "shake": round(shake(g), 4),
    }


def _reason(s: dict, cfg: QualityConfig) -> tuple[str, str] | None:
    checks = [
        (s["duration_s"] < cfg.min_duration_s, "too_short", f"{s['duration_s']} s < {cfg.min_duration_s} s"),
        (s["min_side"] < cfg.min_side, "low_resolution", f"side {s['min_side']} px < {cfg.min_side} px"),
        (s["brightness"] < cfg.min_brightness, "too_dark", f"brightness {s['brightness']} < {cfg.min_brightness}"),
        (s["brightness"] > cfg.max_brightness, "too_bright", f"brightness {s['brightness']} > {cfg.max_brightness}"),
        (s["sharpness"] < cfg.min_sharpness, "blurry", f"sharpness {s['sharpness']} < {cfg.min_sharpness}"),
        (s["motion"] < cfg.min_motion, "static", f"motion {s['motion']} < {cfg.min_motion}"),
        (s["shake"] > cfg.max_shake, "shaky", f"shake {s['shake']} > {cfg.max_shake}"),
    ]
    return next(((r, d) for bad, r, d in checks if bad), None)


def filter_clips(batch: list[dict], cfg: QualityConfig) -> list[dict]:
    out = []
    for rec in batch:
        s = score_clip(rec)
        bad = _reason(s, cfg)
        if bad:  # with a few frames and its time span, so a person can see what the threshold threw away
            c = rec["clip"]
            out.append({**drop(rec, STAGE, bad[0], s, bad[1]), THUMBS: frame_thumbs(rec["cands"]),
                        "span": [c.get("start_s"), c.get("end_s")]})
        else:
            out.append({**rec, "quality": s})
    return out
