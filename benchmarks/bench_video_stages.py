"""Video stages 1-5 (probe/decode, shots, crop, quality, frames; no captioning) against what a user would build
instead: PySceneDetect to find the shots, then decord to read the frames of each shot.

Videos: the real ones in ``../shared/data/videos`` and generated clips with cuts placed at known frames
(``pipelines.video_interleave.synth``), all timed together. Measured in the same run, in alternating order
(ours first in even rounds, last in odd ones), after one untimed warm-up pass of each (page cache, imports):
  ours:          ``analysis_stages`` over every video: JPEG frames per clip, about four;
  pyscenedetect: ``scenedetect.detect(path, ContentDetector())`` (its default downscale), then decord reads
                 as many frames of each video as ours wrote for it, dealt out evenly over the shots found (at
                 most ``frames.frames_per_clip`` per ``shots.max_clip_s`` of shot, as ours samples), decoded
                 straight to our output size and JPEG-encoded the same way;
  decord-64px:   decord decoding every frame at the 64 px thumbnail size (the cost floor for analysing every
                 frame; nothing else done).
Cut recall and precision (a found cut within ``--tolerance`` frames of a true one) for ours and PySceneDetect:
generated clips against the cuts placed, real videos against the cuts marked by eye in
``tests/data/cuts/*.json``. Target: ours >= 3x faster than the PySceneDetect pipeline (median of
``--repeat`` rounds), with recall and precision at least PySceneDetect's.

    python benchmarks/bench_video_stages.py [--video-dir DIR] [--repeat 5] [--synthetic 6]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DIR = ROOT.parent / "shared" / "data" / "videos"
LABELS = ROOT / "tests" / "data" / "cuts"


def real_videos(d: Path) -> dict[str, list[int]]:
    """Path -> cuts marked by eye, for every labelled video found in ``d``."""
    out = {}
    for lab in sorted(LABELS.glob("*.json")):
        meta = json.loads(lab.read_text())
        if (d / meta["video"]).exists():
            out[str(d / meta["video"])] = meta["cuts"]
    return out


def synthetic_videos(root: Path, n: int) -> dict[str, list[int]]:
    """``n`` 640x360 24 fps clips of 4-6 scenes (moving objects, pans, static, letterbox) with their cuts."""
    import numpy as np

    from pipelines.video_interleave.synth import Scene, write_scenes

    rng = np.random.default_rng(7)
    kinds = ("moving", "pan", "static", "moving", "letterbox")
    out = {}
    for i in range(n):
        scenes = [Scene(kinds[int(rng.integers(len(kinds)))], int(rng.integers(30, 96)), 10 * i + k)
                  for k in range(int(rng.integers(4, 7)))]
        path = root / f"synth{i:02d}.mp4"
        out[str(path)] = write_scenes(path, scenes, fps=24.0, size=(640, 360))[1:]
    return out


def ours(paths: list[str], cfg) -> dict:
    """Stages 1-5 over every video; the cuts (first frame of each new shot) come from the shots stage's output."""
    from pipelines.core.stage import apply_stage, new_record
    from pipelines.video_interleave.pipeline import analysis_stages

    stages = analysis_stages(cfg)
    cuts, per_video = {}, {}
    for i, p in enumerate(paths):
        batch = [new_record(f"v{i}", uri=p, licence=None, meta={})]
        for st in stages:
            batch = apply_stage(st, batch)
            if st.name == "shots":
                cuts[p] = sorted(r["clip"]["start_frame"] for r in batch if r.get("clip") and r["clip"]["cut_before"])
        per_video[p] = sum(len(r.get("frames", [])) for r in batch if r["status"] == "ok")
    return {"cuts": cuts, "frames": sum(per_video.values()), "per_video": per_video}


