"""What every video decoder returns, and the two fallback decoders: decord and OpenCV.

A decoder touches at most ``max_frames`` frames and returns a ``Decoded``: a thumbnail at
``analysis_side`` of every ``analysis_stride``-th frame and, about ``candidate_fps`` times a second,
that frame at ``decode_side`` (gathered by ``Collector``), or raises ``DecodeError`` with a failure
kind. Every frame a decoder sees is checked against ``max_side`` / ``max_pixels`` (``check_frame_size``):
a stream may change size after its header, and a decoder stops at the first frame over the limits.
decord and OpenCV scale frames as FFmpeg decodes them, so for them only the size they report is checked;
the PyAV pass, which runs first, sees every frame's true size. decord and OpenCV decode every analysed frame whole at ``decode_side``; the faster PyAV pass
is in ``decode_pyav.py``, and the order the decoders are tried in is in ``probe.py``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from pipelines.video_interleave.config import ProbeConfig

_CHUNK = 32


class DecodeError(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class TooLarge(DecodeError):
    """A frame is over ``max_side`` / ``max_pixels``: a header that lied, or a stream that changed size."""

    def __init__(self, width: int, height: int, index: int, cfg: ProbeConfig):
        where = "the header" if index < 0 else f"frame {index}"
        super().__init__("resolution_too_large", f"{where} is {width}x{height}, over max_side {cfg.max_side} / "
                                                 f"max_pixels {cfg.max_pixels}; decoding stopped there")
        self.width, self.height, self.index = width, height, index


def check_frame_size(width: int, height: int, index: int, cfg: ProbeConfig) -> None:
    """Raise TooLarge for a frame over the size limits; every decoder calls it on every frame it decodes."""
    if max(width, height) > cfg.max_side or width * height > cfg.max_pixels:
        raise TooLarge(width, height, index, cfg)


@dataclass
class Decoded:
    decoder: str
    fps: float
    frames: int  # as reported by the decoder
    width: int
    height: int
    thumbs: np.ndarray
    thumb_idx: np.ndarray
    cands: np.ndarray
    cand_idx: np.ndarray
    error: str | None = None  # decoding stopped early with this error


def scaled_size(w: int, h: int, side: int) -> tuple[int, int]:
    """Even (width, height) with the longest side at most ``side``, aspect kept (never upscaled)."""
    s = min(1.0, side / max(w, h))
    return max(2, round(w * s / 2) * 2), max(2, round(h * s / 2) * 2)


class Collector:
    """Gathers thumbnails and candidates, in analysis order."""

    def __init__(self, cfg: ProbeConfig, fps: float, dw: int, dh: int):
        self.tw, self.th = scaled_size(dw, dh, cfg.analysis_side)
        self.cand_step = max(1, round((fps or 30.0) / (cfg.analysis_stride * cfg.candidate_fps)))
        self.thumbs, self.thumb_idx, self.cands, self.cand_idx = [], [], [], []

    def wants_cand(self) -> bool:
        return len(self.thumb_idx) % self.cand_step == 0

    def add(self, frame_index: int, rgb: np.ndarray) -> None:
        """A frame decoded at ``decode_side`` (decord, OpenCV)."""
        import cv2

        thumb = cv2.resize(rgb, (self.tw, self.th), interpolation=cv2.INTER_AREA)
        self.add_thumb(frame_index, thumb, rgb if self.wants_cand() else None)

    def add_thumb(self, frame_index: int, thumb: np.ndarray, cand: np.ndarray | None) -> None:
        if cand is not None:
            self.cands.append(cand)
            self.cand_idx.append(frame_index)
        self.thumbs.append(thumb)
        self.thumb_idx.append(frame_index)

    def result(self, decoder: str, fps: float, frames: int, w: int, h: int, error: str | None) -> Decoded:
        empty = np.zeros((0, 1, 1, 3), np.uint8)
        return Decoded(decoder, fps, frames, w, h,
                       np.stack(self.thumbs) if self.thumbs else empty, np.asarray(self.thumb_idx, np.int64),
                       np.stack(self.cands) if self.cands else empty, np.asarray(self.cand_idx, np.int64), error)


def decode_decord(path: str, cfg: ProbeConfig, size: tuple[int, int] | None, cancel: threading.Event) -> Decoded:
    import decord

    try:
        if size is None:
            h, w = decord.VideoReader(path, ctx=decord.cpu(0))[0].shape[:2]
        else:
            w, h = size
        check_frame_size(w, h, -1, cfg)
        dw, dh = scaled_size(w, h, cfg.decode_side)
        vr = decord.VideoReader(path, ctx=decord.cpu(0), width=dw, height=dh, num_threads=cfg.decode_threads)
        n, fps = len(vr), float(vr.get_avg_fps())
    except (decord.DECORDError, RuntimeError, IndexError) as e:
        raise DecodeError("decode_error", f"decord cannot open the file: {str(e).splitlines()[0][:200]}") from None
    if n <= 0:
        raise DecodeError("no_frames", "the video has no frames")
    col = Collector(cfg, fps, dw, dh)
    idx = list(range(0, min(n, cfg.max_frames), cfg.analysis_stride))
    error = None
    for i in range(0, len(idx), _CHUNK):
        if cancel.is_set():
            break
        chunk = idx[i : i + _CHUNK]
        try:
            frames = vr.get_batch(chunk).asnumpy()
        except (decord.DECORDError, RuntimeError, IndexError) as e:
            error = f"decord stopped at frame {chunk[0]} of {n}: {str(e).splitlines()[0][:200]}"
            break
        for j, f in zip(chunk, frames):
            col.add(j, f)
    return col.result("decord", fps, n, w, h, error)


def decode_opencv(path: str, cfg: ProbeConfig, cancel: threading.Event) -> Decoded:
    import cv2

    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise DecodeError("decode_error", "OpenCV cannot open the file")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if w <= 0 or h <= 0:
            raise DecodeError("no_frames", "OpenCV finds no video frames")
        check_frame_size(w, h, -1, cfg)
        dw, dh = scaled_size(w, h, cfg.decode_side)
        col = Collector(cfg, fps, dw, dh)
        limit = min(n, cfg.max_frames) if n > 0 else cfg.max_frames
        i = 0
        while i < limit and not (i % 256 == 0 and cancel.is_set()):
            if i % cfg.analysis_stride:
                if not cap.grab():
                    break
            else:
                ok, bgr = cap.read()
                if not ok:
                    break
                check_frame_size(bgr.shape[1], bgr.shape[0], i, cfg)
                if (bgr.shape[1], bgr.shape[0]) != (dw, dh):
                    bgr = cv2.resize(bgr, (dw, dh), interpolation=cv2.INTER_AREA)
                col.add(i, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            i += 1
        return col.result("opencv", fps, n if n > 0 else i, w, h, None)
    finally:
        cap.release()
