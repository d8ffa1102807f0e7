"""OmniCorpus-style export: aligned texts/images with nulls, metadata and general metadata; images embedded or
written beside; every document turns back into exactly the sample it came from."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from export_samples import all_samples, write_run

from pipelines.export.omnicorpus import OmniCorpusExportConfig, document_to_sample, export_omnicorpus

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    samples = all_samples()
    return {s.key: s for s in samples}, write_run(tmp_path_factory.mktemp("run"), samples)


def _same(a, b):
    assert a.to_json() == b.to_json()
    assert [im.data for im in a.images] == [im.data for im in b.images]


def test_embedded_parquet_round_trip(shards, tmp_path):
    samples, d = shards
    rep = export_omnicorpus([d], tmp_path / "out", OmniCorpusExportConfig.tiny())
    files = sorted((tmp_path / "out" / "data").glob("*.parquet"))
    assert len(files) == len(rep["files"]) >= 2  # split by size
    schema = pq.read_schema(files[0]).remove_metadata()
    assert schema == pa.schema([("texts", pa.list_(pa.string())), ("images", pa.list_(pa.binary())),
                                ("metadata", pa.list_(pa.string())), ("general_metadata", pa.string())])
    seen = set()
    for f in files:
        for doc in pq.read_table(f).to_pylist():
            assert len(doc["texts"]) == len(doc["images"]) == len(doc["metadata"])
            assert all((t is None) != (i is None) for t, i in zip(doc["texts"], doc["images"]))  # one modality a slot
            general = json.loads(doc["general_metadata"])
            src = samples[general["id"]]
            assert general["kind"] == src.kind and general["url"] == src.source.uri
            _same(document_to_sample(doc), src)
            seen.add(general["id"])
    assert seen == samples.keys()


def test_jsonl_with_image_files_round_trip(shards, tmp_path):
    samples, d = shards
    out = tmp_path / "out"
    rep = export_omnicorpus([d], out, OmniCorpusExportConfig(images="files", format="jsonl"))
    assert rep["files"] == ["documents.jsonl"] and rep["documents"] == len(samples)
    docs = [json.loads(line) for line in (out / "documents.jsonl").read_text().splitlines()]
    for doc in docs:
        paths = [p for p in doc["images"] if p is not None]
        assert all(not p.startswith("/") and (out / p).is_file() for p in paths)
        assert isinstance(doc["general_metadata"], dict) and isinstance(doc["metadata"][0], dict)
        _same(document_to_sample(doc, lambda p: (out / p).read_bytes()), samples[doc["general_metadata"]["id"]])
    assert "documents, " in (out / "README.md").read_text()


def test_files_in_parquet(shards, tmp_path):
    samples, d = shards
    out = tmp_path / "out"
    export_omnicorpus([d], out, OmniCorpusExportConfig(images="files"))
    table = pq.read_table(next((out / "data").glob("*.parquet")))
    assert table.schema.field("images").type == pa.list_(pa.string())
    doc = table.to_pylist()[0]
    _same(document_to_sample(doc, lambda p: (out / p).read_bytes()), samples[json.loads(doc["general_metadata"])["id"]])


def test_jsonl_needs_image_files():
    with pytest.raises(ValueError, match="needs images 'files'"):
        OmniCorpusExportConfig(format="jsonl")
