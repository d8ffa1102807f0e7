"""``braid video``: videos -> probe, shots, crop, quality, frames, caption, assemble -> shards.

The pipeline contract (see ARCHITECTURE.md, "Add a pipeline"): NAME, DESCRIPTION, CONFIG, INPUT_HELP, FLAGS,
``list_inputs(specs, cfg)``, ``build_stages(cfg)`` and ``check_config(cfg)``; the generic runner does the rest.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from pipelines.core.inputs import VIDEO_EXTS
from pipelines.core.inputs import list_inputs as list_input_files
from pipelines.core.sections import CACHE_DIR
from pipelines.core.stage import Stage
from pipelines.net.download import download_bytes
from pipelines.video_interleave.assemble import assemble_samples
from pipelines.video_interleave.caption import CaptionJob, caption_pairs, open_captioner
from pipelines.video_interleave.config import VideoConfig
from pipelines.video_interleave.crop import crop_clips
from pipelines.video_interleave.frames import sample_frames
from pipelines.video_interleave.probe import probe_videos
from pipelines.video_interleave.quality import filter_clips
from pipelines.video_interleave.shots import split_shots
from schemas.config import ConfigError

NAME = "video"
DESCRIPTION = "videos -> shots -> frames -> change captions -> shards"
CONFIG = VideoConfig
INPUT_HELP = "video files, directories, globs, or list files (.txt, .jsonl, .csv); local or fsspec URIs"
FLAGS = {
    "allow-private-net": ("fetch.allow_private_net", bool,
                          "allow fetching from private, loopback and link-local addresses"),
    "frames-per-clip": ("frames.frames_per_clip", int, "frames sampled per clip"),
    "frame-side": ("frames.frame_side", int, "longest side of written frames"),
    "max-clip-s": ("shots.max_clip_s", float, "longest clip; longer shots are split"),
    "min-clip-s": ("quality.min_duration_s", float, "shortest clip kept"),
    "max-frames": ("probe.max_frames", int, "cap on frames decoded per video"),
    "time-limit-s": ("probe.time_limit_s", float, "fetch and decode time limit per video"),
}


def list_inputs(specs: list[str], cfg: VideoConfig) -> list[dict]:
    """One record per video file (``uri``, ``licence``, ``meta``)."""
    return list_input_files(specs, VIDEO_EXTS, read_remote=partial(download_bytes, fetch_cfg=cfg.fetch))


def analysis_stages(cfg: VideoConfig) -> list[Stage]:
    """Stages 1-5: everything before captioning (CPU only)."""
    return [
        Stage("probe", partial(probe_videos, fetch=cfg.fetch), cfg.probe, num_cpus=1, batch_size=1),
        Stage("shots", split_shots, cfg.shots, num_cpus=1, batch_size=1),
        Stage("crop", crop_clips, cfg.crop, num_cpus=1, batch_size=8),
        Stage("quality", filter_clips, cfg.quality, num_cpus=1, batch_size=8),
        Stage("frames", sample_frames, cfg.frames, num_cpus=1, batch_size=8),
    ]


def build_stages(cfg: VideoConfig) -> list[Stage]:
    job = CaptionJob(cfg.captioner, cfg.caption, str(Path(cfg.run.out_dir) / CACHE_DIR))
    cap = cfg.caption
    return [
        *analysis_stages(cfg),
        Stage("caption", caption_pairs, job, setup=open_captioner, num_cpus=cap.num_cpus, num_gpus=cap.num_gpus,
              batch_size=cap.batch_size, concurrency=cap.concurrency),
        Stage("assemble", assemble_samples, cfg.assemble, num_cpus=1, batch_size=32),
    ]


def check_config(cfg: VideoConfig) -> None:
    """The caption prompt must exist before any video is decoded."""
    from captioners.prompts import get_prompt

    try:
        get_prompt(cfg.caption.prompt_id)
    except KeyError as e:
        raise ConfigError(str(e.args[0])) from None
