"""End to end: pages served on loopback -> braid web -> shards, in-process and through local Ray."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from pipelines.commands.cli import main as braid
from pipelines.commands.run import run_job as run
from pipelines.web_interleave import pipeline as web
from pipelines.web_interleave.config import WebConfig
from schemas import load_manifest, read_samples, validate
from schemas.config import ConfigError, build_config

FAULT_REASONS = {"http_404", "http_500", "timeout", "too_large", "not_an_image", "pixel_cap", "too_many_redirects",
                 "refused_address", "robots", "ui_url", "outside_main"}  # outside_main: the site logo in <nav>


def run_web_job(specs: list[str], cfg: WebConfig) -> dict:
    web.check_config(cfg)
    return run(web, specs, cfg)


def web_cfg(out: Path, executor: str = "local", **over) -> WebConfig:
    base = {"run.out_dir": str(out), "run.executor": executor, "captioner.backend": "stub",
            "fetch.allow_private_net": True, "fetch.timeout_s": 6.0, "fetch.retries": 1, "fetch.backoff_s": 0.05,
            "fetch.max_bytes": 1 << 20, "filters.min_relevance": None}
    merged = {k: "null" if v is None else v for k, v in {**base, **over}.items()}  # None: unset the field
    return build_config(WebConfig, None, merged, preset="tiny")


def leaf_outcomes(out: Path) -> dict[str, dict]:
    recs = load_manifest(out)
    return {r["id"]: r for r in recs.values() if r["status"] != "split"}


def check_caption_first(sample, page_url: str | None = None) -> None:
    validate(sample)
    segs = sample.segments
    assert sample.kind == "web" and len(sample.images) >= 3
    for i, s in enumerate(segs):
        if type(s).__name__ == "ImageSegment":
            prev = segs[i - 1]
            assert type(prev).__name__ == "TextSegment" and prev.role == "caption" and prev.loss
            assert prev.prompt_id == "image_caption@v1" and prev.text
            assert s.generation and s.understanding and s.provenance["url"]
            assert prev.meta["pos"] == s.provenance["pos"]
    body_pos = [p for s in sample.texts if s.role == "body" for p in s.meta["pos"]]
    assert body_pos == sorted(body_pos) and all(s.loss for s in sample.texts)
    img_pos = [s.provenance["pos"] for s in sample.images]
    assert img_pos == sorted(img_pos)
    assert sample.captioner.backend == "stub" and "image_caption@v1" in sample.captioner.prompt_ids
    if page_url:
        assert sample.source.uri == page_url and sample.meta["doc_id"] == page_url
    assert "topic" in sample.meta and 0.0 <= sample.meta["topic"]["score"] <= 1.0


def validate_shards(out: Path) -> None:
    shards = sorted(str(p) for p in out.glob("*.tar"))
    assert shards
    if importlib.util.find_spec("pipelines.commands.validate") is not None:
        assert braid(["validate", *shards]) == 0
    for shard in shards:  # schema checks through schemas/ whether or not the command exists yet
        for s in read_samples(shard):
            validate(s)


def document_files(tmp: Path, base: str) -> list[str]:
    """An OmniCorpus Parquet (two documents), an OBELICS JSONL (one document and a broken line)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    g = f"{base}/gen/docimg"
    rows = [
        {"general_metadata": {"id": "omni-1", "url": "https://example.org/birdhouse"},
         "texts": ["Cut the panels.", None, "Drill the hole.", None, "Nail it together.", None, "Hang it up."],
         "images": [None, f"{g}/0.jpg", None, f"{g}/1.jpg", None, f"{g}/2.jpg", None],
         "metadata": [None, {"width": 480}, None, {"width": 480}, None, {"width": 480}, None]},
        {"general_metadata": {"id": "omni-2", "url": "https://example.org/short"},
         "texts": ["Only one picture here.", None], "images": [None, f"{g}/3.jpg"], "metadata": [None, None]},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp / "omni.parquet")
    ob = {"general_metadata": json.dumps({"url": "https://example.org/lantern", "warc_filename": "x.warc"}),
          "texts": ["Fold the sheet.", None, None, "Cut slits.", None],
          "images": [None, f"{g}/4.jpg", f"{g}/5.jpg", None, f"{g}/6.jpg"],
          "metadata": json.dumps([None, {"src": "a"}, {"src": "b"}, None, {"src": "c"}])}
    (tmp / "obelics.jsonl").write_text(json.dumps(ob) + "\n{not json\n")
    return [str(tmp / "omni.parquet"), str(tmp / "obelics.jsonl")]


