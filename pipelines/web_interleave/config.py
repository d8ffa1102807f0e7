"""Configuration of ``braid web``: one frozen dataclass per section, BAGEL's web rules as defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from captioners.base import CaptionerConfig
from pipelines.core.sections import CaptionConfig, RunConfig
from pipelines.net.fetch import FetchConfig

UI_URL_PATTERNS = ("icon", "widget", "logo", "avatar", "button", "banner", "sprite", "badge")
KEEP_TOPICS = ("tutorial", "howto", "encyclopedic", "design")


@dataclass(frozen=True)
class FilterConfig:
    """Image and document rules (BAGEL, arXiv 2505.14683 Table 2), each recorded with its score.

    url_patterns: drop images whose URL contains one of these substrings (UI elements).
    match_alt: also drop images whose alt text has one of the patterns as a word ("Site logo").
    min_side / max_side: each side of an image within [min_side, max_side] pixels.
    min_aspect / max_aspect: width / height within [min_aspect, max_aspect].
    min_clarity: variance of the Laplacian of the grey image at 512 px (lower = blurrier).
    max_ocr_tokens: drop text-heavy images with more OCR text tokens (words) than this; None = no OCR.
    min_relevance: MiniLM cosine between an image's caption and the text around it; None = record only.
    relevance_window: characters of text on each side of an image used as its context.
    phash_distance: Hamming distance (of 64 bits) at or under which two images are near-duplicates.
    dedup_across_run: also drop images already seen in other documents of this output directory.
    min_images / max_images: images a document must keep after filtering.
    over_max: ``filter`` a document with more than max_images, or ``truncate`` to the first max_images.
    max_images_considered: images of a document (in reading order) that go on to be fetched; the rest are
      dropped at the read stage as ``over_image_cap``, so a page with 10,000 images costs at most this many fetches.
    trim_patterns: regexes for boilerplate text at the start or end of a document (header/footer).
    trim_max_words: only segments at the ends this short are trimmed by pattern.
    """

    url_patterns: tuple[str, ...] = UI_URL_PATTERNS
    match_alt: bool = True
    min_side: int = 150
    max_side: int = 20000
    min_aspect: float = 0.5
    max_aspect: float = 2.0
    min_clarity: float = 30.0
    max_ocr_tokens: int | None = 100
    min_relevance: float | None = 0.1
    relevance_window: int = 600
    phash_distance: int = 6
    dedup_across_run: bool = True
    min_images: int = 3
    max_images: int = 8
    over_max: str = "filter"
    max_images_considered: int = 64
    trim_patterns: tuple[str, ...] = (
        r"(?i)^(last updated|updated on|posted (on|by)|published|edit this page|share|tweet|print|menu|skip to)",
        r"(?i)(all rights reserved|copyright|\u00a9|privacy policy|terms of (use|service)|cookie)",
        r"(?i)(subscribe|newsletter|sign up|log ?in|follow us|comments?|donate|donations?)\b|contributor\(s\)",
        r"(?i)^(previous|next|back to top|home|table of contents)\b",
    )
    trim_max_words: int = 30

    def __post_init__(self):
        if not (0 < self.min_side <= self.max_side):
            raise ValueError("need 0 < min_side <= max_side")
        if not (0 < self.min_aspect <= self.max_aspect):
            raise ValueError("need 0 < min_aspect <= max_aspect")
        if not (1 <= self.min_images <= self.max_images):
            raise ValueError("need 1 <= min_images <= max_images")
        if self.max_images_considered < self.max_images:
            raise ValueError("need max_images_considered >= max_images")
        if self.over_max not in ("filter", "truncate"):
            raise ValueError(f"over_max must be 'filter' or 'truncate', not {self.over_max!r}")
        if not (0 <= self.phash_distance <= 32):
            raise ValueError("phash_distance must be within [0, 32]")


@dataclass(frozen=True)
class TopicConfig:
    """Topic selection: a fast classifier on MiniLM embeddings, optionally reviewed by the captioner model.

    classifier: JSON file of a classifier trained by ``python -m pipelines.web_interleave.topic train``;
      empty = the packaged default trained on the seed set.
    keep_labels: labels whose summed probability is the document's topic score.
    min_score: keep documents scoring at least this; None = record the score only.
    llm_review: ask the captioner model (prompt topic_label@v1) about every kept document and drop it
      when its label is not in keep_labels.
    """

    classifier: str = ""
    keep_labels: tuple[str, ...] = KEEP_TOPICS
    min_score: float | None = 0.5
    llm_review: bool = False

    def __post_init__(self):
        if self.min_score is not None and not (0.0 <= self.min_score <= 1.0):
            raise ValueError("min_score must be within [0, 1]")


@dataclass(frozen=True)
class TextConfig:
    """Text segments.

    max_tokens: segments longer than this (word and punctuation tokens) are summarised (BAGEL: 300).
    summarize: summarise long segments with the captioner model (prompt summarize@v1); when off, or when
      the model fails, the segment is kept and flagged (``meta.long``).
    min_chars: shorter text blocks are dropped as noise.
    """

    max_tokens: int = 300
    summarize: bool = True
    min_chars: int = 2


@dataclass(frozen=True)
class WebCaptionConfig(CaptionConfig):
    """The caption stage (documents per captioner call, workers and their CPUs/GPUs: see
    ``pipelines.core.sections.CaptionConfig``) and its prompts.

    caption_prompt_id / caption_max_tokens: the one-sentence caption before each image and its token limit.
    summary_prompt_id: summaries of text over ``text.max_tokens``; review_prompt_id: the optional topic review.
    """

    batch_size: int = 4
    caption_prompt_id: str = "image_caption@v1"
    caption_max_tokens: int = 60
    summary_prompt_id: str = "summarize@v1"
    review_prompt_id: str = "topic_label@v1"


@dataclass(frozen=True)
class WebConfig:
    """Everything ``braid web`` needs; YAML files and flags map onto these fields (``fetch.timeout_s``).

    batch_size: documents per batch of the CPU stages.
    """

    run: RunConfig = field(default_factory=RunConfig)
    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)
    caption: WebCaptionConfig = field(default_factory=WebCaptionConfig)
    batch_size: int = 4
    fetch: FetchConfig = field(default_factory=FetchConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    topic: TopicConfig = field(default_factory=TopicConfig)
    text: TextConfig = field(default_factory=TextConfig)

    def __post_init__(self):
        if self.batch_size < 1 or self.caption.caption_max_tokens < 1:
            raise ValueError("batch_size and caption.caption_max_tokens must be positive")

    @classmethod
    def tiny(cls) -> WebConfig:
        """Tests and the demo: in-process, the deterministic stub captioner, short timeouts, one retry."""
        return cls(run=RunConfig(executor="local", chunk_size=8), captioner=CaptionerConfig(backend="stub", model="stub"),
                   fetch=FetchConfig(timeout_s=2.0, connect_timeout_s=1.0, retries=1, backoff_s=0.05))

    @classmethod
    def gpu(cls) -> WebConfig:
        """A Ray cluster with GPU captioner workers (vLLM in-process engine)."""
        return cls(captioner=CaptionerConfig(backend="vllm", dtype="bfloat16", device="cuda", batch_size=64),
                   caption=WebCaptionConfig(batch_size=16, num_gpus=1.0))