def pyscenedetect_decord(paths: list[str], cfg, budget: dict[str, int]) -> dict:
    """PySceneDetect's shots, then decord reading as many frames of each video as ours wrote (``budget``), spread
    evenly over the shots (at most ours' per-clip count per ``max_clip_s`` of shot), resized and JPEG-encoded."""
    import decord
    import numpy as np
    from scenedetect import ContentDetector, detect

    from pipelines.video_interleave.frames import encode_jpeg, target_size
    from pipelines.video_interleave.probe import read_header

    fc, sc = cfg.frames, cfg.shots
    cuts, frames = {}, 0
    for p in paths:
        scenes = detect(p, ContentDetector())
        h = read_header(p)
        w, hh = target_size(h["width"], h["height"], fc.frame_side, fc.multiple)
        vr = decord.VideoReader(p, ctx=decord.cpu(0), width=w, height=hh)
        fps, n = vr.get_avg_fps() or 30.0, len(vr)
        spans = [(s.frame_num, min(e.frame_num, n)) for s, e in scenes] or [(0, n)]
        cuts[p] = [a for a, _ in spans[1:]]
        caps = [fc.frames_per_clip * max(1, math.ceil((b - a) / fps / sc.max_clip_s)) for a, b in spans]
        ks, left = [0] * len(spans), budget[p]
        while left > 0 and any(k < c for k, c in zip(ks, caps)):  # deal the frames out over the shots in turn
            for j in range(len(spans)):
                if left > 0 and ks[j] < caps[j]:
                    ks[j], left = ks[j] + 1, left - 1
        idx = []
        for (a, b), k in zip(spans, ks):
            if k:
                idx += np.unique(np.linspace(a, b - 1, k + 2)[1:-1].round().astype(int)).tolist()
        if not idx:
            continue
        for img in vr.get_batch(sorted(set(idx))).asnumpy():
            encode_jpeg(img, fc.jpeg_quality)
            frames += 1
    return {"cuts": cuts, "frames": frames}


def decord_thumbs(paths: list[str], side: int) -> dict:
    """Every frame decoded at the thumbnail size, nothing else."""
    import decord

    from pipelines.video_interleave.decode import scaled_size
    from pipelines.video_interleave.probe import read_header

    n = 0
    for p in paths:
        h = read_header(p)
        w, hh = scaled_size(h["width"], h["height"], side)
        vr = decord.VideoReader(p, ctx=decord.cpu(0), width=w, height=hh)
        for i in range(0, len(vr), 64):
            n += len(vr.get_batch(list(range(i, min(len(vr), i + 64)))).asnumpy())
    return {"frames": n}


def match(found: list[int], truth: list[int], tol: int) -> int:
    """True cuts with a found cut within ``tol`` frames (each found cut used once)."""
    free, hits = sorted(found), 0
    for t in sorted(truth):
        near = [f for f in free if abs(f - t) <= tol]
        if near:
            free.remove(min(near, key=lambda f: abs(f - t)))
            hits += 1
    return hits


def cut_scores(found: dict, truth: dict, tol: int) -> dict:
    hits = sum(match(found[p], truth[p], tol) for p in truth)
    n_found, n_true = sum(len(found[p]) for p in truth), sum(len(v) for v in truth.values())
    return {"recall": hits / n_true if n_true else 1.0, "precision": hits / n_found if n_found else 1.0,
            "true": n_true, "found": n_found, "hits": hits}


