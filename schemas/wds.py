"""The only encode/decode between a Sample and WebDataset tar members.

Members of one sample, contiguous in the tar: ``<key>.json`` first, then ``<key>.<NNN>.<ext>`` per
image (NNN = the image index, three digits). webdataset splits the key from the extension at the
first dot of the basename, so keys never contain a dot and image members read back under the
extension ``NNN.ext`` (for example ``000.jpg``).

Limits, the same for writing and reading (what one writes, the other reads): the JSON member up to
``MAX_JSON_BYTES`` and ``MAX_JSON_DEPTH`` levels of nesting, each member up to ``MAX_MEMBER_BYTES``,
a sample up to ``MAX_SAMPLE_BYTES`` and ``MAX_SAMPLE_MEMBERS`` members. ``encode_sample`` refuses a
sample over them; the reader refuses such members unread. A malformed JSON member (bad UTF-8, bad
JSON, nesting too deep, an integer too long to convert) is a SampleError of its sample, never
another exception.
"""

from __future__ import annotations

import json
import sys

from schemas.sample import KEY_RE, Sample, SampleError, sample_from_json, validate

MAX_JSON_BYTES = 16 << 20
MAX_JSON_DEPTH = 64
MAX_MEMBER_BYTES = 128 << 20
MAX_SAMPLE_BYTES = 512 << 20
MAX_SAMPLE_MEMBERS = 4096


class Members(dict):
    """A sample's member bytes by suffix, plus the members refused unread and why (``problems``: the first
    few reasons, then how many more)."""

    SHOWN = 8

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.refused: set[str] = set()
        self.n_refused = 0
        self._problems: list[str] = []

    def refuse(self, suffix: str | None, problem: str) -> None:
        """Record a member not read; ``suffix`` None when it is not kept for the duplicate check."""
        if suffix is not None:
            self.refused.add(suffix)
        self.n_refused += 1
        if len(self._problems) < self.SHOWN:
            self._problems.append(problem)

    @property
    def problems(self) -> list[str]:
        more = self.n_refused - len(self._problems)
        return self._problems + ([f"{more} more member(s) of the sample refused"] if more else [])


def image_member(key: str, index: int, ext: str) -> str:
    return f"{key}.{index:03d}.{ext}"


def encode_sample(sample: Sample) -> list[tuple[str, bytes]]:
    """Validated (member name, bytes) pairs in write order."""
    validate(sample)
    doc = sample.to_json()
    if _too_deep(doc, MAX_JSON_DEPTH):
        raise SampleError(f"sample {sample.key!r}: field 'json': nested deeper than {MAX_JSON_DEPTH} levels")
    members = [(f"{sample.key}.json", json.dumps(doc, ensure_ascii=False, sort_keys=True).encode())]
    for i, img in enumerate(sample.images):
        members.append((image_member(sample.key, i, img.ext), img.data))
    _check_sizes(sample.key, members)
    return members


def _check_sizes(key: str, members: list[tuple[str, bytes]]) -> None:
    if len(members) > MAX_SAMPLE_MEMBERS:
        raise SampleError(f"sample {key!r}: {len(members)} members, over the limit of {MAX_SAMPLE_MEMBERS} per sample")
    for name, data in members:
        limit = MAX_JSON_BYTES if name.endswith(".json") else MAX_MEMBER_BYTES
        if len(data) > limit:
            raise SampleError(f"sample {key!r}: member {name} has {len(data)} bytes, over the limit of {limit}")
    total = sum(len(data) for _, data in members)
    if total > MAX_SAMPLE_BYTES:
        raise SampleError(f"sample {key!r}: {total} bytes, over the limit of {MAX_SAMPLE_BYTES} per sample")


def split_member(name: str) -> tuple[str, str]:
    """(key, suffix) of a member name, as webdataset splits it (first dot of the basename)."""
    base = name.rsplit("/", 1)[-1]
    if "." not in base:
        raise SampleError(f"member {name!r}: no extension")
    key, suffix = base.split(".", 1)
    if not KEY_RE.match(key):
        raise SampleError(f"member {name!r}: key {key!r} must be letters, digits, '_' or '-'")
    return key, suffix


