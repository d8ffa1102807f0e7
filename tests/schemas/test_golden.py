"""The committed golden shard decodes, with today's code, to the samples it was written from.

tests/data/golden-000000.tar was written by ``make_golden_samples`` through ``schemas.ShardWriter``.
A change that breaks reading shards already on disk fails here. Regenerate (only for a deliberate
format change, with a new SCHEMA_VERSION) with ``python tests/schemas/test_golden.py``.
"""

from __future__ import annotations

import io
from pathlib import Path

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden-000000.tar"

RED, GREEN, BLUE = (220, 20, 20), (20, 180, 40), (30, 60, 220)


def _png(color, size) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def make_golden_samples():
    from schemas import CaptionerInfo, ImageSegment, Sample, Source, TextSegment

    video = Sample(
        key="clip_a-0001",
        kind="video",
        segments=(
            ImageSegment(_png(RED, (8, 6)), "png", 8, 6, understanding=True, generation=False, role="frame",
                         provenance={"t": 0.5}),
            TextSegment("the square turns green", role="change", loss=True, prompt_id="change_caption@v1",
                        status="ok"),
            ImageSegment(_png(GREEN, (8, 6)), "png", 8, 6, understanding=True, generation=True, role="frame",
                         provenance={"t": 1.5}),
        ),
        source=Source("file:///videos/clip_a.mp4", licence="CC-BY-4.0", span=(0.0, 2.0)),
        captioner=CaptionerInfo("stub", "stub-model", ("change_caption@v1",)),
        meta={"shot": 3},
    )
    web = Sample(
        key="page_b-0002",
        kind="web",
        segments=(
            TextSegment("How to fold a paper boat.", role="body", loss=True),
            TextSegment("a blue sheet of paper", role="caption", loss=False),
            ImageSegment(_png(BLUE, (5, 7)), "png", 5, 7, understanding=True, generation=True, role="image",
                         provenance={"url": "https://example.org/b.png"}),
        ),
        source=Source("https://example.org/boat", position=2, extra={"lang": "en"}),
        captioner=None,
    )
    return [video, web]


EXPECTED_JSON = [
    {
        "captioner": {"backend": "stub", "model": "stub-model", "prompt_ids": ["change_caption@v1"]},
        "key": "clip_a-0001",
        "kind": "video",
        "meta": {"shot": 3},
        "schema_version": 1,
        "segments": [
            {"ext": "png", "generation": False, "height": 6, "index": 0, "provenance": {"t": 0.5}, "role": "frame",
             "sha256": "4408573b26688de9a963ff56d7e7a48ee13dc65929919975183e75f27dc8b5d1", "type": "image",
             "understanding": True, "width": 8},
            {"loss": True, "prompt_id": "change_caption@v1", "role": "change", "status": "ok",
             "text": "the square turns green", "type": "text"},
            {"ext": "png", "generation": True, "height": 6, "index": 1, "provenance": {"t": 1.5}, "role": "frame",
             "sha256": "ee05cdf2cba9632bf2b3b6f14d116c40b8e1ac2dea11c355c956fd06a7dbaa95", "type": "image",
             "understanding": True, "width": 8},
        ],
        "source": {"licence": "CC-BY-4.0", "span": [0.0, 2.0], "uri": "file:///videos/clip_a.mp4"},
    },
    {
        "captioner": None,
        "key": "page_b-0002",
        "kind": "web",
        "meta": {},
        "schema_version": 1,
        "segments": [
            {"loss": True, "role": "body", "text": "How to fold a paper boat.", "type": "text"},
            {"loss": False, "role": "caption", "text": "a blue sheet of paper", "type": "text"},
            {"ext": "png", "generation": True, "height": 7, "index": 0,
             "provenance": {"url": "https://example.org/b.png"}, "role": "image",
             "sha256": "8c9fb7604d43a249599715ca744d0483d01e3e8e41da682be083b0f0eb2783ab", "type": "image",
             "understanding": True, "width": 5},
        ],
        "source": {"extra": {"lang": "en"}, "position": 2, "uri": "https://example.org/boat"},
    },
]

EXPECTED_PIXELS = {
    ("clip_a-0001", 0): ((8, 6), RED),
    ("clip_a-0001", 1): ((8, 6), GREEN),
    ("page_b-0002", 0): ((5, 7), BLUE),
}


def test_golden_shard_decodes_to_the_expected_samples():
    from PIL import Image

    from schemas import read_samples

    samples = list(read_samples(GOLDEN))
    assert [s.to_json() for s in samples] == EXPECTED_JSON
    for s in samples:
        for i, img in enumerate(s.images):
            size, color = EXPECTED_PIXELS[(s.key, i)]
            with Image.open(io.BytesIO(img.data)) as im:
                assert im.size == size
                assert set(im.convert("RGB").getdata()) == {color}


def test_golden_shard_passes_validate():
    from pipelines.commands.validate import validate_shard

    assert validate_shard(GOLDEN) == (2, [])


def test_todays_writer_produces_the_golden_bytes(tmp_path):
    """Encoding is stable: the same samples give a byte-identical shard (mtime 0, fixed member order)."""
    from schemas import ShardWriter, read_samples

    with ShardWriter(tmp_path, "golden") as w:
        for s in read_samples(GOLDEN):
            w.write(s)
    assert (tmp_path / GOLDEN.name).read_bytes() == GOLDEN.read_bytes()


if __name__ == "__main__":
    from schemas import ShardWriter
    from schemas.writer import stats_path

    GOLDEN.unlink(missing_ok=True)
    with ShardWriter(GOLDEN.parent, "golden") as w:
        for s in make_golden_samples():
            w.write(s)
    stats_path(GOLDEN).unlink()
    print(f"wrote {GOLDEN}")
