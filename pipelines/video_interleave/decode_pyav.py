"""The PyAV (FFmpeg) analysis pass: the first decoder ``probe.py`` tries.

On the shared sample videos a plain decord pass at ``decode_side`` costs about as much as OpenCV
decoding and converting every frame at full size: decord reconstructs and scales every frame, also
those the analysis skips. With ``analysis_stride`` > 1 this pass asks FFmpeg not to reconstruct
non-reference frames (``skip_frame=NONREF``; in x264 output about every other frame), decodes with
frame threads, and builds thumbnails from the subsampled YUV planes instead of converting whole frames
to RGB; only candidates are converted, by one reused swscale context, straight to ``decode_side``.
Frame numbers are the rank of each frame's timestamp among the demuxed packets' (every packet shown
earlier is demuxed before a frame comes out), so they are exact display indices. Where skipped runs
are longer than the stride, cuts would be placed less exactly, so from the first such run on every
frame is decoded. The deblocking filter is never skipped: that would be faster, but the candidates are
the frames that get written, and without it they drift from the true picture (down to 29 dB PSNR on
VP8).

Every decoded frame's size is checked against the limits, as a stream can switch to a larger size after
its header (``TooLarge`` stops decoding at the first such frame, and ``probe.py`` filters the video).

Packets or frames without timestamps (raw streams) raise ``NoTimestamps``; then, as on a ``DecodeError``
or a pass that stops well before the end, ``probe.py`` goes on to decord.
"""

from __future__ import annotations

import bisect
import threading

import numpy as np

from pipelines.video_interleave.config import ProbeConfig
from pipelines.video_interleave.decode import Collector, Decoded, DecodeError, check_frame_size, scaled_size


def _plane(frame, i: int) -> np.ndarray:
    p = frame.planes[i]
    return np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width]


def thumb_ycc(frame, tw: int, th: int) -> np.ndarray:
    """(th, tw, 3) Y, Cr, Cb thumbnail of a yuv420p/yuvj420p PyAV frame, straight from its planes."""
    import cv2

    # every thumbnail pixel still averages at least 4x4 samples of the subsampled plane
    d = max(1, min(frame.width // tw, frame.height // th) // 4)
    y, u, v = (
        cv2.resize(np.ascontiguousarray(_plane(frame, i)[::d, ::d]), (tw, th), interpolation=cv2.INTER_AREA)
        for i in range(3)
    )
    return np.dstack([y, v, u])


def ycc_to_rgb(ycc: np.ndarray, limited: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) Y, Cr, Cb thumbnails to RGB (BT.601); those flagged ``limited`` are in MPEG range.

    Converting all thumbnails of a video in one call costs a fraction of converting each as it comes.
    """
    import cv2

    if limited.any():
        f = ycc[limited].astype(np.float32)
        f[..., 0] = (f[..., 0] - 16.0) * (255.0 / 219.0)
        f[..., 1:] = (f[..., 1:] - 128.0) * (255.0 / 224.0) + 128.0
        ycc = ycc.copy()
        ycc[limited] = np.clip(f + 0.5, 0, 255).astype(np.uint8)
    n, h, w = ycc.shape[:3]
    return cv2.cvtColor(ycc.reshape(n * h, w, 3), cv2.COLOR_YCrCb2RGB).reshape(n, h, w, 3)


class NoTimestamps(Exception):
    pass


def decode_pyav(path: str, cfg: ProbeConfig, cancel: threading.Event) -> Decoded:
    """The analysis pass: reference frames only (when striding), thumbnails from planes, candidates via swscale."""
    import av
    from av.video.reformatter import VideoReformatter

    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        raise DecodeError("decode_error", f"PyAV cannot open the file: {str(e)[:200]}") from None
    with container:
        if not container.streams.video:
            raise DecodeError("no_video_stream", "the file has no video stream")
        s = container.streams.video[0]
        cc = s.codec_context
        w, h = cc.width, cc.height
        if w <= 0 or h <= 0:
            raise DecodeError("no_frames", "PyAV finds no video frames")
        check_frame_size(w, h, -1, cfg)
        fps = float(s.average_rate or s.guessed_rate or 0)
        cc.thread_type, cc.thread_count = "AUTO", cfg.decode_threads
        stride = cfg.analysis_stride
        skipping = stride > 1
        if skipping:
            cc.skip_frame = "NONREF"
        dw, dh = scaled_size(w, h, cfg.decode_side)
        col = Collector(cfg, fps, dw, dh)
        rf = VideoReformatter()
        pts: list[int] = []  # sorted presentation timestamps of the packets demuxed so far
        prev, last = None, -(1 << 62)
        packets, error, stopped = 0, None, False
        limited: list[bool] = []  # per thumbnail: Y, Cr, Cb in MPEG (limited) range
        for pkt in container.demux(s):
            if cancel.is_set():
                stopped = True
                break
            if pkt.size:
                if pkt.pts is None:
                    raise NoTimestamps
                bisect.insort(pts, pkt.pts)
                packets += 1
            try:
                frames = cc.decode(pkt)
            except av.FFmpegError as e:
                error = error or f"PyAV error near packet {packets}: {str(e)[:200]}"
                continue
            for f in frames:
                if f.pts is None:
                    raise NoTimestamps
                # every packet shown before this frame is decoded before it, so its rank is its index
                i = bisect.bisect_left(pts, f.pts)
                if i >= cfg.max_frames:
                    stopped = True
                    break
                check_frame_size(f.width, f.height, i, cfg)  # the stream may change size after its header
                if skipping and prev is not None and i - prev > stride:
                    cc.skip_frame, skipping = "DEFAULT", False  # runs of non-reference frames longer than the stride
                prev = i
                if i < last + stride:
                    continue
                last = i
                if f.format.name in ("yuv420p", "yuvj420p"):
                    thumb = thumb_ycc(f, col.tw, col.th)
                    limited.append(f.format.name == "yuv420p" and f.color_range != 2)
                else:  # other layouts and depths: swscale to full-range planar YCbCr
                    planes = rf.reformat(f, col.tw, col.th, "yuvj444p", interpolation="AREA").to_ndarray()
                    thumb = np.ascontiguousarray(planes[[0, 2, 1]].transpose(1, 2, 0))
                    limited.append(False)
                cand = None
                if col.wants_cand():
                    cand = np.ascontiguousarray(
                        rf.reformat(f, dw, dh, "rgb24", interpolation="AREA").to_ndarray())
                col.add_thumb(i, thumb, cand)
            if stopped:
                break
        if stopped:  # the header's count; packets were not all seen
            dur = float(s.duration * s.time_base) if s.duration else (container.duration or 0) / 1e6
            n = max(packets, int(s.frames or round(dur * fps)))
        else:
            n = packets
    if not col.thumb_idx:
        raise DecodeError("no_frames", "PyAV decodes no frames" + (f" ({error})" if error else ""))
    d = col.result("pyav", fps, n, w, h, error)
    d.thumbs = ycc_to_rgb(d.thumbs, np.asarray(limited, bool))
    return d
