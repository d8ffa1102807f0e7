"""Stage 1, probe: fetch a remote input, read the header, and decode downscaled frames once, under a time limit.

Decoding touches at most ``max_frames`` frames and keeps two things: a small thumbnail of every
``analysis_stride``-th frame (for shot detection and the motion filters) and, about ``candidate_fps``
times a second, that frame at ``decode_side`` (for frame sampling). Decoding runs in a worker thread
with a deadline: decord and FFmpeg can hang on a broken file, and their calls release the GIL, so
the stage gives up on a stuck video and goes on with the next (the stuck thread is abandoned).

Decoders, in order (``decoder: decord``; ``decoder: opencv`` runs OpenCV alone):

1. PyAV (FFmpeg), the analysis pass. On the shared sample videos a plain decord pass at
   ``decode_side`` costs about as much as OpenCV decoding and converting every frame at full size:
   decord reconstructs and scales every frame, also those the analysis skips. With
   ``analysis_stride`` > 1 this pass asks FFmpeg not to reconstruct non-reference frames
   (``skip_frame=NONREF``; in x264 output about every other frame), decodes with frame threads, and
   builds thumbnails from the subsampled YUV planes instead of converting whole frames to RGB; only
   candidates are converted, by one reused swscale context, straight to ``decode_side``. Frame numbers
   are the rank of each frame's timestamp among the demuxed packets' (every packet shown earlier is
   demuxed before a frame comes out), so they are exact display indices. Where skipped runs are longer
   than the stride, cuts would be placed less exactly, so from the first such run on every frame is
   decoded. The deblocking filter is never skipped: that would be faster, but the candidates are the
   frames that get written, and without it they drift from the true picture (down to 29 dB PSNR on
   VP8).
2. decord, when PyAV cannot open the file, finds packets without timestamps (raw streams), or stops
   well before the end.
3. OpenCV, when decord fails too.
So decord is still the decoder for any file the fast pass cannot vouch for, and OpenCV the last
resort, as the pipeline's contract asks; ``video.decoder`` records which one ran.

Record keys added: ``video`` (codec, width, height, fps, frames, duration_s, decoder, frames_decoded),
``thumbs`` / ``thumb_idx`` (analysis thumbnails and their frame indices), ``cands`` / ``cand_idx``
(candidate frames, RGB uint8) and ``subtitles`` (cues from a sidecar file).
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from dataclasses import dataclass
from functools import partial

import numpy as np

from ..inputs import FetchError, fetch_to_temp, is_remote, local_path
from ..stage import drop, fail
from .config import ProbeConfig
from .subtitles import read_sidecar

STAGE = "probe"
_CHUNK = 32


class DecodeError(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


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


def read_header(path: str) -> dict:
    """Container and stream facts from the header (PyAV); raises DecodeError when there is no video."""
    import av

    try:
        with av.open(path, metadata_errors="ignore") as c:
            if not c.streams.video:
                kinds = sorted({s.type for s in c.streams})
                raise DecodeError("no_video_stream",
                                  f"the file has no video stream (streams: {', '.join(kinds) or 'none'})")
            s = c.streams.video[0]
            fps = float(s.average_rate or s.guessed_rate or 0)
            dur = float(s.duration * s.time_base) if s.duration else (c.duration or 0) / 1e6
            frames = int(s.frames or round(dur * fps))
            return {"codec": s.codec_context.name, "width": s.codec_context.width,
                    "height": s.codec_context.height, "fps": fps, "frames": frames, "duration_s": dur}
    except DecodeError:
        raise
    except EOFError:
        raise DecodeError("no_frames", "the file ends before its first frame (empty or cut off)") from None
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        raise DecodeError("unreadable", f"not a readable media file ({type(e).__name__}: {e})") from None


class _Collector:
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


class _NoTimestamps(Exception):
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
        fps = float(s.average_rate or s.guessed_rate or 0)
        cc.thread_type, cc.thread_count = "AUTO", cfg.decode_threads
        stride = cfg.analysis_stride
        skipping = stride > 1
        if skipping:
            cc.skip_frame = "NONREF"
        dw, dh = scaled_size(w, h, cfg.decode_side)
        col = _Collector(cfg, fps, dw, dh)
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
                    raise _NoTimestamps
                bisect.insort(pts, pkt.pts)
                packets += 1
            try:
                frames = cc.decode(pkt)
            except av.FFmpegError as e:
                error = error or f"PyAV error near packet {packets}: {str(e)[:200]}"
                continue
            for f in frames:
                if f.pts is None:
                    raise _NoTimestamps
                # every packet shown before this frame is decoded before it, so its rank is its index
                i = bisect.bisect_left(pts, f.pts)
                if i >= cfg.max_frames:
                    stopped = True
                    break
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


def decode_decord(path: str, cfg: ProbeConfig, size: tuple[int, int] | None, cancel: threading.Event) -> Decoded:
    import decord

    try:
        if size is None:
            h, w = decord.VideoReader(path, ctx=decord.cpu(0))[0].shape[:2]
        else:
            w, h = size
        dw, dh = scaled_size(w, h, cfg.decode_side)
        vr = decord.VideoReader(path, ctx=decord.cpu(0), width=dw, height=dh, num_threads=cfg.decode_threads)
        n, fps = len(vr), float(vr.get_avg_fps())
    except (decord.DECORDError, RuntimeError, IndexError) as e:
        raise DecodeError("decode_error", f"decord cannot open the file: {str(e).splitlines()[0][:200]}") from None
    if n <= 0:
        raise DecodeError("no_frames", "the video has no frames")
    col = _Collector(cfg, fps, dw, dh)
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
        dw, dh = scaled_size(w, h, cfg.decode_side)
        col = _Collector(cfg, fps, dw, dh)
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
                if (bgr.shape[1], bgr.shape[0]) != (dw, dh):
                    bgr = cv2.resize(bgr, (dw, dh), interpolation=cv2.INTER_AREA)
                col.add(i, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            i += 1
        return col.result("opencv", fps, n if n > 0 else i, w, h, None)
    finally:
        cap.release()


def decode_video(path: str, cfg: ProbeConfig, header: dict | None, cancel: threading.Event) -> Decoded:
    """PyAV's analysis pass, then decord, then OpenCV (``decoder: opencv``: OpenCV alone); see the module doc."""
    errors = []
    size = (header["width"], header["height"]) if header and header.get("width") else None
    header_frames = (header or {}).get("frames", 0)
    if cfg.decoder == "decord":
        for name, fn in (("pyav", lambda: decode_pyav(path, cfg, cancel)),
                         ("decord", lambda: decode_decord(path, cfg, size, cancel))):
            if cancel.is_set():
                break
            try:
                d = fn()
            except _NoTimestamps:
                continue
            except DecodeError as e:
                errors.append(str(e))
                continue
            if (d.error is None and name == "decord") or _complete(d, cfg, header_frames):
                return d
            errors.append(d.error or f"{name} stopped at frame {int(d.thumb_idx[-1]) + 1} of {d.frames}")
    if cancel.is_set():
        raise DecodeError("timeout", "decoding ran past the time limit")
    try:
        d = decode_opencv(path, cfg, cancel)
    except DecodeError as e:
        raise DecodeError(e.kind, "; ".join([*errors, str(e)])) from None
    if len(d.thumb_idx) == 0:
        raise DecodeError("no_frames", "; ".join([*errors, "no frame could be decoded"]))
    return d


