"""BAGEL export: exact column types and list lengths, parquet_info keys as BAGEL's loader builds them,
instruction lists lined up with image transitions, every row traced to its source key, drops explained."""

from __future__ import annotations

import io
import itertools
import json
import os
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from export_samples import all_samples, image_bytes, reasoning_edit_sample, video_sample, web_sample, write_run
from PIL import Image

from pipelines.export.bagel import BagelExportConfig, export_bagel
from schemas import ImageSegment, Sample, ShardWriter, Source, TextSegment

pytestmark = pytest.mark.timeout(120)

T2I_SCHEMA = pa.schema([("image", pa.binary()), ("captions", pa.string()), ("braid_key", pa.string()),
                        ("image_index", pa.int32()), ("kind", pa.string())])
EDIT_SCHEMA = pa.schema([("image_list", pa.list_(pa.binary())), ("instruction_list", pa.list_(pa.list_(pa.string()))),
                         ("braid_key", pa.string()), ("kind", pa.string())])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    samples = all_samples()
    d = write_run(tmp_path_factory.mktemp("run"), samples)
    out = tmp_path_factory.mktemp("exp") / "bagel"
    rep = export_bagel([d], out, BagelExportConfig.tiny())
    return {s.key: s for s in samples}, out, rep, d


def read(path) -> str:
    return Path(path).read_text(encoding="utf-8")


def rows(d):
    out = []
    for f in sorted(os.listdir(d)):
        out += pq.read_table(os.path.join(d, f)).to_pylist()
    return out


def test_parquet_columns_types_and_lengths(run):
    samples, out, _, _ = run
    for f in os.listdir(out / "t2i_pretrain"):
        assert pq.read_schema(out / "t2i_pretrain" / f).remove_metadata() == T2I_SCHEMA
    for f in os.listdir(out / "unified_edit"):
        assert pq.read_schema(out / "unified_edit" / f).remove_metadata() == EDIT_SCHEMA
    t2i, edit = rows(out / "t2i_pretrain"), rows(out / "unified_edit")
    assert t2i and edit
    for r in t2i:
        caps = json.loads(r["captions"])
        assert isinstance(caps, dict) and caps and all(isinstance(v, str) and v.strip() for v in caps.values())
        assert r["image"] == samples[r["braid_key"]].images[r["image_index"]].data  # bytes unchanged
    for r in edit:
        src = samples[r["braid_key"]]
        assert len(r["image_list"]) == len(src.images) >= 2
        assert len(r["instruction_list"]) == len(r["image_list"]) - 1
        assert all(alts and all(a.strip() for a in alts) for alts in r["instruction_list"])
        assert r["image_list"] == [im.data for im in src.images]
    # row groups sized by the config: BAGEL reads one row group at a time
    for sub in ("t2i_pretrain", "unified_edit"):
        for f in os.listdir(out / sub):
            md = pq.ParquetFile(out / sub / f).metadata
            assert all(md.row_group(i).num_rows <= 2 for i in range(md.num_row_groups))


def test_every_sample_maps_back_to_its_source(run):
    samples, out, rep, _ = run
    exported = {r["braid_key"] for r in rows(out / "t2i_pretrain") + rows(out / "unified_edit")}
    vlm = [json.loads(line) for line in read(out / "vlm_sft" / "braid_vlm.jsonl").splitlines()]
    exported |= {r["id"] for r in vlm}
    dropped = {json.loads(line)["key"] for line in read(out / "dropped.jsonl").splitlines()}
    assert exported <= samples.keys()
    assert exported | dropped == samples.keys()
    assert rep["samples_read"] == len(samples)


