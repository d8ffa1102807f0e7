"""Configuration of ``braid reason``: one frozen dataclass with nested sections and a ``tiny`` preset."""

from __future__ import annotations

from dataclasses import dataclass, field

from captioners.base import CaptionerConfig
from pipelines.core.executor import RunConfig

from pipelines.reasoning_aug.checks import TextLimits

GENERATORS = ("t2i", "edit", "concept")


@dataclass(frozen=True)
class T2IConfig:
    """Text-to-image with reasoning.

    max_per_record: images of one source record turned into samples (picked deterministically).
    min_side: images with a shorter side are not used as generation targets.
    """

    max_per_record: int = 1
    min_side: int = 32

    def __post_init__(self):
        if self.max_per_record < 1:
            raise ValueError("max_per_record must be at least 1")


@dataclass(frozen=True)
class EditConfig:
    """Free-form edits from consecutive video frames and edit-pair tables.

    max_per_record: (source, target) pairs of one source record turned into samples.
    source_columns / target_columns / instruction_columns: accepted column names in edit tables, first
      match wins (BAGEL's ``image_list`` / ``instruction_list`` tables are recognised separately).
    """

    max_per_record: int = 1
    source_columns: tuple[str, ...] = ("source_image", "input_image", "src_image", "original_image", "source")
    target_columns: tuple[str, ...] = ("target_image", "output_image", "edited_image", "tgt_image", "target")
    instruction_columns: tuple[str, ...] = ("instruction", "edit_instruction", "edit_prompt", "prompt", "text")

    def __post_init__(self):
        if self.max_per_record < 1:
            raise ValueError("max_per_record must be at least 1")


@dataclass(frozen=True)
class ConceptConfig:
    """Conceptual edits from web documents.

    min_images: documents with fewer images are not applicable.
    context_chars: characters of document text shown to the model.
    """

    min_images: int = 2
    context_chars: int = 1200


@dataclass(frozen=True)
class ReasonConfig:
    """Everything ``braid reason`` needs.

    kinds: generators to run (t2i, edit, concept); each (source record, generator) is one accounted unit.
    temperature / seed: sampling parameters sent with every request.
    batch_size: records per generation batch (each batch makes one captioner call per step).
    concurrency / num_gpus: caption actors for Ray runs and the GPUs each holds.
    """

    run: RunConfig = field(default_factory=RunConfig)
    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)
    kinds: tuple[str, ...] = GENERATORS
    t2i: T2IConfig = field(default_factory=T2IConfig)
    edit: EditConfig = field(default_factory=EditConfig)
    concept: ConceptConfig = field(default_factory=ConceptConfig)
    limits: TextLimits = field(default_factory=TextLimits)
    temperature: float = 0.0
    seed: int = 0
    batch_size: int = 8
    concurrency: int | tuple[int, int] = 1
    num_gpus: float = 0.0

    def __post_init__(self):
        unknown = [k for k in self.kinds if k not in GENERATORS]
        if unknown or not self.kinds:
            raise ValueError(f"kinds must be a non-empty list of {', '.join(GENERATORS)}; got {list(self.kinds)}")
        if len(set(self.kinds)) != len(self.kinds):
            raise ValueError("kinds lists a generator twice")
        if self.batch_size < 1 or min((self.concurrency,) if isinstance(self.concurrency, int) else self.concurrency) < 1:
            raise ValueError("batch_size and concurrency must be positive")

    @classmethod
    def tiny(cls) -> ReasonConfig:
        """In-process, small batches, the stub captioner: for tests and smoke runs."""
        return cls(run=RunConfig(executor="local", chunk_size=8), captioner=CaptionerConfig(backend="stub"),
                   batch_size=4)
