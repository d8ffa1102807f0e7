"""The Braid sample: one interleaved image-text sequence.

Field table (JSON member ``<key>.json``; images are separate members ``<key>.<NNN>.<ext>``):

| field            | type            | meaning                                                            |
|------------------|-----------------|--------------------------------------------------------------------|
| schema_version   | int             | ``SCHEMA_VERSION`` at write time                                   |
| key              | str             | deterministic id from the source; letters, digits, ``_`` and ``-`` |
| kind             | str             | one of ``KINDS``                                                   |
| segments         | list            | ordered ``TextSegment`` / ``ImageSegment`` dicts                   |
| source           | dict            | ``Source``: uri, span or document position, licence, extra         |
| captioner        | dict or null    | ``CaptionerInfo``: backend, model, prompt ids used                 |
| meta             | dict            | free-form metadata (scores, stage info)                            |

Text segment: ``{"type": "text", "text", "role", "loss", "prompt_id"?, "status"?, "meta"?}``.
Image segment: ``{"type": "image", "index", "ext", "width", "height", "sha256", "understanding",
"generation", "role", "provenance"}``; ``index`` numbers the image members of the sample from 0 in
segment order. The encoded bytes live in ``ImageSegment.data`` in memory and in the tar member.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1
KINDS = ("video", "web", "reasoning_t2i", "reasoning_edit", "reasoning_concept", "pair")
TEXT_ROLES = ("caption", "change", "body", "query", "think", "system", "subtitle", "instruction", "answer")
IMAGE_ROLES = ("frame", "image", "source", "target")
IMAGE_EXTS = ("jpg", "png", "webp")
KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")


class SampleError(ValueError):
    """A sample breaks the schema; the message names the key and the field."""


@dataclass(frozen=True)
class TextSegment:
    text: str
    role: str = "body"
    loss: bool = True
    prompt_id: str | None = None
    status: str | None = None  # captioner status when the text came from a model
    meta: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = {"type": "text", "text": self.text, "role": self.role, "loss": self.loss}
        if self.prompt_id is not None:
            d["prompt_id"] = self.prompt_id
        if self.status is not None:
            d["status"] = self.status
        if self.meta:
            d["meta"] = self.meta
        return d


@dataclass(frozen=True)
class ImageSegment:
    data: bytes
    ext: str
    width: int
    height: int
    understanding: bool = True
    generation: bool = False
    role: str = "image"
    provenance: dict = field(default_factory=dict)
    sha256: str = ""

    def __post_init__(self):
        if not self.sha256:
            object.__setattr__(self, "sha256", hashlib.sha256(self.data).hexdigest())

    def to_json(self, index: int) -> dict:
        return {
            "type": "image",
            "index": index,
            "ext": self.ext,
            "width": self.width,
            "height": self.height,
            "sha256": self.sha256,
            "understanding": self.understanding,
            "generation": self.generation,
            "role": self.role,
            "provenance": self.provenance,
        }


Segment = TextSegment | ImageSegment


@dataclass(frozen=True)
class Source:
    uri: str
    licence: str | None = None
    span: tuple[float, float] | None = None  # seconds, for video clips
    position: int | None = None  # document position, for web documents
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d: dict[str, Any] = {"uri": self.uri}
        if self.licence is not None:
            d["licence"] = self.licence
        if self.span is not None:
            d["span"] = [float(self.span[0]), float(self.span[1])]
        if self.position is not None:
            d["position"] = self.position
        if self.extra:
            d["extra"] = self.extra
        return d


@dataclass(frozen=True)
class CaptionerInfo:
    backend: str
    model: str
    prompt_ids: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"backend": self.backend, "model": self.model, "prompt_ids": list(self.prompt_ids)}


@dataclass(frozen=True)
class Sample:
    key: str
    kind: str
    segments: tuple[Segment, ...]
    source: Source
    captioner: CaptionerInfo | None = None
    meta: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def images(self) -> list[ImageSegment]:
        return [s for s in self.segments if isinstance(s, ImageSegment)]

    @property
    def texts(self) -> list[TextSegment]:
        return [s for s in self.segments if isinstance(s, TextSegment)]

    def replace(self, **changes) -> Sample:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict:
        """The JSON member: everything but image bytes."""
        segs, n = [], 0
        for s in self.segments:
            if isinstance(s, ImageSegment):
                segs.append(s.to_json(n))
                n += 1
            else:
                segs.append(s.to_json())
        return {
            "schema_version": self.schema_version,
            "key": self.key,
            "kind": self.kind,
            "segments": segs,
            "source": self.source.to_json(),
            "captioner": self.captioner.to_json() if self.captioner else None,
            "meta": self.meta,
        }


def make_key(*parts: object) -> str:
    """A deterministic sample key from source parts: readable prefix plus a short hash."""
    raw = "|".join(str(p) for p in parts)
    head = re.sub(r"[^A-Za-z0-9_-]+", "_", str(parts[0]).rsplit("/", 1)[-1])[:40].strip("_") or "s"
    return f"{head}-{hashlib.sha1(raw.encode()).hexdigest()[:12]}"


def _fail(key: str, fld: str, msg: str) -> SampleError:
    return SampleError(f"sample {key!r}: field {fld!r}: {msg}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _optional_fields(obj: dict, prefix: str, types: dict[str, type], bad) -> None:
    """Fields that may be absent or null, and otherwise must have the given type."""
    names = {str: "a string", int: "an integer", dict: "an object"}
    for name, typ in types.items():
        v = obj.get(name)
        if v is not None and (not isinstance(v, typ) or isinstance(v, bool)):
            bad(prefix + name, f"must be {names[typ]} when present")


def validate_json(doc: Any) -> list[str]:
    """All schema problems of a sample's JSON member, as messages naming the key and the field."""
    if not isinstance(doc, dict):
        return [f"sample JSON is {type(doc).__name__}, not an object"]
    key = doc.get("key")
    k = key if isinstance(key, str) else "?"
    problems: list[str] = []

    def bad(fld: str, msg: str) -> None:
        problems.append(str(_fail(k, fld, msg)))

    if not isinstance(key, str) or not KEY_RE.match(key):
        bad("key", "must be 1-200 letters, digits, '_' or '-' (no dots)")
    if doc.get("schema_version") != SCHEMA_VERSION:
        bad("schema_version", f"is {doc.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    if doc.get("kind") not in KINDS:
        bad("kind", f"is {doc.get('kind')!r}, expected one of {', '.join(KINDS)}")
    src = doc.get("source")
    if not isinstance(src, dict) or not isinstance(src.get("uri"), str) or not src.get("uri"):
        bad("source.uri", "missing or not a non-empty string")
    if isinstance(src, dict):
        _optional_fields(src, "source.", {"licence": str, "position": int, "extra": dict}, bad)
        span = src.get("span")
        if span is not None and not (isinstance(span, list) and len(span) == 2 and all(map(_is_number, span))):
            bad("source.span", "must be null or [start, end] in seconds")
    cap = doc.get("captioner")
    if cap is not None and not (isinstance(cap, dict) and {"backend", "model"} <= cap.keys()):
        bad("captioner", "must be null or an object with backend and model")
    elif cap is not None and not (isinstance(cap.get("prompt_ids", []), list)
                                  and all(isinstance(p, str) for p in cap.get("prompt_ids", []))):
        bad("captioner.prompt_ids", "must be a list of strings")
    if not isinstance(doc.get("meta", {}), dict):
        bad("meta", "must be an object")
    segs = doc.get("segments")
    if not isinstance(segs, list) or not segs:
        bad("segments", "must be a non-empty list")
        return problems
    n_img = 0
    for i, s in enumerate(segs):
        f = f"segments[{i}]"
        if not isinstance(s, dict):
            bad(f, "must be an object")
            continue
        if s.get("type") == "text":
            if not isinstance(s.get("text"), str):
                bad(f + ".text", "must be a string")
            if s.get("role") not in TEXT_ROLES:
                bad(f + ".role", f"is {s.get('role')!r}, expected one of {', '.join(TEXT_ROLES)}")
            if not isinstance(s.get("loss"), bool):
                bad(f + ".loss", "must be true or false")
            _optional_fields(s, f + ".", {"prompt_id": str, "status": str, "meta": dict}, bad)
        elif s.get("type") == "image":
            if type(s.get("index")) is not int or s.get("index") != n_img:
                bad(f + ".index", f"is {s.get('index')!r}, expected {n_img} (images number from 0 in order)")
            n_img += 1
            if s.get("ext") not in IMAGE_EXTS:
                bad(f + ".ext", f"is {s.get('ext')!r}, expected one of {', '.join(IMAGE_EXTS)}")
            for dim in ("width", "height"):
                if type(s.get(dim)) is not int or s.get(dim) <= 0:
                    bad(f"{f}.{dim}", "must be a positive integer")
            if not isinstance(s.get("sha256"), str) or not re.fullmatch(r"[0-9a-f]{64}", s["sha256"]):
                bad(f + ".sha256", "must be a 64-character hex digest")
            for flag in ("understanding", "generation"):
                if not isinstance(s.get(flag), bool):
                    bad(f"{f}.{flag}", "must be true or false")
            if s.get("understanding") is False and s.get("generation") is False:
                bad(f, "an image must be an understanding input, a generation target, or both")
            if s.get("role") not in IMAGE_ROLES:
                bad(f + ".role", f"is {s.get('role')!r}, expected one of {', '.join(IMAGE_ROLES)}")
            _optional_fields(s, f + ".", {"provenance": dict}, bad)
        else:
            bad(f + ".type", f"is {s.get('type')!r}, expected 'text' or 'image'")
    return problems


def validate(sample: Sample) -> None:
    """Raise SampleError with every problem of an in-memory sample."""
    problems = validate_json(sample.to_json())
    if problems:
        raise SampleError("; ".join(problems))


def sample_from_json(doc: dict, images: list[bytes]) -> Sample:
    """Rebuild a Sample from its JSON member and the image bytes in index order."""
    problems = validate_json(doc)
    if problems:
        raise SampleError("; ".join(problems))
    segs: list[Segment] = []
    for s in doc["segments"]:
        if s["type"] == "text":
            segs.append(
                TextSegment(
                    text=s["text"],
                    role=s["role"],
                    loss=s["loss"],
                    prompt_id=s.get("prompt_id"),
                    status=s.get("status"),
                    meta=s.get("meta", {}),
                )
            )
        else:
            if s["index"] >= len(images):
                raise _fail(doc["key"], f"segments image {s['index']}", "image member is missing")
            segs.append(
                ImageSegment(
                    data=images[s["index"]],
                    ext=s["ext"],
                    width=s["width"],
                    height=s["height"],
                    understanding=s["understanding"],
                    generation=s["generation"],
                    role=s["role"],
                    provenance=s.get("provenance", {}),
                    sha256=s["sha256"],
                )
            )
    src = doc["source"]
    cap = doc.get("captioner")
    return Sample(
        key=doc["key"],
        kind=doc["kind"],
        segments=tuple(segs),
        source=Source(
            uri=src["uri"],
            licence=src.get("licence"),
            span=tuple(src["span"]) if src.get("span") is not None else None,
            position=src.get("position"),
            extra=src.get("extra", {}),
        ),
        captioner=CaptionerInfo(cap["backend"], cap["model"], tuple(cap.get("prompt_ids", ()))) if cap else None,
        meta=doc.get("meta", {}),
        schema_version=doc["schema_version"],
    )