def test_parquet_info_keys_are_what_bagels_loader_builds(run, tmp_path):
    _samples, out, _, _ = run
    info = json.loads(read(out / "bagel_dataset_info.json"))["unified_edit"]["braid_interleave"]
    parquet_info = json.loads(read(info["parquet_info_path"]))
    data_dir = info["data_dir"]
    # BAGEL: get_parquet_data_paths lists data_dir and joins; ParquetStandardIterableDataset keeps listed keys only
    listed = [os.path.join(data_dir, n) for n in os.listdir(data_dir) if n.endswith(".parquet")]
    assert sorted(listed) == sorted(parquet_info)
    for path, meta in parquet_info.items():
        assert pq.ParquetFile(path).num_row_groups == meta["num_row_groups"] >= 1
    # a different training location: keys follow --data-root, files stay where they are
    rep = export_bagel([run[3]], tmp_path / "b", BagelExportConfig(data_root="/mnt/train/braid", rows_per_group=2))
    moved = json.loads(read(tmp_path / "b" / "unified_edit_parquet_info.json"))
    assert all(k.startswith("/mnt/train/braid/unified_edit/part-") for k in moved)
    assert "'/mnt/train/braid/unified_edit'" in rep["data_dir_rule"]
    assert "/mnt/train/braid/unified_edit" in (tmp_path / "b" / "README.md").read_text()
    assert "'data_dir': '/mnt/train/braid/unified_edit'" in (tmp_path / "b" / "bagel_dataset_info.py").read_text()


def test_instruction_lists_line_up_with_transitions(run):
    samples, out, _, _ = run
    by_key = {r["braid_key"]: r for r in rows(out / "unified_edit")}
    for key, s in samples.items():
        if key not in by_key:
            continue
        r = by_key[key]
        segs = list(s.segments)
        pos = [i for i, x in enumerate(segs) if isinstance(x, ImageSegment)]
        for t, (a, b) in enumerate(itertools.pairwise(pos)):
            between = [x for x in segs[a + 1 : b] if isinstance(x, TextSegment) and x.role != "system"]
            alts = r["instruction_list"][t]
            assert alts[0] == " ".join(x.text for x in between)  # everything between image t and t+1
            if s.kind == "video":
                assert alts == [between[0].text]  # the change caption of frames t -> t+1
            elif s.kind == "web":
                assert alts[1] == between[-1].text and between[-1].role == "caption"  # caption of image t+1
            else:
                assert alts[1] == "Make the cup red." and "<think>" in alts[0]


def test_caption_first_pairs_and_single_image_t2i(run):
    samples, out, _, _ = run
    t2i = rows(out / "t2i_pretrain")
    web = [s for s in samples.values() if s.kind == "web"]
    pairs = [r for r in t2i if r["kind"] == "web"]
    assert len(pairs) == sum(len(s.images) for s in web)
    for r in pairs:
        segs = list(samples[r["braid_key"]].segments)
        img_pos = [i for i, x in enumerate(segs) if isinstance(x, ImageSegment)][r["image_index"]]
        caps = json.loads(r["captions"])
        assert caps["caption"] == segs[img_pos - 1].text and caps["alt"] == f"step {r['image_index'] + 1}"
    rt = [r for r in t2i if r["kind"] == "reasoning_t2i"]
    assert len(rt) == 2
    for r in rt:
        caps = json.loads(r["captions"])
        assert caps["short"].startswith("a cosy reading corner") and "<think>" in caps["full"]
        assert "planning process" not in caps["full"]  # the system prompt has no slot


def test_vlm_jsonl_is_llava_style(run):
    samples, out, _, _ = run
    info = json.loads(read(out / "bagel_dataset_info.json"))["vlm_sft"]["braid_vlm"]
    (row,) = [json.loads(line) for line in read(info["jsonl_path"]).splitlines()]
    src = samples[row["id"]]
    assert row["braid_key"] == src.key
    paths = row["image"] if isinstance(row["image"], list) else [row["image"]]
    assert [Path(info["data_dir"], p).read_bytes() for p in paths] == [im.data for im in src.images]
    conv = row["conversations"]
    assert [c["from"] for c in conv] == ["human", "gpt"]
    assert sum(c["value"].count("<image>") for c in conv) == len(src.images)
    assert conv[0]["value"] == "<image>\nWhat is in the picture?" and conv[1]["value"].startswith("A transparent sticker")


def test_rows_load_the_way_bagels_loaders_read_them(run):
    """The same calls BAGEL's T2I and unified_edit loaders make: row group -> pandas -> PIL / json / random.choice."""
    _, out, _, _ = run
    rng = random.Random(0)
    info = json.loads(read(out / "unified_edit_parquet_info.json"))
    for path, meta in info.items():
        for rg in range(meta["num_row_groups"]):
            df = pq.ParquetFile(path).read_row_group(rg).to_pandas()
            for _, row in df.iterrows():
                n = len(row["image_list"])
                for i in range(n):
                    Image.open(io.BytesIO(row["image_list"][i])).convert("RGB")
                for i in range(1, n):
                    assert isinstance(rng.choice(row["instruction_list"][i - 1]), str)
    for f in os.listdir(out / "t2i_pretrain"):
        df = pq.ParquetFile(out / "t2i_pretrain" / f).read_row_group(0).to_pandas()
        for _, row in df.iterrows():
            Image.open(io.BytesIO(row["image"])).convert("RGB")
            assert json.loads(row["captions"])