def timed_alternating(fns: dict, repeat: int) -> dict:
    """Median time of each function over ``repeat`` rounds; odd rounds run them in reverse order."""
    for fn in fns.values():
        fn()  # warm-up: page cache, imports, first-call set-up
    times = {k: [] for k in fns}
    last = {}
    for r in range(repeat):
        for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            t0 = time.perf_counter()
            last[k] = fns[k]()
            times[k].append(time.perf_counter() - t0)
    return {k: (statistics.median(v), v, last[k]) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video-dir", default=str(DEFAULT_DIR))
    ap.add_argument("--repeat", type=int, default=5, help="timed rounds; the median counts")
    ap.add_argument("--synthetic", type=int, default=6, help="generated clips with placed cuts")
    ap.add_argument("--tolerance", type=int, default=2, help="frames a found cut may be off by")
    ap.add_argument("--no-record", action="store_true", help="print only; write no result file")
    args = ap.parse_args(argv)
    from benchmarks.record import Row, write_result
    from pipelines.video_interleave.config import VideoConfig

    cfg = VideoConfig()
    with tempfile.TemporaryDirectory() as tmp:
        real = real_videos(Path(args.video_dir))
        synth = synthetic_videos(Path(tmp), args.synthetic)
        truth = {**real, **synth}
        paths = list(truth)
        if not paths:
            print("no videos", file=sys.stderr)
            return 1
        load_start = os.getloadavg()
        budget = ours(paths, cfg)["per_video"]  # frames ours writes per video: the baseline writes as many
        res = timed_alternating({"ours": lambda: ours(paths, cfg),
                                 "pyscenedetect+decord": lambda: pyscenedetect_decord(paths, cfg, budget),
                                 "decord-64px": lambda: decord_thumbs(paths, cfg.probe.analysis_side)}, args.repeat)
    t_ours, t_psd, t_thumb = (res[k][0] for k in ("ours", "pyscenedetect+decord", "decord-64px"))
    scores = {}
    for who in ("ours", "pyscenedetect+decord"):
        found = res[who][2]["cuts"]
        scores[who] = {"all": cut_scores(found, truth, args.tolerance),
                       "real": cut_scores(found, real, args.tolerance),
                       "synthetic": cut_scores(found, synth, args.tolerance),
                       "cuts": {Path(p).name: found[p] for p in paths}}
    so, sp = scores["ours"]["all"], scores["pyscenedetect+decord"]["all"]
    print(f"{len(real)} real + {len(synth)} generated videos; {so['true']} true cuts; frames written: ours "
          f"{res['ours'][2]['frames']}, baseline {res['pyscenedetect+decord'][2]['frames']}")
    for k, (med, ts, _) in res.items():
        print(f"{k:22s} median {med:6.2f} s  rounds {', '.join(f'{t:.2f}' for t in ts)}")
    for who, s in scores.items():
        for part in ("all", "real", "synthetic"):
            x = s[part]
            print(f"{who:22s} {part:9s} recall {x['recall']:.2f} precision {x['precision']:.2f} "
                  f"({x['hits']} of {x['true']} true cuts, {x['found']} found)")
    speed = t_psd / t_ours
    quality_ok = so["recall"] >= sp["recall"] and so["precision"] >= sp["precision"]
    print(f"speed-up vs PySceneDetect+decord {speed:.2f}x (target >= 3x); cut recall/precision at least "
          f"PySceneDetect's: {'yes' if quality_ok else 'NO'}")
    if args.no_record:
        return 0
    base = "PySceneDetect ContentDetector + decord frames"
    rows = [
        Row("stages 1-5 wall time", "s", t_ours, t_psd, base, higher_is_better=False, target_ratio=3.0),
        Row("cut recall", "", so["recall"], sp["recall"], "PySceneDetect ContentDetector", target_ratio=1.0,
            note=f"{so['true']} cuts ({scores['ours']['real']['true']} marked by eye in real videos), "
                 f"+-{args.tolerance} frames"),
        Row("cut precision", "", so["precision"], sp["precision"], "PySceneDetect ContentDetector", target_ratio=1.0),
        Row("stages 1-5 vs 64 px decode of every frame", "s", t_ours, t_thumb, "decord at 64 px",
            higher_is_better=False, note="cost floor of analysing every frame"),
    ]
    write_result("bench_video_stages", rows, libraries=("scenedetect", "decord", "av", "opencv-python-headless",
                                                        "numpy"),
                 extra={"load_avg": os.getloadavg(), "load_avg_start": load_start, "repeat": args.repeat,
                        "round_ratios": [b / a for a, b in zip(res["ours"][1], res["pyscenedetect+decord"][1])],
                        "times_s": {k: v[1] for k, v in res.items()}, "cuts": scores,
                        "videos": {"real": len(real), "synthetic": len(synth)},
                        "frames_written": {k: res[k][2]["frames"] for k in ("ours", "pyscenedetect+decord")}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
