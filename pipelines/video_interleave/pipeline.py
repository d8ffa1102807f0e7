"""The video pipeline's stage list: probe, shots, crop, quality, frames, caption, assemble."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pipelines.core.executor import run_pipeline
from pipelines.core.stage import Stage
from pipelines.video_interleave.assemble import assemble_samples
from pipelines.video_interleave.caption import CaptionJob, caption_pairs, open_captioner
from pipelines.video_interleave.config import VideoConfig
from pipelines.video_interleave.crop import crop_clips
from pipelines.video_interleave.frames import sample_frames
from pipelines.video_interleave.probe import probe_videos
from pipelines.video_interleave.quality import filter_clips
from pipelines.video_interleave.shots import split_shots

CACHE_DIR = "caption_cache"


def analysis_stages(cfg: VideoConfig) -> list[Stage]:
    """Stages 1-5: everything before captioning (CPU only)."""
    return [
        Stage("probe", probe_videos, cfg.probe, num_cpus=1, batch_size=1),
        Stage("shots", split_shots, cfg.shots, num_cpus=1, batch_size=1),
        Stage("crop", crop_clips, cfg.crop, num_cpus=1, batch_size=8),
        Stage("quality", filter_clips, cfg.quality, num_cpus=1, batch_size=8),
        Stage("frames", sample_frames, cfg.frames, num_cpus=1, batch_size=8),
    ]


def build_stages(cfg: VideoConfig) -> list[Stage]:
    job = CaptionJob(cfg.captioner, cfg.caption, str(Path(cfg.run.out_dir) / CACHE_DIR))
    return [
        *analysis_stages(cfg),
        Stage("caption", caption_pairs, job, setup=open_captioner, num_cpus=cfg.caption.num_cpus,
              num_gpus=cfg.caption.num_gpus, batch_size=cfg.caption.batch_size, concurrency=cfg.caption.concurrency),
        Stage("assemble", assemble_samples, cfg.assemble, num_cpus=1, batch_size=32),
    ]


def loggable(cfg: VideoConfig) -> VideoConfig:
    """The config as written to ``runs.jsonl``: no API key."""
    if cfg.captioner.api_key:
        return replace(cfg, captioner=replace(cfg.captioner, api_key="***"))
    return cfg


def run_video(inputs: list[dict], cfg: VideoConfig) -> dict:
    """Run the whole pipeline over input records (``pipelines.core.inputs.list_inputs``); returns the summary."""
    return run_pipeline(build_stages(cfg), inputs, cfg.run, "video", loggable(cfg))