def test_readme_says_what_went_where_and_what_was_dropped(tmp_path):
    nogap = Sample("nogap-1", "video", (ImageSegment(image_bytes(1), "jpg", 96, 64, role="frame"),
                                        ImageSegment(image_bytes(2), "jpg", 96, 64, generation=True, role="frame")),
                   Source("file:///v.mp4"))
    samples = [video_sample(0), web_sample(0), reasoning_edit_sample(0), nogap]
    d = write_run(tmp_path / "run", samples)
    rep = export_bagel([d], tmp_path / "out", BagelExportConfig.tiny())
    readme = (tmp_path / "out" / "README.md").read_text()
    assert rep["dropped_samples"] == {"transition_without_text": 1}
    assert json.loads(read(tmp_path / "out" / "dropped.jsonl").splitlines()[0])["key"] == "nogap-1"
    assert "transition_without_text: 1" in readme
    # web text before the first image and after the last cannot be carried by the edit format
    assert rep["dropped_parts"]["leading_text:body"] == 2 and rep["dropped_parts"]["trailing_text:body"] == 1
    assert "leading_text:body: 2 (text before the first image" in readme
    assert "| web | interleave | 1 |" in readme and "| web | caption_pairs | 3 |" in readme
    assert "vlm_sft" not in json.loads(read(tmp_path / "out" / "bagel_dataset_info.json"))


def test_large_images_reencoded_others_copied(tmp_path):
    big = ImageSegment(image_bytes(5, (400, 300)), "jpg", 400, 300, understanding=False, generation=True)
    s = Sample("big-1", "pair", (TextSegment("a big photo", "caption", False), big), Source("https://x.org/b.jpg"))
    d = write_run(tmp_path / "run", [s, web_sample(1)])
    rep = export_bagel([d], tmp_path / "out", BagelExportConfig(max_pixels=60_000))
    assert rep["images_reencoded"] == 1
    (row,) = [r for r in rows(tmp_path / "out" / "t2i_pretrain") if r["braid_key"] == "big-1"]
    w, h = Image.open(io.BytesIO(row["image"])).size
    assert w * h <= 60_000 and abs(w / h - 4 / 3) < 0.02
    web_rows = [r for r in rows(tmp_path / "out" / "unified_edit")]
    assert web_rows[0]["image_list"] == [im.data for im in web_sample(1).images]


def test_unreadable_sample_is_recorded_not_fatal(tmp_path):
    import tarfile

    good = write_run(tmp_path / "run", [video_sample(0)])
    bad = tmp_path / "run" / "extra.tar"
    with tarfile.open(bad, "w") as tar:
        data = b"{not json"
        info = tarfile.TarInfo("broken-1.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    garbled = Sample("garbled-1", "pair", (TextSegment("a photo", "caption", False),
                                          ImageSegment(b"\xff\xd8 not really a jpeg", "jpg", 10, 10, generation=True)),
                     Source("https://x.org/g.jpg"))
    write_run(tmp_path / "run2", [garbled])
    rep = export_bagel([good / "shard-r00-000000.tar", bad, tmp_path / "run2"], tmp_path / "out")
    assert rep["rows"]["interleave"] == 1 and rep["rows"]["t2i"] == 0
    assert rep["dropped_samples"] == {"invalid_sample": 1, "image_unreadable": 1}
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "invalid_sample: 1" in readme and "image_unreadable: 1" in readme


def test_shardwriter_roundtrip_keeps_incomplete_shards_out(tmp_path):
    d = tmp_path / "run"
    with ShardWriter(d, "shard-r00", max_count=1) as w:
        w.write(video_sample(0))
        w.write(video_sample(1))
    os.remove(d / "shard-r00-000001_stats.json")  # as if the run were still writing it
    rep = export_bagel([d], tmp_path / "out")
    assert rep["samples_read"] == 1 and "incomplete" in rep["skipped_shards"][0]