def _complete(d: Decoded, cfg: ProbeConfig, header_frames: int = 0) -> bool:
    """Did decoding reach (nearly) the end? The header's count counts too: a cut-off file can fool the decoder."""
    expect = min(max(d.frames, header_frames), cfg.max_frames)
    got = int(d.thumb_idx[-1]) + 1 if len(d.thumb_idx) else 0
    return expect <= 0 or got + cfg.analysis_stride >= cfg.min_decoded_fraction * expect


def run_with_deadline(fn, timeout_s: float):
    """Run ``fn(cancel_event)`` in a daemon thread; returns its result, or raises DecodeError('timeout')."""
    box: dict = {}
    cancel = threading.Event()

    def work():
        try:
            box["result"] = fn(cancel)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = e

    t = threading.Thread(target=work, name="braid-decode", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        cancel.set()
        raise DecodeError("timeout", f"decoding took longer than {timeout_s:g} s; the video was skipped")
    if "error" in box:
        raise box["error"]
    return box["result"]


def _probe_one(cancel: threading.Event, cfg: ProbeConfig, path: str) -> tuple[dict | None, Decoded | None]:
    header = None
    try:
        header = read_header(path)
    except DecodeError as e:
        if e.kind == "no_video_stream":
            raise
        header_error = e
    else:
        header_error = None
    if header:
        w, h = header["width"], header["height"]
        if max(w, h) > cfg.max_side or w * h > cfg.max_pixels:
            return {"reason": "resolution_too_large", "scores": {"width": w, "height": h},
                    "detail": f"{w}x{h} is over max_side {cfg.max_side} / max_pixels {cfg.max_pixels}"}, None
        if cfg.on_long == "filter" and header["frames"] > cfg.max_frames:
            return {"reason": "too_long", "scores": {"frames": header["frames"], "max_frames": cfg.max_frames},
                    "detail": f"{header['frames']} frames is over the cap of {cfg.max_frames}"}, None
    try:
        d = decode_video(path, cfg, header, cancel)
    except DecodeError as e:
        if header_error and e.kind == "decode_error":
            raise DecodeError(header_error.kind, f"{header_error}; {e}") from None
        raise
    if cancel.is_set():
        raise DecodeError("timeout", "decoding ran past the time limit")
    header_frames = (header or {}).get("frames", 0)
    if not _complete(d, cfg, header_frames):
        got = int(d.thumb_idx[-1]) + 1
        want = max(d.frames, header_frames)
        raise DecodeError("truncated", f"only {got} of {want} frames decode (truncated or corrupt file)"
                          + (f"; {d.error}" if d.error else ""))
    if cfg.on_long == "filter" and d.frames > cfg.max_frames:
        return {"reason": "too_long", "scores": {"frames": d.frames, "max_frames": cfg.max_frames},
                "detail": f"{d.frames} frames is over the cap of {cfg.max_frames}"}, None
    info = {"codec": (header or {}).get("codec", "unknown"), "width": d.width, "height": d.height,
            "fps": d.fps or (header or {}).get("fps", 0.0), "frames": d.frames,
            "duration_s": d.frames / d.fps if d.fps else (header or {}).get("duration_s", 0.0),
            "decoder": d.decoder, "frames_decoded": min(d.frames, cfg.max_frames) if d.error is None
            else int(d.thumb_idx[-1]) + 1,
            "truncated": d.frames > cfg.max_frames}
    return info, d


def probe_videos(batch: list[dict], cfg: ProbeConfig) -> list[dict]:
    """Probe and decode each video; bad files end failed or filtered with the reason."""
    out = []
    for rec in batch:
        uri, tmp = rec["uri"], None
        t0 = time.monotonic()
        try:
            if is_remote(uri):
                tmp = fetch_to_temp(uri, cfg.fetch_max_bytes, min(cfg.fetch_timeout_s, cfg.time_limit_s))
                path = str(tmp)
            else:
                path = local_path(uri)
                if not os.path.isfile(path):
                    out.append(fail(rec, STAGE, "not_found", f"input file does not exist: {uri}"))
                    continue
            left = max(0.001, cfg.time_limit_s - (time.monotonic() - t0))
            info, d = run_with_deadline(partial(_probe_one, cfg=cfg, path=path), left)
        except FetchError as e:
            out.append(fail(rec, STAGE, e.kind, str(e)))
            continue
        except DecodeError as e:
            out.append(fail(rec, STAGE, e.kind, str(e)))
            continue
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        if d is None:
            out.append(drop(rec, STAGE, info["reason"], info["scores"], info["detail"]))
            continue
        subs = read_sidecar(path) if cfg.subtitles and not is_remote(uri) else []
        out.append({**rec, "video": info, "thumbs": d.thumbs, "thumb_idx": d.thumb_idx, "cands": d.cands,
                    "cand_idx": d.cand_idx, "subtitles": subs})
    return out
