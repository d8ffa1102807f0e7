"""Exports of shards written by a real pipeline run: ``braid reason`` (in-process, with the reasoning tests'
stand-in model) over video, web and pair shards. Every exported row maps back to a sample of the run, and
the HF card carries that run's summary and configuration."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.export.bagel import export_bagel
from pipelines.export.hf import export_hf
from pipelines.export.omnicorpus import document_to_sample, export_omnicorpus
from schemas import read_samples

pytestmark = pytest.mark.timeout(180)
REASON_TESTS = Path(__file__).resolve().parents[1] / "pipelines" / "reasoning_aug"


@pytest.fixture(scope="module")
def reason_run(tmp_path_factory):
    sys.path.insert(0, str(REASON_TESTS))
    try:
        import reason_inputs as ri
    finally:
        sys.path.remove(str(REASON_TESTS))
    from pipelines.core.executor import RunConfig, run_pipeline
    from pipelines.reasoning_aug import pipeline as reason
    from pipelines.reasoning_aug.config import ReasonCaptionConfig, ReasonConfig

    src = tmp_path_factory.mktemp("src")
    inputs = [ri.write_shard(src, "video", [ri.video_sample(0), ri.video_sample(1)]),
              ri.write_shard(src, "web", [ri.web_sample(0), ri.web_sample(1)]),
              ri.write_shard(src, "pair", [ri.pair_sample(0)])]
    out = tmp_path_factory.mktemp("reason")
    cfg = ReasonConfig(run=RunConfig(out_dir=str(out), executor="local", num_cpus=2),
                       caption=ReasonCaptionConfig(batch_size=4))
    summary = run_pipeline(reason.build_stages(cfg, ri.StandInCaptioner),
                           reason.list_inputs([str(p) for p in inputs], cfg), cfg.run, reason.NAME, cfg)
    assert summary["written"] > 0
    return src, out


def test_bagel_export_of_a_real_run(reason_run, tmp_path):
    src, out = reason_run
    samples = {s.key: s for s in read_samples(sorted(out.glob("*.tar")) + sorted(src.glob("*.tar")))}
    kinds = {s.kind for s in samples.values()}
    assert {"reasoning_t2i", "reasoning_edit", "video", "web"} <= kinds
    rep = export_bagel([out, src], tmp_path / "bagel")
    keys = set()
    for sub in ("t2i_pretrain", "unified_edit"):
        for f in (tmp_path / "bagel" / sub).glob("*.parquet"):
            for row in pq.read_table(f).to_pylist():
                keys.add(row["braid_key"])
                if sub == "unified_edit":
                    assert len(row["instruction_list"]) == len(row["image_list"]) - 1
                    assert row["image_list"] == [im.data for im in samples[row["braid_key"]].images]
    vlm = tmp_path / "bagel" / "vlm_sft" / "braid_vlm.jsonl"
    keys |= {json.loads(x)["id"] for x in vlm.read_text().splitlines()} if vlm.exists() else set()
    dropped = [json.loads(x) for x in (tmp_path / "bagel" / "dropped.jsonl").read_text().splitlines()]
    assert keys <= samples.keys()
    assert keys | {d["key"] for d in dropped} == samples.keys()
    assert rep["samples_read"] == len(samples)
    t2i_kinds = {k for k, routes in rep["routes"].items() if "t2i" in routes or "caption_pairs" in routes}
    assert {"reasoning_t2i", "web", "pair"} <= t2i_kinds


def test_hf_and_omnicorpus_exports_of_a_real_run(reason_run, tmp_path):
    _, out = reason_run
    samples = {s.key: s for s in read_samples(sorted(out.glob("*.tar")))}
    export_hf([out], tmp_path / "hf")
    text = (tmp_path / "hf" / "README.md").read_text()
    assert "Pipeline `reason`" in text and '"kinds"' in text  # the run's summary and its configuration
    export_omnicorpus([out], tmp_path / "oc")
    seen = 0
    for f in (tmp_path / "oc" / "data").glob("*.parquet"):
        for doc in pq.read_table(f).to_pylist():
            back = document_to_sample(doc)
            assert back.to_json() == samples[back.key].to_json()
            seen += 1
    assert seen == len(samples)
