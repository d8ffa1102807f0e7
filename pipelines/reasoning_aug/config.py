"""Configuration of ``braid reason``: one frozen dataclass with nested sections and a ``tiny`` preset."""

from __future__ import annotations

from dataclasses import dataclass, field

from captioners.base import CaptionerConfig
from pipelines.core.sections import CaptionConfig, RunConfig
from pipelines.reasoning_aug.checks import TextLimits

GENERATORS = ("t2i", "edit", "concept")


@dataclass(frozen=True)
class T2IConfig:
    """Text-to-image with reasoning.

    min_side: images with a shorter side are not used as generation targets.
    """

    min_side: int = 32


@dataclass(frozen=True)
class EditConfig:
    """Free-form edits from consecutive video frames and edit-pair tables.

    source_columns / target_columns / instruction_columns: accepted column names in edit tables, first
      match wins (BAGEL's ``image_list`` / ``instruction_list`` tables are recognised separately).
    """

    source_columns: tuple[str, ...] = ("source_image", "input_image", "src_image", "original_image", "source")
    target_columns: tuple[str, ...] = ("target_image", "output_image", "edited_image", "tgt_image", "target")
    instruction_columns: tuple[str, ...] = ("instruction", "edit_instruction", "edit_prompt", "prompt", "text")


@dataclass(frozen=True)
class ConceptConfig:
    """Conceptual edits from web documents.

    min_images: documents with fewer images are not applicable.
    context_chars: characters of document text shown to the model.
    """

    min_images: int = 2
    context_chars: int = 1200


@dataclass(frozen=True)
class ReasonCaptionConfig(CaptionConfig):
    """The generate stage (records per batch, workers and their CPUs/GPUs: see
    ``pipelines.core.sections.CaptionConfig``), the prompt of each generator step, and the sampling temperature
    sent with every request (token budgets are the prompts' own)."""

    batch_size: int = 8
    temperature: float = 0.0
    t2i_query_prompt_id: str = "t2i_query@v1"
    t2i_trace_prompt_id: str = "t2i_trace@v1"
    edit_instruction_prompt_id: str = "edit_instruction@v1"
    edit_trace_prompt_id: str = "edit_trace@v1"
    edit_video_trace_prompt_id: str = "edit_trace_video@v1"
    concept_pair_prompt_id: str = "concept_pair@v1"
    concept_question_prompt_id: str = "concept_question@v1"
    concept_judge_prompt_id: str = "concept_judge@v1"
    concept_explain_prompt_id: str = "concept_explain@v1"


@dataclass(frozen=True)
class ReasonConfig:
    """Everything ``braid reason`` needs.

    kinds: generators to run (t2i, edit, concept); each (source record, generator) is one accounted unit.
    max_per_record: samples of one source record and generator (t2i: images, edit: pairs; picked
      deterministically); a conceptual edit uses the whole document.
    seed: the sampling seed sent with every request, and the candidate choice.
    """

    run: RunConfig = field(default_factory=RunConfig)
    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)
    caption: ReasonCaptionConfig = field(default_factory=ReasonCaptionConfig)
    kinds: tuple[str, ...] = GENERATORS
    max_per_record: int = 1
    seed: int = 0
    t2i: T2IConfig = field(default_factory=T2IConfig)
    edit: EditConfig = field(default_factory=EditConfig)
    concept: ConceptConfig = field(default_factory=ConceptConfig)
    limits: TextLimits = field(default_factory=TextLimits)

    def __post_init__(self):
        unknown = [k for k in self.kinds if k not in GENERATORS]
        if unknown or not self.kinds:
            raise ValueError(f"kinds must be a non-empty list of {', '.join(GENERATORS)}; got {list(self.kinds)}")
        if len(set(self.kinds)) != len(self.kinds):
            raise ValueError("kinds lists a generator twice")
        if self.max_per_record < 1:
            raise ValueError("max_per_record must be at least 1")

    @classmethod
    def tiny(cls) -> ReasonConfig:
        """Tests and the demo: in-process, small batches, the deterministic stub captioner."""
        return cls(run=RunConfig(executor="local", chunk_size=8), captioner=CaptionerConfig(backend="stub", model="stub"),
                   caption=ReasonCaptionConfig(batch_size=4))

    @classmethod
    def gpu(cls) -> ReasonConfig:
        """A Ray cluster with GPU workers for the generate stage (vLLM in-process engine)."""
        return cls(captioner=CaptionerConfig(backend="vllm", dtype="bfloat16", device="cuda", batch_size=64),
                   caption=ReasonCaptionConfig(batch_size=32, num_gpus=1.0))
