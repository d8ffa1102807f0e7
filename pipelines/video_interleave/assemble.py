"""Stage 7, assemble: ``frame0, change(0,1), frame1, change(1,2), frame2, ...`` as a ``schemas.Sample``.

The first frame is an understanding input; later frames are generation targets and understanding
inputs; change captions carry loss. Subtitle cues that begin between two frames go right after the
earlier frame as ``subtitle`` text (no loss by default). The source records the uri, the clip span,
shot and clip index and each frame's timestamp; the sample's key comes from the uri and the span,
so a re-run writes the same keys.
"""

from __future__ import annotations

from pipelines.video_interleave.config import AssembleConfig
from pipelines.video_interleave.subtitles import cues_between
from schemas import CaptionerInfo, ImageSegment, Sample, Source, TextSegment, make_key

STAGE = "assemble"


def build_sample(rec: dict, cfg: AssembleConfig) -> Sample:
    c, frames, changes = rec["clip"], rec["frames"], rec["changes"]
    segs: list = []
    for i, f in enumerate(frames):
        segs.append(ImageSegment(f["data"], "jpg", f["width"], f["height"], understanding=True, generation=i > 0,
                                 role="frame", provenance={"t": f["t"], "frame": f["frame"], "phash": f["phash"]}))
        if i == len(frames) - 1:
            break
        if cfg.subtitles:
            for text in cues_between(rec.get("subtitles") or [], f["t"], frames[i + 1]["t"]):
                segs.append(TextSegment(text, role="subtitle", loss=cfg.subtitle_loss))
        ch = changes[i]
        segs.append(TextSegment(ch["text"], role="change", loss=True, prompt_id=ch["prompt_id"], status=ch["status"]))
    prompt_ids = tuple(sorted({ch["prompt_id"] for ch in changes}))
    who = rec["captioner"]
    src = Source(uri=rec["uri"], licence=rec.get("licence"), span=(round(c["start_s"], 3), round(c["end_s"], 3)),
                 extra={"shot": c["shot"], "clip": c["index"], "start_frame": c["start_frame"],
                        "end_frame": c["end_frame"], "fps": c["fps"], "frame_times": [f["t"] for f in frames]})
    meta = {"video": rec["video"], "quality": rec.get("quality", {}), "crop": rec.get("crop", {}),
            "near_duplicates": rec.get("near_duplicates", 0)}
    if rec.get("meta"):
        meta["input"] = rec["meta"]
    return Sample(key=make_key(rec["uri"], c["start_frame"], c["end_frame"]), kind="video", segments=tuple(segs),
                  source=src, captioner=CaptionerInfo(who["backend"], who["model"], prompt_ids), meta=meta)


def assemble_samples(batch: list[dict], cfg: AssembleConfig) -> list[dict]:
    return [{"id": r["id"], "input": r["input"], "status": "ok", "sample": build_sample(r, cfg)} for r in batch]
