"""Sample types: encode/decode round trip, validation messages that name the key and the field, keys."""

from __future__ import annotations

import pytest
from samples import jpeg_bytes, make_sample

from schemas import (
    CaptionerInfo,
    ImageSegment,
    Sample,
    SampleError,
    Source,
    TextSegment,
    decode_sample,
    encode_sample,
    make_key,
    validate,
)
from schemas.wds import split_member


def _members(sample):
    return {split_member(name)[1]: data for name, data in encode_sample(sample)}


def test_round_trip_keeps_every_field():
    s = Sample(
        key="doc_1-abc",
        kind="reasoning_edit",
        segments=(
            TextSegment("make the sky purple", role="instruction", loss=False, meta={"lang": "en"}),
            ImageSegment(jpeg_bytes((10, 20, 30)), "jpg", 64, 48, understanding=True, generation=False,
                         role="source", provenance={"url": "https://x/y.jpg"}),
            TextSegment("<think>purple sky</think>", role="think", loss=True, prompt_id="think@v2", status="truncated"),
            ImageSegment(jpeg_bytes((200, 0, 200)), "jpg", 64, 48, understanding=False, generation=True,
                         role="target"),
        ),
        source=Source("https://x/page", licence="CC0", position=4, extra={"row": 7}),
        captioner=CaptionerInfo("vllm", "Qwen/Qwen2.5-VL-3B-Instruct", ("think@v2",)),
        meta={"scores": {"clip": 0.31}},
    )
    members = _members(s)
    assert sorted(members) == ["000.jpg", "001.jpg", "json"]
    assert decode_sample(s.key, members) == s


def test_members_are_json_first_then_images_in_order():
    names = [n for n, _ in encode_sample(make_sample("k-1", n_images=3))]
    assert names == ["k-1.json", "k-1.000.jpg", "k-1.001.jpg", "k-1.002.jpg"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: s.replace(key="a.b"), "key"),
        (lambda s: s.replace(kind="podcast"), "kind"),
        (lambda s: s.replace(segments=()), "segments"),
        (lambda s: s.replace(source=Source("")), "source.uri"),
        (lambda s: s.replace(segments=(s.segments[0], TextSegment("x", role="shout"))), "segments[1].role"),
        (lambda s: s.replace(segments=(ImageSegment(b"x", "gif", 1, 1),)), "segments[0].ext"),
        (lambda s: s.replace(segments=(ImageSegment(b"x", "jpg", 0, 1),)), "segments[0].width"),
    ],
)
def test_validation_names_the_key_and_the_field(change, field):
    bad = change(make_sample("k-7"))
    with pytest.raises(SampleError) as e:
        validate(bad)
    assert f"field {field!r}" in str(e.value)
    assert repr(bad.key) in str(e.value)
    with pytest.raises(SampleError):
        encode_sample(bad)  # nothing invalid reaches a shard


def test_an_image_must_be_understanding_or_generation_or_both():
    img = ImageSegment(jpeg_bytes(), "jpg", 64, 48, understanding=False, generation=False)
    with pytest.raises(SampleError, match=r"'k-8'.*segments\[0\].*understanding input, a generation target"):
        validate(make_sample("k-8").replace(segments=(img,)))


def test_decode_reports_missing_image_member_and_bad_json():
    members = _members(make_sample("k-9", n_images=2))
    del members["001.jpg"]
    with pytest.raises(SampleError, match=r"'k-9'.*member k-9.001.jpg is missing"):
        decode_sample("k-9", members)
    with pytest.raises(SampleError, match=r"'k-9': field 'json': not valid JSON"):
        decode_sample("k-9", {"json": b"{not json"})


def test_keys_are_deterministic_dot_free_and_distinct():
    a = make_key("https://example.org/videos/clip.v2.mp4", 12.5, 14.0)
    assert a == make_key("https://example.org/videos/clip.v2.mp4", 12.5, 14.0)
    assert "." not in a and a != make_key("https://example.org/videos/clip.v2.mp4", 14.0, 16.0)
    validate(make_sample(a))


def test_the_writer_refuses_what_the_reader_would_refuse(monkeypatch):
    from schemas import wds

    deep: dict = {}
    for _ in range(70):
        deep = {"d": deep}
    with pytest.raises(SampleError, match=r"'k-d': field 'json': nested deeper than 64 levels"):
        encode_sample(make_sample("k-d").replace(meta=deep))
    sample = make_sample("k-b", n_images=3)
    sizes = [len(im.data) for im in sample.images]
    monkeypatch.setattr(wds, "MAX_MEMBER_BYTES", max(sizes) - 1)
    with pytest.raises(SampleError, match=r"'k-b': member k-b.00\d.jpg has \d+ bytes, over the limit"):
        encode_sample(sample)
    monkeypatch.setattr(wds, "MAX_MEMBER_BYTES", max(sizes))
    monkeypatch.setattr(wds, "MAX_SAMPLE_BYTES", sum(sizes))
    with pytest.raises(SampleError, match=r"'k-b': \d+ bytes, over the limit of \d+ per sample"):
        encode_sample(sample)
    monkeypatch.setattr(wds, "MAX_SAMPLE_MEMBERS", 3)
    with pytest.raises(SampleError, match=r"'k-b': 4 members, over the limit of 3 per sample"):
        encode_sample(sample)