def _image_suffix(seg: dict) -> str | None:
    idx, ext = seg.get("index"), seg.get("ext")
    if type(idx) is not int or not isinstance(ext, str):
        return None
    return f"{idx:03d}.{ext}"


def _too_deep(doc: object, limit: int) -> bool:
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return False


def parse_json_member(key: str, members: dict[str, bytes]) -> dict:
    """The sample's JSON member as an object; SampleError naming the key when missing, malformed, or
    refused by the reader (too large, sparse)."""
    problems = getattr(members, "problems", None)
    if problems:
        raise SampleError("; ".join(problems))
    if "json" not in members:
        dotted = sorted(sfx for sfx in members if sfx.endswith(".json"))
        if dotted:
            full = f"{key}.{dotted[0][: -len('.json')]}"
            raise SampleError(f"sample key {full!r} contains a dot (member {key}.{dotted[0]}): WebDataset readers split "
                              f"names at the first dot, so keys must be letters, digits, '_' or '-'")
        raise SampleError(f"sample {key!r}: field 'json': the JSON member {key}.json is missing")
    raw = members["json"]
    if len(raw) > MAX_JSON_BYTES:
        raise SampleError(f"sample {key!r}: field 'json': {len(raw)} bytes, over the limit of {MAX_JSON_BYTES}")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise SampleError(f"sample {key!r}: field 'json': nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SampleError(f"sample {key!r}: field 'json': not valid JSON ({str(e)[:200]})") from None
    except ValueError:  # json turns integers of more than sys.get_int_max_str_digits() digits into ValueError
        raise SampleError(f"sample {key!r}: field 'json': holds an integer too long to read "
                          f"(over {sys.get_int_max_str_digits()} digits)") from None
    if _too_deep(doc, MAX_JSON_DEPTH):
        raise SampleError(f"sample {key!r}: field 'json': nested deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(doc, dict):
        raise SampleError(f"sample {key!r}: field 'json': holds a {type(doc).__name__}, not an object")
    if doc.get("key") != key:
        raise SampleError(f"sample {key!r}: field 'key': JSON says {doc.get('key')!r}, member names say {key!r}")
    return doc


def member_problems(key: str, members: dict[str, bytes], doc: dict) -> list[str]:
    """Layout problems: image members the JSON names but the tar lacks, and members nobody names."""
    problems, named = [], {"json"}
    for seg in doc.get("segments", []) if isinstance(doc.get("segments"), list) else []:
        if isinstance(seg, dict) and seg.get("type") == "image":
            suffix = _image_suffix(seg)
            if suffix is None:
                continue  # the schema check reports the bad index or ext
            named.add(suffix)
            if suffix not in members:
                problems.append(f"sample {key!r}: field 'segments image {seg['index']}': member {key}.{suffix} is missing")
    for suffix in sorted(set(members) - named):
        problems.append(f"sample {key!r}: member {key}.{suffix} is not named by any segment")
    return problems


def decode_sample(key: str, members: dict[str, bytes]) -> Sample:
    """Rebuild a Sample from its members, keyed by suffix (``json``, ``000.jpg``, ...)."""
    doc = parse_json_member(key, members)
    images: list[bytes] = []
    for seg in doc.get("segments", []) if isinstance(doc.get("segments"), list) else []:
        if isinstance(seg, dict) and seg.get("type") == "image":
            suffix = _image_suffix(seg)
            if suffix is None:
                break  # sample_from_json names the bad field
            if suffix not in members:
                raise SampleError(f"sample {key!r}: field 'segments image {seg['index']}': member {key}.{suffix} is missing")
            images.append(members[suffix])
    try:
        return sample_from_json(doc, images)
    except SampleError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:  # a field the schema check let through
        raise SampleError(f"sample {key!r}: field 'json': cannot be read as a sample ({type(e).__name__}: {e})") from None