@pytest.mark.timeout(240)
def test_generated_pages_and_documents_in_process(web_server, gen_site, tmp_path):
    pages = [f"{web_server}/gen/good/page-{i}/index.html" for i in range(3)]
    faults, two = f"{web_server}/gen/faults/index.html", f"{web_server}/gen/two/index.html"
    dead = f"{web_server}/gen/nope/index.html"
    files = document_files(tmp_path, web_server)
    out = tmp_path / "out"
    summary = run_web_job([*pages, faults, two, dead, *files], web_cfg(out))
    assert summary["inputs"] == 8 and summary["written"] + summary["filtered"] + summary["failed"] == 8
    leaves = leaf_outcomes(out)
    by_input = {}
    for r in leaves.values():
        by_input.setdefault(r["input"], []).append(r)

    samples = {s.source.uri: s for shard in out.glob("*.tar") for s in read_samples(shard)}
    for url in pages:
        check_caption_first(samples[url], url)
        text = " ".join(t.text for t in samples[url].texts if t.role == "body")
        assert "Step 1" in text and "Copyright" not in text and "Posted by" not in text and "Home" not in text
        assert len(samples[url].images) == 4
    # the page of fault cases: every bad image dropped for its own reason, the document left with too few
    fault_rec = next(r for r in leaves.values() if any("/x/" in e["src"] for e in r.get("images", [])))
    assert fault_rec["status"] == "filtered" and fault_rec["reason"] == "too_few_images"
    assert set(fault_rec["scores"]["dropped"]) == FAULT_REASONS, (fault_rec["scores"], fault_rec["detail"])
    assert fault_rec["scores"]["images"] == 0
    two_rec = [r for r in leaves.values() if r["status"] == "filtered" and r["stage"] == "read"]
    assert any(r["scores"]["images"] == 2 for r in two_rec)
    failed = [r for r in leaves.values() if r["status"] == "failed"]
    assert {r["error_kind"] for r in failed} == {"http_404", "bad_row"}
    # documents from files: one part per document, each with its own outcome
    assert "https://example.org/birdhouse" in samples and "https://example.org/lantern" in samples, [
        (r.get("reason"), r.get("detail")) for r in leaves.values() if r["status"] != "written"]
    check_caption_first(samples["https://example.org/birdhouse"])
    assert samples["https://example.org/birdhouse"].meta["format"] == "omnicorpus"
    assert samples["https://example.org/lantern"].meta["format"] == "obelics"
    assert [s.provenance["pos"] for s in samples["https://example.org/lantern"].images] == [1, 2, 4]
    assert summary["by_reason"].get("too_few_images", 0) >= 3  # faults, two, omni-2
    validate_shards(out)

    # the same command again rewrites nothing
    before = sorted(p.name for p in out.glob("*.tar"))
    again = run_web_job([*pages, faults, two, dead, *files], web_cfg(out))
    assert again["resumed_inputs"] == 8 and sorted(p.name for p in out.glob("*.tar")) == before


@pytest.mark.timeout(240)
def test_real_pages_in_process(web_server, shared_data, tmp_path):
    names = ["based_cooking/ravioli/index.html", "based_cooking/stuffed-round-squash/index.html",
             "based_cooking/tanzania-tea-with-milk/index.html",
             "carpentries/python-novice-inflammation/03-matplotlib.html",
             "carpentries/python-novice-gapminder/09-plotting.html"]
    urls = [f"{web_server}/docs/{n}" for n in names]
    out = tmp_path / "out"
    summary = run_web_job(urls, web_cfg(out, **{"filters.max_ocr_tokens": None}))
    assert summary["inputs"] == 5 and summary["written"] + summary["filtered"] + summary["failed"] == 5
    samples = {s.source.uri: s for shard in out.glob("*.tar") for s in read_samples(shard)}
    ravioli = samples[urls[0]]
    check_caption_first(ravioli, urls[0])
    assert [Path(s.provenance["url"]).name for s in ravioli.images] == [
        "ravioli-01.webp", "ravioli-02.webp", "ravioli-03.webp", "ravioli-04.webp"]
    assert all(s.ext == "webp" for s in ravioli.images)
    assert ravioli.meta["topic"]["label"] == "howto"
    plots = samples.get(urls[3])
    assert plots is not None, load_manifest(out)
    check_caption_first(plots, urls[3])
    assert all(s.ext == "png" for s in plots.images)  # SVG figures rasterised
    recs = {r["input"]: r for r in leaf_outcomes(out).values()}
    tea = next(r for r in recs.values() if r["status"] != "written" and r["scores"].get("images") == 2)
    assert tea["reason"] == "too_few_images"
    # the plotting lesson keeps more than eight images: BAGEL's 3-8 rule filters it
    assert summary["by_reason"].get("too_many_images") == 1
    validate_shards(out)


