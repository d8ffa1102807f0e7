"""Stage 2, shots: cuts from thumbnail changes, shots into clips; a video record splits into one part per clip.

The change score between consecutive analysed frames is the mean of a colour-histogram distance
(HSV, 16x4x4 bins, half the L1 distance) and the mean absolute pixel difference of the grey
thumbnails, both in 0..1. Steady motion and pans raise the pixel term in every frame alike, so a cut
must also stand out against its neighbourhood (adaptive ratio, as in PySceneDetect's adaptive
detector); a hard threshold catches cuts in quick succession.

Part record keys: ``clip`` (index, shot, start/end frame, start_s/end_s, fps, edges: which ends are
cuts), ``video``, ``uri``, ``licence``, ``meta``, ``subtitles`` (cues in the clip), and the clip's slices
of ``thumbs`` / ``thumb_idx`` / ``cands`` / ``cand_idx``.
"""

from __future__ import annotations

import math

import numpy as np

from pipelines.core.stage import drop, split
from pipelines.video_interleave.config import ShotConfig

STAGE = "shots"
_PASS = ("uri", "licence", "meta", "video")


def colour_hists(thumbs: np.ndarray) -> np.ndarray:
    """(N, 256) normalised HSV histograms (16 hue x 4 saturation x 4 value bins) of RGB thumbnails."""
    import cv2

    n, h, w = thumbs.shape[:3]
    hsv = cv2.cvtColor(thumbs.reshape(n * h, w, 3), cv2.COLOR_RGB2HSV).reshape(n, h * w, 3).astype(np.int32)
    bins = (hsv[..., 0] * 16 // 180) * 16 + (hsv[..., 1] // 64) * 4 + hsv[..., 2] // 64
    counts = np.bincount((bins + 256 * np.arange(n)[:, None]).ravel(), minlength=256 * n).reshape(n, 256)
    return counts / float(h * w)


def grey(thumbs: np.ndarray) -> np.ndarray:
    return thumbs.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def change_scores(thumbs: np.ndarray) -> np.ndarray:
    """Score of each analysed frame against the one before it (first = 0), in 0..1."""
    if len(thumbs) < 2:
        return np.zeros(len(thumbs), np.float32)
    hists = colour_hists(thumbs)
    dh = 0.5 * np.abs(np.diff(hists, axis=0)).sum(1)
    g = grey(thumbs)
    dp = np.abs(np.diff(g, axis=0)).mean((1, 2)) / 255.0
    return np.concatenate([[0.0], 0.5 * (dh + dp)]).astype(np.float32)


def detect_cuts(scores: np.ndarray, steps_per_s: float, cfg: ShotConfig) -> list[int]:
    """Positions (in analysed frames) where a new shot starts."""
    n = len(scores)
    win = max(2, round(cfg.window_s * steps_per_s / 2))
    min_gap = max(1, round(cfg.min_shot_s * steps_per_s))
    cuts: list[int] = []
    for i in range(1, n):
        s = scores[i]
        if s < cfg.min_score:
            continue
        lo, hi = max(1, i - win), min(n, i + win + 1)
        neigh = np.concatenate([scores[lo : i - 1], scores[i + 2 : hi]]) if hi - lo > 3 else scores[lo:hi]
        base = float(neigh.mean()) if len(neigh) else 0.0
        # a neighbouring spike (another cut) must not hide this one: compare with the median too
        base = min(base, float(np.median(neigh))) if len(neigh) else 0.0
        if s >= cfg.hard_score or s >= cfg.ratio * max(base, 1e-3):
            if cuts and i - cuts[-1] < min_gap:
                if s > scores[cuts[-1]]:
                    cuts[-1] = i
                continue
            cuts.append(i)
    return cuts


def _merge_similar(shots: list[tuple[int, int]], hists: np.ndarray, cfg: ShotConfig) -> list[tuple[int, int]]:
    merged = [shots[0]]
    for a, b in shots[1:]:
        pa, pb = merged[-1]
        ha = hists[max(pa, pb - 3) : pb].mean(0)
        hb = hists[a : min(b, a + 3)].mean(0)
        if 0.5 * np.abs(ha - hb).sum() < cfg.merge_distance:
            merged[-1] = (pa, b)
        else:
            merged.append((a, b))
    return merged


def make_clips(thumb_idx: np.ndarray, cuts: list[int], frames: int, fps: float, cfg: ShotConfig,
               shots: list[tuple[int, int]] | None = None) -> list[dict]:
    """Clips (frame spans) from shots; a shot longer than ``max_clip_s`` is split into equal clips."""
    if shots is None:
        bounds = [0, *cuts, len(thumb_idx)]
        shots = [(bounds[k], bounds[k + 1]) for k in range(len(bounds) - 1)]
    clips = []
    for shot_no, (a, b) in enumerate(shots):
        start = int(thumb_idx[a])
        end = int(thumb_idx[b]) if b < len(thumb_idx) else frames
        pieces = max(1, math.ceil((end - start) / fps / cfg.max_clip_s - 1e-9)) if fps > 0 else 1
        edges = np.linspace(start, end, pieces + 1).round().astype(int)
        for p in range(pieces):
            clips.append({"index": len(clips), "shot": shot_no, "start_frame": int(edges[p]),
                          "end_frame": int(edges[p + 1]), "start_s": edges[p] / fps if fps else 0.0,
                          "end_s": edges[p + 1] / fps if fps else 0.0, "fps": fps,
                          "cut_before": p == 0 and shot_no > 0, "cut_after": p == pieces - 1 and shot_no < len(shots) - 1})
    return clips


def split_shots(batch: list[dict], cfg: ShotConfig) -> list[dict]:
    """Each video becomes a split record with one part per clip."""
    out = []
    for rec in batch:
        thumbs, tidx = rec["thumbs"], rec["thumb_idx"]
        v = rec["video"]
        if len(tidx) == 0:
            out.append(drop(rec, STAGE, "no_frames", {"frames": 0}))
            continue
        fps = v["fps"] or 30.0
        # the analysis pass may space frames unevenly (it decodes reference frames only), so take the usual step
        steps_per_s = fps / (max(1.0, float(np.median(np.diff(tidx)))) if len(tidx) > 1 else 1.0)
        scores = change_scores(thumbs)
        cuts = detect_cuts(scores, steps_per_s, cfg)
        bounds = [0, *cuts, len(tidx)]
        shots = [(bounds[k], bounds[k + 1]) for k in range(len(bounds) - 1)]
        if cfg.merge_similar and len(shots) > 1:
            shots = _merge_similar(shots, colour_hists(thumbs), cfg)
        frames_end = min(v["frames"], v["frames_decoded"])
        clips = make_clips(tidx, cuts, frames_end, fps, cfg, shots)
        parts = []
        cidx = rec["cand_idx"]
        for c in clips:
            ts = (tidx >= c["start_frame"]) & (tidx < c["end_frame"])
            cs = (cidx >= c["start_frame"]) & (cidx < c["end_frame"])
            subs = [s for s in rec.get("subtitles", []) if c["start_s"] <= s[0] < c["end_s"]]
            parts.append({**{k: rec.get(k) for k in _PASS}, "clip": c, "subtitles": subs,
                          "thumbs": thumbs[ts], "thumb_idx": tidx[ts], "scores_change": scores[ts],
                          "cands": rec["cands"][cs], "cand_idx": cidx[cs]})
        out.extend(split(rec, parts))
    return out
