"""What ``braid view`` reads from one shard: a compact record per sample (texts, thumbnail paths, scores,
caption statuses) and the thumbnails themselves, written under the view folder. One shard is one unit of work,
so shards are read in parallel worker processes.

A sample record (the JSON the page scripts hold)::

    {"key", "kind", "shard": shard number, "uri", "span": [start_s, end_s] | null,
     "segs": [["t", role, text, loss 0/1, status, prompt_id] | ["i", thumb path, width, height, role, flags, t],
     "meta": the sample's meta and captioner as indented JSON (cut at 20,000 characters),
     "scores": {name: number}, "caps": [caption statuses], "image_log": [image-level drops, web documents]}

Scores are the sample's numeric metadata one or two levels deep (``quality.motion``, ``topic.score``) and, per
score name found in the images' provenance, the lowest over the sample's images (``image.clarity``).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

from pipelines.core.thumbs import scale_image
from schemas import ImageSegment, SampleError, ShardError, decode_sample, iter_members

MAX_PIXELS = 64_000_000
META_CHARS = 20_000
SKIP_META = {"image_log", "images_dropped", "extract", "crop", "video", "input"}


def thumbnail(data: bytes, max_side: int) -> tuple[bytes, str] | None:
    """A JPEG (or PNG when the image has transparency) scaled to fit ``max_side``; None when it does not decode.
    A JPEG, PNG or WebP that already fits is kept as it is (browsers show all three)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_PIXELS:
                return None
            if max(im.size) <= max_side and im.format in ("JPEG", "PNG", "WEBP"):
                im.load()  # the whole image decodes: the browser will show it
                return data, {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[im.format]
            return scale_image(im, max_side, quality=82)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def _number(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def sample_scores(sample) -> dict[str, float]:
    """Numeric metadata one or two levels deep, and the lowest image provenance score per name."""
    out: dict[str, float] = {}
    for k, v in sample.meta.items():
        if k in SKIP_META:
            continue
        if (n := _number(v)) is not None:
            out[k] = n
        elif isinstance(v, dict):
            for k2, v2 in v.items():
                if (n := _number(v2)) is not None:
                    out[f"{k}.{k2}"] = n
    for img in sample.images:
        sc = img.provenance.get("scores") if isinstance(img.provenance, dict) else None
        if isinstance(sc, dict):
            for k, v in sc.items():
                if (n := _number(v)) is not None and not k.startswith(("min_", "max_")):
                    name = f"image.{k}"
                    out[name] = min(out.get(name, n), n)
    return out


def _meta_json(sample) -> str:
    doc = {"meta": sample.meta, "captioner": sample.captioner.to_json() if sample.captioner else None,
           "source": sample.source.to_json()}
    text = json.dumps(doc, indent=1, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= META_CHARS else text[:META_CHARS] + "\n... (cut)"


def scan_shard(job: tuple) -> dict:
    """Read one shard: ``job`` = (shard path, shard number, view folder, thumbnail side, keys to keep or None).

    Returns {"samples": [record, ...], "problems": [one sentence, ...]}; thumbnails are written to
    ``<view>/thumbs/<shard number>/``.
    """
    path, number, view, side, keep = job
    thumbs = Path(view) / "thumbs" / f"{number:05d}"
    samples, problems = [], []
    try:
        for key, members in iter_members(path):
            if keep is not None and key not in keep:
                continue
            try:
                sample = decode_sample(key, members)
            except SampleError as e:
                problems.append(f"{path}: {e}")
                continue
            samples.append(sample_record(sample, number, thumbs, side))
    except ShardError as e:
        problems.append(str(e))
    return {"samples": samples, "problems": problems}


def sample_record(sample, number: int, thumbs: Path, side: int) -> dict:
    segs, n_img, caps = [], 0, []
    times = sample.source.extra.get("frame_times") if isinstance(sample.source.extra, dict) else None
    for seg in sample.segments:
        if isinstance(seg, ImageSegment):
            rel = None
            got = thumbnail(seg.data, side)
            if got is not None:
                thumbs.mkdir(parents=True, exist_ok=True)
                name = f"{sample.key}.{n_img:03d}.{got[1]}"
                (thumbs / name).write_bytes(got[0])
                rel = f"thumbs/{number:05d}/{name}"
            t = seg.provenance.get("t") if isinstance(seg.provenance, dict) else None
            if t is None and isinstance(times, list) and n_img < len(times):
                t = times[n_img]
            flags = ("u" if seg.understanding else "") + ("g" if seg.generation else "")
            segs.append(["i", rel, seg.width, seg.height, seg.role, flags, _number(t)])
            n_img += 1
        else:
            segs.append(["t", seg.role, seg.text, int(seg.loss), seg.status or "", seg.prompt_id or ""])
            if seg.status:
                caps.append(seg.status)
    log = sample.meta.get("image_log") if isinstance(sample.meta, dict) else None
    return {
        "key": sample.key, "kind": sample.kind, "shard": number, "uri": sample.source.uri,
        "span": list(sample.source.span) if sample.source.span else None,
        "segs": segs, "meta": _meta_json(sample), "scores": sample_scores(sample), "caps": sorted(set(caps)),
        "image_log": [e for e in log if isinstance(e, dict)] if isinstance(log, list) else [],
    }


def search_text(rec: dict) -> str:
    """What the search box matches: key, uri and every text, lower-cased."""
    texts = " ".join(s[2] for s in rec["segs"] if s[0] == "t")
    return f"{rec['key']} {rec['uri']} {texts}".lower()
