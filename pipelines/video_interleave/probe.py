"""Stage 1, probe: fetch a remote input, read the header, and decode downscaled frames once, under a time limit.

Decoding touches at most ``max_frames`` frames and keeps two things: a small thumbnail of every
``analysis_stride``-th frame (for shot detection and the motion filters) and, about ``candidate_fps``
times a second, that frame at ``decode_side`` (for frame sampling). Decoding runs in a worker thread
with a deadline: decord and FFmpeg can hang on a broken file, and their calls release the GIL, so
the stage gives up on a stuck video and goes on with the next (the stuck thread is abandoned).

Decoders, in order (``decoder: decord``; ``decoder: opencv`` runs OpenCV alone):

1. PyAV (FFmpeg), the analysis pass (``decode_pyav.py``): reference frames only when striding,
   thumbnails from the YUV planes, candidates converted straight to ``decode_side``.
2. decord (``decode.py``), when PyAV cannot open the file, finds packets without timestamps (raw
   streams), or stops well before the end.
3. OpenCV (``decode.py``), when decord fails too.
So decord is still the decoder for any file the fast pass cannot vouch for, and OpenCV the last
resort, as the pipeline's contract asks; ``video.decoder`` records which one ran.

Record keys added: ``video`` (codec, width, height, fps, frames, duration_s, decoder, frames_decoded),
``thumbs`` / ``thumb_idx`` (analysis thumbnails and their frame indices), ``cands`` / ``cand_idx``
(candidate frames, RGB uint8) and ``subtitles`` (cues from a sidecar file).
"""

from __future__ import annotations

import os
import threading
import time
from functools import partial

from pipelines.core.inputs import is_remote, local_path
from pipelines.core.stage import drop, fail
from pipelines.net.download import DownloadError, download_to_temp
from pipelines.net.fetch import FetchConfig
from pipelines.video_interleave.config import ProbeConfig
from pipelines.video_interleave.decode import Decoded, DecodeError, TooLarge, decode_decord, decode_opencv
from pipelines.video_interleave.decode_pyav import NoTimestamps, decode_pyav
from pipelines.video_interleave.subtitles import read_sidecar

STAGE = "probe"


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
            except NoTimestamps:
                continue
            except TooLarge:
                raise  # no other decoder gets to decode it in full
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
    except TooLarge:
        raise
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
    except TooLarge as e:
        return {"reason": "resolution_too_large", "scores": {"width": e.width, "height": e.height, "frame": e.index},
                "detail": str(e)}, None
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


def probe_videos(batch: list[dict], cfg: ProbeConfig, fetch: FetchConfig | None = None) -> list[dict]:
    """Probe and decode each video; bad files end failed or filtered with the reason.

    Remote videos are downloaded through the guarded path (``pipelines.net.download``, settings from
    ``fetch``) within ``time_limit_s`` (and ``fetch_timeout_s``); decoding gets what is left of it.
    """
    out = []
    for rec in batch:
        uri, tmp = rec["uri"], None
        t0 = time.monotonic()
        try:
            if is_remote(uri):
                tmp = download_to_temp(uri, cfg.fetch_max_bytes, min(cfg.fetch_timeout_s, cfg.time_limit_s), fetch)
                path = str(tmp)
            else:
                path = local_path(uri)
                if not os.path.isfile(path):
                    out.append(fail(rec, STAGE, "not_found", f"input file does not exist: {uri}"))
                    continue
            left = max(0.001, cfg.time_limit_s - (time.monotonic() - t0))
            info, d = run_with_deadline(partial(_probe_one, cfg=cfg, path=path), left)
        except DownloadError as e:
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
