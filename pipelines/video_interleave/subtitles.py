"""WebVTT and SRT subtitle files: cues as (start_s, end_s, text), and the sidecar file beside a video."""

from __future__ import annotations

import re
from pathlib import Path

_TIME = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})")
_TAG = re.compile(r"<[^>]+>")


def _seconds(m: re.Match) -> float:
    h, mi, s, ms = m.groups()
    return int(h or 0) * 3600 + int(mi) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000


def parse_subtitles(text: str) -> list[tuple[float, float, str]]:
    """Cues of a WebVTT or SRT document, in file order; markup tags and cue settings removed."""
    cues = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n")):
        lines = [ln for ln in block.strip().split("\n") if ln.strip()]
        for i, line in enumerate(lines):
            if "-->" in line:
                left, right = line.split("-->", 1)
                a, b = _TIME.search(left), _TIME.search(right)
                if a and b:
                    body = " ".join(_TAG.sub("", ln).strip() for ln in lines[i + 1 :]).strip()
                    if body:
                        cues.append((_seconds(a), _seconds(b), body))
                break
    return cues


def find_sidecar(video_path: str | Path) -> Path | None:
    """A ``.vtt`` or ``.srt`` file with the video's stem in the same folder (``clip.vtt``, ``clip.en.vtt``)."""
    p = Path(video_path)
    for ext in (".vtt", ".srt"):
        cand = p.with_suffix(ext)
        if cand.is_file():
            return cand
    for ext in (".vtt", ".srt"):
        found = sorted(p.parent.glob(f"{p.stem}.*{ext}"))
        if found:
            return found[0]
    return None


def read_sidecar(video_path: str | Path) -> list[tuple[float, float, str]]:
    side = find_sidecar(video_path)
    if side is None:
        return []
    try:
        return parse_subtitles(side.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return []


def cues_between(cues: list, start: float, end: float) -> list[str]:
    """Texts of the cues that begin in [start, end)."""
    return [c[2] for c in cues if start <= c[0] < end]
