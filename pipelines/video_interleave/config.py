"""Configuration of ``braid video``: one frozen dataclass per stage, nested in ``VideoConfig``.

Every field maps one-to-one onto a YAML key (``probe.max_frames: 9000``) and a dotted override;
``VideoConfig.tiny()`` is the preset for tests and the demo.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from captioners.base import CaptionerConfig
from pipelines.core.sections import CaptionConfig, RunConfig
from pipelines.net.fetch import FetchConfig
from schemas.config import ConfigError


@dataclass(frozen=True)
class ProbeConfig:
    """Stage 1: fetch (remote inputs), read the header, decode downscaled frames once.

    decoder: ``decord``: PyAV's fast analysis pass first, then decord for any file that pass cannot vouch for,
      then OpenCV when decord fails too (the value names decord, the decoder of record for such files);
      ``opencv``: OpenCV only.
    time_limit_s: wall-clock limit for fetching and decoding one video; past it the video fails.
    max_frames: cap on the frames decoding touches; a longer video is filtered (``on_long: filter``)
      or cut to its first ``max_frames`` frames (``on_long: truncate``).
    max_side / max_pixels: larger videos are filtered before any decode (memory, time).
    analysis_stride: analyse every n-th frame (2 keeps cuts within two frames at about half the cost of
      converting every frame).
    analysis_side: longest side of the thumbnails shot detection and the motion filters look at.
    decode_side: longest side frames are decoded at; sampled frames come from these, so keep it at or
      above ``frames.frame_side``.
    candidate_fps: how many decoded frames per second are kept as candidates for frame sampling.
    min_decoded_fraction: a file that decodes to fewer frames than this share of its header's count
      fails as truncated.
    fetch_max_bytes / fetch_timeout_s: limits for downloading remote inputs (the download also ends at
      ``time_limit_s``); the address guard and the other download settings are the ``fetch`` section's.
    subtitles: read a WebVTT or SRT file with the same stem beside a local video.
    """

    decoder: str = "decord"
    time_limit_s: float = 120.0
    max_frames: int = 9000
    on_long: str = "filter"
    max_side: int = 4096
    max_pixels: int = 4096 * 2304
    analysis_stride: int = 2
    analysis_side: int = 64
    decode_side: int = 512
    candidate_fps: float = 3.0
    min_decoded_fraction: float = 0.9
    decode_threads: int = 0
    fetch_max_bytes: int = 2 << 30
    fetch_timeout_s: float = 300.0
    subtitles: bool = True

    def __post_init__(self):
        if self.decoder not in ("decord", "opencv"):
            raise ValueError(f"decoder must be 'decord' or 'opencv', not {self.decoder!r}")
        if self.on_long not in ("filter", "truncate"):
            raise ValueError(f"on_long must be 'filter' or 'truncate', not {self.on_long!r}")
        if self.max_frames < 1 or self.analysis_stride < 1 or self.analysis_side < 16 or self.decode_side < 32:
            raise ValueError("max_frames and analysis_stride must be >= 1, analysis_side >= 16, decode_side >= 32")
        if self.time_limit_s <= 0 or self.candidate_fps <= 0:
            raise ValueError("time_limit_s and candidate_fps must be positive")


@dataclass(frozen=True)
class ShotConfig:
    """Stage 2: shot cuts from thumbnail changes, then clips.

    A cut is a frame whose change score (mean of colour-histogram and pixel differences, 0..1) is at
    least ``min_score`` and ``ratio`` times the mean score of its neighbours within ``window_s``
    (so steady motion, which raises every score alike, is not a cut), or at least ``hard_score``.
    min_shot_s: cuts closer than this to the previous cut are ignored (flashes).
    max_clip_s: longer shots are split into equal clips no longer than this.
    merge_similar / merge_distance: join adjacent shots whose colour histograms differ less than this.
    """

    min_score: float = 0.08
    ratio: float = 3.0
    hard_score: float = 0.45
    window_s: float = 1.0
    min_shot_s: float = 0.3
    max_clip_s: float = 10.0
    merge_similar: bool = False
    merge_distance: float = 0.15


@dataclass(frozen=True)
class CropConfig:
    """Stage 3: letterbox / pillarbox removal.

    A row or column is border when nearly all its pixels stay below ``threshold`` (0..255) in every
    candidate frame. Borders thinner than ``min_border`` (share of the side) are kept; if more than
    ``max_crop`` of a side would go, the frame is left alone (a dark scene, not a border).
    """

    enabled: bool = True
    threshold: int = 24
    min_border: float = 0.02
    max_crop: float = 0.5


@dataclass(frozen=True)
class QualityConfig:
    """Stage 4: clip filters; each records its score, and the first failing one is the reason.

    min_duration_s: shorter clips are dropped.
    min_side: smallest acceptable side of the cropped clip, in source pixels.
    min_sharpness: variance of the Laplacian on candidate frames (median), below = blurred.
    min_brightness / max_brightness: mean luma (0..255) of the clip.
    min_motion: share of thumbnail pixels that change visibly between frames about half a second
      apart (the largest over the clip); below = static, no change to caption.
    max_shake: mean frame-to-frame jitter of the global shift, in thumbnail widths; above = too shaky.
    """

    min_duration_s: float = 1.0
    min_side: int = 128
    min_sharpness: float = 5.0
    min_brightness: float = 25.0
    max_brightness: float = 235.0
    min_motion: float = 0.01
    max_shake: float = 0.06


@dataclass(frozen=True)
class FrameConfig:
    """Stage 5: frames per clip, spread in time, near-duplicates dropped, resized and encoded once.

    frames_per_clip: frames aimed for (BAGEL: about four). min_frames: fewer distinct frames = filtered.
    frame_side: longest side of written frames (never upscaled); multiple: both sides are multiples of it.
    phash_distance: a frame whose perceptual hash differs by fewer bits from the previous kept frame is
      a near-duplicate and dropped.
    edge_margin_frames: frames this close to a clip edge are not sampled (a cut found one frame late
      must never leak the other shot into the clip).
    """

    frames_per_clip: int = 4
    min_frames: int = 2
    frame_side: int = 512
    multiple: int = 16
    jpeg_quality: int = 90
    phash_distance: int = 4
    edge_margin_frames: int = 3

    def __post_init__(self):
        if self.min_frames < 2 or self.frames_per_clip < self.min_frames:
            raise ValueError("need 2 <= min_frames <= frames_per_clip")
        if self.multiple < 1 or self.frame_side < self.multiple:
            raise ValueError("frame_side must be at least multiple, and multiple positive")


@dataclass(frozen=True)
class VideoCaptionConfig(CaptionConfig):
    """Stage 6: change captions for consecutive frame pairs (batch size, workers and their CPUs/GPUs: see
    ``pipelines.core.sections.CaptionConfig``).

    prompt_id / max_tokens: the named prompt and its token limit (BAGEL: at most 30 tokens).
    """

    prompt_id: str = "change_caption@v1"
    max_tokens: int = 30

    def __post_init__(self):
        super().__post_init__()
        if self.max_tokens < 1:
            raise ConfigError("caption.max_tokens must be positive")


@dataclass(frozen=True)
class AssembleConfig:
    """Stage 7: the interleaved sample.

    subtitles: add subtitle lines that fall between two frames as ``subtitle`` text segments.
    subtitle_loss: whether those segments carry loss.
    """

    subtitles: bool = True
    subtitle_loss: bool = False


@dataclass(frozen=True)
class VideoConfig:
    run: RunConfig = field(default_factory=lambda: RunConfig(chunk_size=4))
    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    fetch: FetchConfig = field(default_factory=FetchConfig)  # remote inputs: address guard, retries, agent
    shots: ShotConfig = field(default_factory=ShotConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    frames: FrameConfig = field(default_factory=FrameConfig)
    caption: VideoCaptionConfig = field(default_factory=VideoCaptionConfig)
    assemble: AssembleConfig = field(default_factory=AssembleConfig)

    @classmethod
    def tiny(cls) -> VideoConfig:
        """Tests and the demo: small frames, in-process, the deterministic stub captioner."""
        base = cls()
        return replace(
            base,
            run=replace(base.run, executor="local"),
            captioner=CaptionerConfig(backend="stub", model="stub"),
            probe=replace(base.probe, decode_side=256, time_limit_s=60.0),
            frames=replace(base.frames, frame_side=128),
        )

    @classmethod
    def gpu(cls) -> VideoConfig:
        """A Ray cluster with GPU captioner workers (vLLM in-process engine)."""
        base = cls()
        return replace(base, captioner=CaptionerConfig(backend="vllm", dtype="bfloat16", device="cuda", batch_size=64),
                       caption=replace(base.caption, batch_size=32, num_gpus=1.0))
