"""Synthetic test videos with known content: cuts at known frames, motion, static, dark and letterboxed scenes.

``write_scenes(path, [Scene("moving", 40), Scene("static", 30)], fps=30)`` renders the scenes back to
back and writes H.264 (PyAV, libx264) or MPEG-4 part 2 (OpenCV ``mp4v``); it returns the first frame
index of each scene, so tests know exactly where the cuts are. Used by tests, benchmarks and the demo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

KINDS = ("moving", "pan", "static", "dark", "letterbox", "pillarbox")


@dataclass(frozen=True)
class Scene:
    """kind: one of ``KINDS``; frames: length; seed: picks the palette and texture (distinct per scene)."""

    kind: str
    frames: int
    seed: int = 0


def _texture(h: int, w: int, seed: int, block: int = 8) -> np.ndarray:
    """A sharp, colourful block texture (so sharpness and colour histograms are meaningful)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 216, size=3)
    hb, wb = -(-h // block), -(-w // block)
    blocks = np.clip(base + rng.integers(-40, 41, size=(hb, wb, 3)), 0, 255).astype(np.uint8)
    return np.repeat(np.repeat(blocks, block, 0), block, 1)[:h, :w]


def _draw_object(img: np.ndarray, i: int, n: int, seed: int) -> None:
    h, w = img.shape[:2]
    side = max(4, min(h, w) // 4)
    x = int((w - side) * (i / max(1, n - 1)))
    y = (h - side) // 2 + int((h // 6) * np.sin(i / 6.0))
    color = (250, 250, 250) if seed % 2 == 0 else (20, 20, 240)
    img[y : y + side, x : x + side] = color


def render_scene(scene: Scene, width: int, height: int) -> np.ndarray:
    """(frames, height, width, 3) uint8 RGB."""
    if scene.kind not in KINDS:
        raise ValueError(f"scene kind must be one of {KINDS}, not {scene.kind!r}")
    n = scene.frames
    out = np.empty((n, height, width, 3), np.uint8)
    if scene.kind in ("letterbox", "pillarbox"):
        out[:] = 0
        if scene.kind == "letterbox":
            bar = height // 8
            inner = render_scene(Scene("moving", n, scene.seed), width, height - 2 * bar)
            out[:, bar : height - bar] = inner
        else:
            bar = width // 8
            inner = render_scene(Scene("moving", n, scene.seed), width - 2 * bar, height)
            out[:, :, bar : width - bar] = inner
        return out
    pad = n * 3 if scene.kind == "pan" else 0
    tex = _texture(height, width + pad, 1000 + scene.seed)
    for i in range(n):
        if scene.kind == "pan":
            frame = tex[:, 3 * i : 3 * i + width].copy()
        else:
            frame = tex[:, :width].copy()
        if scene.kind in ("moving", "dark"):
            _draw_object(frame, i, n, scene.seed)
        if scene.kind == "dark":
            frame = (frame.astype(np.uint16) * 2 // 25).astype(np.uint8)  # about 8% brightness
        out[i] = frame
    return out


def write_frames(path: str | Path, frames: np.ndarray, fps: float = 30.0, codec: str = "h264") -> Path:
    """Write RGB frames as ``h264`` (PyAV, libx264, yuv420p) or ``mp4v`` (OpenCV)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _n, h, w = frames.shape[:3]
    if codec == "h264":
        from fractions import Fraction

        import av

        with av.open(str(path), "w") as c:
            s = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            s.options = {"preset": "ultrafast", "crf": "20", "g": str(round(fps))}
            for f in frames:
                for pkt in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                    c.mux(pkt)
            for pkt in s.encode():
                c.mux(pkt)
    elif codec == "mp4v":
        import cv2

        vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not vw.isOpened():
            raise RuntimeError(f"OpenCV cannot write mp4v to {path}")
        for f in frames:
            vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        vw.release()
    else:
        raise ValueError(f"codec must be 'h264' or 'mp4v', not {codec!r}")
    return path


def write_scenes(path: str | Path, scenes: list[Scene], fps: float = 30.0, size: tuple[int, int] = (320, 180),
                 codec: str = "h264") -> list[int]:
    """Render ``scenes`` back to back into one video; returns each scene's first frame index (the cuts)."""
    w, h = size
    frames = np.concatenate([render_scene(s, w, h) for s in scenes])
    write_frames(path, frames, fps, codec)
    starts, t = [], 0
    for s in scenes:
        starts.append(t)
        t += s.frames
    return starts


def write_audio_only(path: str | Path, seconds: float = 1.0) -> Path:
    """An AAC-in-MP4 file with no video stream."""
    import av

    path = Path(path)
    rate = 16000
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=rate)
        t = np.arange(int(rate * seconds)) / rate
        pcm = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        for i in range(0, pcm.shape[1], 1024):
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, i : i + 1024]), format="fltp", layout="mono")
            fr.sample_rate = rate
            for pkt in s.encode(fr):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def demo_set(out_dir: str | Path, fps: float = 24.0, size: tuple[int, int] = (320, 180)) -> list[Path]:
    """A few short example clips (scene changes, motion, a letterboxed shot) for the demo."""
    out = Path(out_dir)
    specs = {
        "cuts_and_motion.mp4": [Scene("moving", 48, 1), Scene("pan", 48, 2), Scene("moving", 48, 3)],
        "letterboxed.mp4": [Scene("letterbox", 60, 4)],
        "static_then_moving.mp4": [Scene("static", 40, 5), Scene("moving", 48, 6)],
    }
    paths = []
    for name, scenes in specs.items():
        write_scenes(out / name, scenes, fps, size)
        paths.append(out / name)
    return paths