@pytest.mark.timeout(300)
def test_through_local_ray(web_server, gen_site, ray_local, tmp_path):
    pages = [f"{web_server}/gen/good/page-{i}/index.html" for i in range(2)] + [f"{web_server}/gen/faults/index.html"]
    out = tmp_path / "out"
    summary = run_web_job(pages, web_cfg(out, executor="ray", **{"filters.max_ocr_tokens": None}))
    assert (summary["inputs"], summary["written"], summary["filtered"], summary["failed"]) == (3, 2, 1, 0)
    samples = {s.source.uri: s for shard in out.glob("*.tar") for s in read_samples(shard)}
    for url in pages[:2]:
        check_caption_first(samples[url], url)
    rec = next(r for r in leaf_outcomes(out).values() if r["status"] == "filtered")
    assert set(rec["scores"]["dropped"]) == FAULT_REASONS
    validate_shards(out)


def test_command_line_and_config_errors(web_server, gen_site, tmp_path, capsys):
    out = tmp_path / "out"
    code = braid(["web", f"{web_server}/gen/good/page-0/index.html", "--out", str(out), "--captioner", "stub",
                  "--executor", "local", "--allow-private-net", "--set", "filters.min_relevance=null",
                  "--set", "filters.max_ocr_tokens=null"])
    assert code == 0 and json.loads((out / "summary.json").read_text())["written"] == 1
    assert braid(["web", "x.html", "--out", str(tmp_path / "o2"), "--captioner", "hf"]) == 2
    assert "needs a model" in capsys.readouterr().err
    summary = run_web_job([str(tmp_path / "missing.html")], web_cfg(tmp_path / "o3"))
    rec = next(iter(leaf_outcomes(tmp_path / "o3").values()))
    assert summary["failed"] == 1 and rec["error_kind"] == "not_found" and "missing.html" in rec["message"]
    with pytest.raises(ConfigError, match="min_images"):
        build_config(WebConfig, None, {"filters.min_images": 9})
    # without --allow-private-net, loopback pages are refused and recorded, not fetched
    summary = run_web_job([f"{web_server}/gen/good/page-0/index.html"],
                      web_cfg(tmp_path / "o4", **{"fetch.allow_private_net": False}))
    rec = next(iter(leaf_outcomes(tmp_path / "o4").values()))
    assert summary["failed"] == 1 and rec["error_kind"] == "refused_address"


@pytest.mark.timeout(300)
def test_tiny_model_through_the_real_hf_backend(web_server, gen_site, tiny_vlm, tmp_path):
    """The caption stage with a real model loaded through the hf backend: captions sit before their images
    and record the backend, model and prompt; the request cache serves a repeated run."""
    pages = [f"{web_server}/gen/good/page-{i}/index.html" for i in range(2)]
    out = tmp_path / "out"
    over = {"captioner.backend": "hf", "captioner.model": str(tiny_vlm), "filters.max_ocr_tokens": None}
    summary = run_web_job(pages, web_cfg(out, **over))
    assert (summary["inputs"], summary["written"] + summary["filtered"] + summary["failed"]) == (2, 2)
    samples = [s for shard in out.glob("*.tar") for s in read_samples(shard)]
    assert samples, leaf_outcomes(out)
    for s in samples:
        assert s.captioner.backend == "hf" and s.captioner.model == str(tiny_vlm)
        for i, seg in enumerate(s.segments):
            if type(seg).__name__ == "ImageSegment":
                cap = s.segments[i - 1]
                assert cap.role == "caption" and cap.prompt_id == "image_caption@v1" and cap.status in ("ok", "truncated")
    validate_shards(out)
