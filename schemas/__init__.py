"""Braid's sample format: types, validation, WebDataset encode/decode, shards, manifest, exports.

Imports only the standard library, numpy, PIL, pyarrow and webdataset; nothing else of Braid.
"""

from schemas.manifest import ManifestWriter, load_manifest, outcome, summarize
from schemas.reader import ShardError, iter_members, read_samples
from schemas.sample import (
    KINDS,
    SCHEMA_VERSION,
    CaptionerInfo,
    ImageSegment,
    Sample,
    SampleError,
    Source,
    TextSegment,
    make_key,
    validate,
    validate_json,
)
from schemas.wds import decode_sample, encode_sample
from schemas.writer import ShardWriter, is_complete, stats_path

__all__ = [
    "KINDS", "SCHEMA_VERSION", "CaptionerInfo", "ImageSegment", "ManifestWriter", "Sample", "SampleError",
    "ShardError", "ShardWriter", "Source", "TextSegment", "decode_sample", "encode_sample", "is_complete",
    "iter_members", "load_manifest", "make_key", "outcome", "read_samples", "stats_path", "summarize",
    "validate", "validate_json",
]
