"""The only encode/decode between a Sample and WebDataset tar members.

Members of one sample, contiguous in the tar: ``<key>.json`` first, then ``<key>.<NNN>.<ext>`` per
image (NNN = the image index, three digits). webdataset splits the key from the extension at the
first dot of the basename, so keys never contain a dot and image members read back under the
extension ``NNN.ext`` (for example ``000.jpg``).
"""

from __future__ import annotations

import json

from .sample import KEY_RE, Sample, SampleError, sample_from_json, validate


def image_member(key: str, index: int, ext: str) -> str:
    return f"{key}.{index:03d}.{ext}"


def encode_sample(sample: Sample) -> list[tuple[str, bytes]]:
    """Validated (member name, bytes) pairs in write order."""
    validate(sample)
    members = [(f"{sample.key}.json", json.dumps(sample.to_json(), ensure_ascii=False, sort_keys=True).encode())]
    for i, img in enumerate(sample.images):
        members.append((image_member(sample.key, i, img.ext), img.data))
    return members


def split_member(name: str) -> tuple[str, str]:
    """(key, suffix) of a member name, as webdataset splits it (first dot of the basename)."""
    base = name.rsplit("/", 1)[-1]
    if "." not in base:
        raise SampleError(f"member {name!r}: no extension")
    key, suffix = base.split(".", 1)
    if not KEY_RE.match(key):
        raise SampleError(f"member {name!r}: key {key!r} must be letters, digits, '_' or '-'")
    return key, suffix


def decode_sample(key: str, members: dict[str, bytes]) -> Sample:
    """Rebuild a Sample from its members, keyed by suffix (``json``, ``000.jpg``, ...)."""
    if "json" not in members:
        raise SampleError(f"sample {key!r}: field 'json': the JSON member is missing")
    try:
        doc = json.loads(members["json"].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SampleError(f"sample {key!r}: field 'json': not valid JSON ({e})") from None
    if isinstance(doc, dict) and doc.get("key") != key:
        raise SampleError(f"sample {key!r}: field 'key': JSON says {doc.get('key')!r}, members say {key!r}")
    images: list[bytes] = []
    for seg in doc.get("segments", []) if isinstance(doc, dict) else []:
        if isinstance(seg, dict) and seg.get("type") == "image":
            suffix = f"{seg.get('index', 0):03d}.{seg.get('ext')}" if isinstance(seg.get("index"), int) else "?"
            if suffix not in members:
                raise SampleError(f"sample {key!r}: field 'segments image {seg.get('index')}': member {key}.{suffix} is missing")
            images.append(members[suffix])
    return sample_from_json(doc, images)
