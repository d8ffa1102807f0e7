"""The same shards read back identically through webdataset, Hugging Face datasets and Ray Data.

Samples differ in their number of images, as interleaved samples do. Hugging Face's ``webdataset``
builder infers columns from the first five samples and refuses shards whose samples differ in
members; for those, ``features`` listing every member (built here from the shards) makes it read them.
"""

from __future__ import annotations

import json

import pytest
from samples import make_sample

from schemas import ShardWriter, iter_members


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("interop")
    with ShardWriter(d, "shard", max_count=3) as w:
        for i in range(5):
            w.write(make_sample(f"k-{i}", kind="video" if i % 2 else "web", n_images=1 + i % 3, caption=f"c{i}"))
    paths = sorted(str(p) for p in d.glob("*.tar"))
    expected = {key: members for p in paths for key, members in iter_members(p)}
    return paths, expected


def _drop_nulls(x):
    """Arrow gives every struct in a list the union of their fields, the missing ones as null."""
    if isinstance(x, dict):
        return {k: _drop_nulls(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [_drop_nulls(v) for v in x]
    return x


def test_webdataset_reads_every_member_byte_for_byte(shards):
    import webdataset as wds

    paths, expected = shards
    got = {}
    for s in wds.WebDataset(paths, shardshuffle=False):  # no .decode(): raw bytes, nothing unpickled
        got[s["__key__"]] = {k: v for k, v in s.items() if not k.startswith("__")}
    assert got == expected


def _hf_features(expected):
    import datasets
    import pyarrow as pa

    docs = [json.loads(m["json"]) for m in expected.values()]
    feats = datasets.Features.from_arrow_schema(pa.Table.from_pylist([{"json": d} for d in docs]).schema)
    for suffix in sorted({s for m in expected.values() for s in m} - {"json"}):
        feats[suffix] = datasets.Image(decode=False)
    feats["__key__"] = datasets.Value("string")
    feats["__url__"] = datasets.Value("string")
    return feats


def test_hugging_face_datasets_reads_the_same_samples(shards, tmp_path):
    import datasets

    paths, expected = shards
    ds = datasets.load_dataset("webdataset", data_files={"train": paths}, split="train",
                               features=_hf_features(expected), cache_dir=str(tmp_path / "hf"))
    got = {}
    for row in ds:
        key = row["__key__"]
        assert _drop_nulls(row["json"]) == json.loads(expected[key]["json"])
        got[key] = {k: v["bytes"] for k, v in row.items() if k not in ("json", "__key__", "__url__") and v is not None}
    assert got == {k: {s: b for s, b in m.items() if s != "json"} for k, m in expected.items()}


def test_hugging_face_datasets_infers_uniform_shards_on_its_own(tmp_path):
    import datasets

    with ShardWriter(tmp_path, "u") as w:
        for i in range(3):
            w.write(make_sample(f"u-{i}", n_images=2))
    ds = datasets.load_dataset("webdataset", data_files={"train": [str(tmp_path / "u-000000.tar")]},
                               split="train", cache_dir=str(tmp_path / "hf"))
    assert [r["__key__"] for r in ds] == ["u-0", "u-1", "u-2"]
    row = ds[1]
    assert row["json"]["key"] == "u-1" and row["000.jpg"].size == (64, 48)  # decoded by PIL, not unpickled


@pytest.mark.timeout(120)
def test_ray_data_reads_the_same_samples(shards, ray_local):
    paths, expected = shards
    rows = ray_local.data.read_webdataset(paths, decoder=None).take_all()
    # a member a sample lacks comes back as None or NaN (the column exists for the other samples)
    got = {r["__key__"]: {k: v for k, v in r.items() if not k.startswith("__") and isinstance(v, bytes)} for r in rows}
    assert got == expected
