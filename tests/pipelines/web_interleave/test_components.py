"""The web pipeline's parts on real inputs: extraction, readers, OCR counts, relevance, topic, filters, captions."""

from __future__ import annotations

import io
import json
import random

import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from captioners.base import CaptionResult
from pipelines.web_interleave import filters as F
from pipelines.web_interleave.config import WebConfig
from pipelines.web_interleave.extract import extract_page
from pipelines.web_interleave.readers import row_document
from pipelines.web_interleave.synth import drawing

VOCAB = ["apple", "river", "stone", "garden", "window", "yellow", "market", "planet", "silver", "forest", "bottle", "candle", "rocket", "music", "paper"]


def text_image(lines: list[str], size=(900, 720), font_size=22) -> bytes:
    im = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(im)
    font = ImageFont.truetype("DejaVuSans.ttf", font_size)
    for i, line in enumerate(lines):
        d.text((12, 10 + i * (font_size + 12)), line, fill="black", font=font)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def test_extraction_keeps_every_content_image_in_order(shared_data):
    manifest = json.loads((shared_data / "MANIFEST.json").read_text())
    for entry in manifest["docs"]:
        page = shared_data / entry["entry"]
        got = extract_page(page.read_bytes(), page.as_uri())
        srcs = [it["src"] for it in got["items"] if it["type"] == "image"]
        want = [(page.parent / im["src"]).resolve().as_uri() for im in entry["content_images"]]
        want = list(dict.fromkeys(want))  # a figure shown twice on a page is kept once (its repeat: duplicate_url)
        assert [s for s in srcs if s in want] == want, entry["entry"]  # all content images, in reading order
        assert not any("logo" in s for s in srcs if "carpentries" in s), "site logos sit outside the main content"
        alts = {it["src"]: it["alt"] for it in got["items"] if it["type"] == "image"}
        first = {(page.parent / im["src"]).resolve().as_uri(): im["alt"] for im in reversed(entry["content_images"])}
        assert [alts[w] for w in want] == [" ".join(first[w].split()) for w in want]


def test_extraction_without_main_markup_uses_trafilatura():
    html = ("<html><head><title>T</title></head><body><div class='menu'>Home | About</div><div>"
            + "<p>Water the seedlings every morning and keep them in a bright place away from draughts.</p>" * 6
            + "<img src='pic.jpg' alt='seedlings'></div></body></html>")
    got = extract_page(html, "https://example.org/a/page.html")
    assert got["method"] == "trafilatura"
    assert any(it["type"] == "text" and "seedlings" in it["text"] for it in got["items"])


def test_mmc4_and_omnicorpus_rows(shared_data):
    row = json.loads((shared_data / "interleaved" / "mmc4_readme_example.json").read_text())
    doc = row_document(row, "mmc4.json", 0)
    kinds = [(it["type"], it.get("text_index", it.get("image_index"))) for it in doc["items"]]
    # image 1 matches sentence 1, image 0 matches sentence 2: each goes right after its sentence
    assert kinds == [("text", 0), ("text", 1), ("image", 1), ("text", 2), ("image", 0)]
    assert doc["url"] == row["url"] and doc["format"] == "mmc4"
    omni = {"texts": ["a", None, "b"], "images": [None, "http://x/1.jpg", None], "metadata": [None, {}, None],
            "general_metadata": {"id": "d1", "url": "http://x/"}}
    doc = row_document(omni, "f.parquet", 3)
    assert [it["pos"] for it in doc["items"]] == [0, 1, 2] and doc["doc_id"] == "d1"
    with pytest.raises(ValueError, match="same length"):
        row_document({"texts": ["a"], "images": []}, "f", 0)


@pytest.mark.timeout(120)
def test_ocr_counts_known_text():
    from pipelines.web_interleave.ocr import OcrCounter

    ocr = OcrCounter()
    assert ocr.count(text_image(["Press the master door lock switch"], size=(900, 200), font_size=40)) == 6
    rng = random.Random(0)
    lines = [" ".join(rng.choice(VOCAB) for _ in range(6)) for _ in range(20)]  # 120 words
    n = ocr.count(text_image(lines))
    assert 108 <= n <= 132, n  # within 10% of the 120 words drawn
    assert ocr.count(text_image(lines), limit=100) > 100  # early stop still decides "text-heavy"
    assert ocr.count(drawing(3)) == 0  # shapes, no text


def test_relevance_ranks_matching_context_higher():
    from pipelines.web_interleave.relevance import context_around, relevance

    scores = relevance(["A plate of ravioli with red sauce and basil.", "A cat sleeping on a sofa."],
                       ["Serve the ravioli with a fresh red sauce and basil leaves."] * 2)
    assert scores[0] > 0.4 and scores[1] < WebConfig().filters.min_relevance
    items = [{"type": "text", "text": "before"}, {"type": "image"}, {"type": "text", "text": "after"}]
    assert context_around(items, 1, 100) == "before after"


def test_topic_classifier_default_and_retraining(tmp_path):
    from pipelines.web_interleave import topic

    clf = topic.load_classifier()
    res = topic.classify(["Step 2: sand the edges, then apply a thin coat of varnish and let it dry overnight.",
                          "Huge discount on all laptops this weekend, add to cart now and get free shipping."],
                         clf, ("tutorial", "howto", "encyclopedic", "design"))
    assert res[0]["score"] > 0.5 > res[1]["score"] and res[1]["label"] == "commerce"
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"text": f"recipe {i}: chop, fry and serve", "label": "howto"}) + "\n"
                              for i in range(5)))
    out = tmp_path / "clf.json"
    assert topic.main(["train", str(labels), "--out", str(out)]) == 0
    obj = json.loads(out.read_text())  # plain JSON: labels, coefficients, intercepts
    assert obj["format"] == "braid-topic-logreg@1" and obj["trained_on"] == 85
    assert set(topic.load_classifier(str(out)).labels) == {r["label"] for r in topic.read_labels(topic.SEED_FILE)}
    assert topic.parse_label("Label: How-To") == "howto" and topic.parse_label("other") == "other"


def test_image_rules_and_duplicates(tmp_path):
    fc = WebConfig().filters
    assert F.url_rule("https://x/static/icons/a.png", fc.url_patterns)[0] == "ui_url"
    assert F.url_rule("https://x/a.png", fc.url_patterns, alt="XMR Logo")[0] == "ui_url"
    assert F.url_rule("https://x/photos/cake.jpg", fc.url_patterns, alt="a cake")[0] is None
    # a long alt text describes a content image even when it names a UI element (a screenshot of a button)
    assert F.url_rule("https://x/fig/new-repo.png", fc.url_patterns,
                      alt="Screenshot of the New repository button on GitHub")[0] is None
    assert F.size_rule(149, 300, fc)[0] == "image_size" and F.size_rule(640, 200, fc)[0] == "aspect_ratio"
    assert F.size_rule(400, 300, fc)[0] is None
    sharp = drawing(1)
    im = Image.open(io.BytesIO(sharp)).filter(ImageFilter.GaussianBlur(8))
    buf = io.BytesIO()
    im.save(buf, "JPEG")
    assert F.clarity(F.load_gray(sharp)) > fc.min_clarity > F.clarity(F.load_gray(buf.getvalue()))
    small = io.BytesIO()
    Image.open(io.BytesIO(sharp)).resize((240, 180)).save(small, "JPEG", quality=70)
    h1, h2, h3 = (F.phash(F.load_gray(b)) for b in (sharp, small.getvalue(), drawing(2)))
    assert F.hamming(h1, h2) <= fc.phash_distance < F.hamming(h1, h3)
    idx = F.DedupIndex(fc.phash_distance, tmp_path / "dedup")
    idx.add("s1", h1, "doc-a")
    idx.close()
    again = F.DedupIndex(fc.phash_distance, tmp_path / "dedup")  # a later worker sees the persisted set
    assert again.lookup("s1", h1, "doc-b")[0] == "duplicate_exact"
    assert again.lookup("s2", h2, "doc-b")[0] == "duplicate_near"
    assert again.lookup("s1", h1, "doc-a")[0] is None  # never a duplicate of itself (resume)
    assert again.lookup("s3", h3, "doc-b")[0] is None


def test_header_footer_trimming():
    items = [{"type": "text", "text": t} for t in ("Posted by admin on Monday", "Intro text about bread.")]
    items += [{"type": "image", "src": "a"}, {"type": "text", "text": "Knead for ten minutes."},
              {"type": "image", "src": "b"}, {"type": "text", "text": "Bake until golden."},
              {"type": "text", "text": "Share this on social media"}, {"type": "text", "text": "More recipes below"},
              {"type": "text", "text": "Copyright 2024 Bread Co."}]
    out, n = F.trim_ends(items, WebConfig().filters)
    texts = [it.get("text") for it in out]
    assert n == 4 and texts[0] == "Intro text about bread." and texts[-1] == "Bake until golden."


class StandIn:
    """Pure stage-logic stand-in: captions echo the alt text; one request fails."""

    backend, model = "standin", "echo"

    def __init__(self):
        self.requests = []

    def caption(self, requests):
        self.requests += requests
        out = []
        for r in requests:
            if r.prompt_id == "summarize@v1":
                out.append(CaptionResult("A short summary.", "ok"))
            elif r.variables.get("alt") == "broken":
                out.append(CaptionResult("", "error", error="model fell over"))
            else:
                out.append(CaptionResult(f"A photo of {r.variables['alt']}.\nExtra line.", "ok"))
        return out


def test_caption_stage_summaries_errors_and_order():
    from dataclasses import replace

    from pipelines.web_interleave.caption import caption_docs
    from pipelines.web_interleave.doc import TextBlock, WebDoc, WebImage

    cfg = WebConfig.tiny()
    long_text = " ".join(["word"] * 320)
    items = [TextBlock("Intro.", (0,)), TextBlock(long_text, (1,))]
    for i, alt in enumerate(["a pan", "broken", "a pot", "a lid"]):
        items += [WebImage(f"http://x/{i}.jpg", 2 + 2 * i, alt, data=drawing(i)), TextBlock(f"Step {i}.", (3 + 2 * i,))]
    doc = WebDoc("d", "http://x/", "html", tuple(items), title="T")
    rec = {"id": "d", "input": "d", "status": "ok", "doc": doc}
    cap = StandIn()
    out = caption_docs([rec], cfg, cap)[0]
    assert rec["doc"] is doc and doc.items == tuple(items)  # the input record is left as it was
    segs = out["doc"].items
    # the image whose caption failed is gone; the text around it keeps its place
    assert out["status"] == "ok" and [type(s).__name__ for s in segs] == [
        "TextBlock", "WebImage", "TextBlock", "TextBlock", "WebImage", "TextBlock", "WebImage", "TextBlock"]
    assert segs[0].pos == (0, 1) and segs[0].summary == "A short summary." and segs[0].long
    assert (segs[2].pos, segs[3].pos) == ((3,), (5,))
    assert [s.caption for s in segs if isinstance(s, WebImage)] == ["A photo of a pan.", "A photo of a pot.",
                                                                    "A photo of a lid."]
    assert out["doc"].image_log[0]["reason"] == "caption_error" and out["captioner"]["backend"] == "standin"
    # retrying the same record gives the same result
    assert caption_docs([rec], cfg, StandIn())[0] == out
    # summaries off: the long segment is kept and flagged
    out2 = caption_docs([rec], replace(cfg, text=replace(cfg.text, summarize=False)), StandIn())[0]
    first = out2["doc"].items[0]
    assert first.long and not first.summary and first.tokens > 300


def test_a_batch_retried_record_by_record_gives_each_record_its_own_outcome():
    """The assemble stage over two documents, the second of which breaks (an image without bytes): the stage is
    retried record by record, and the first document, which the failed batch attempt had already handled,
    still becomes its sample."""
    from dataclasses import replace

    from pipelines.core.stage import Stage, apply_stage
    from pipelines.web_interleave.assemble import assemble_docs
    from pipelines.web_interleave.doc import TextBlock, WebDoc, WebImage

    cfg = WebConfig.tiny()
    cfg = replace(cfg, filters=replace(cfg.filters, min_relevance=None))

    def doc(name: str, datas: list) -> dict:
        items = [TextBlock(f"{name} intro.", (0,))]
        for i, data in enumerate(datas):
            items.append(WebImage(f"http://x/{name}/{i}.jpg", 1 + i, data=data, ext="jpg", width=480, height=360,
                                  caption=f"Picture {i}.", caption_status="ok"))
        d = WebDoc(name, f"http://x/{name}", "html", tuple(items), source=f"http://x/{name}")
        return {"id": name, "input": name, "status": "ok", "doc": d, "captioner": {"backend": "stub", "model": "s"}}

    good, broken = doc("good", [drawing(i) for i in range(3)]), doc("broken", [drawing(5), drawing(6), None])
    before = dict(good)
    out = {r["id"]: r for r in apply_stage(Stage("assemble", assemble_docs, cfg), [good, broken])}
    assert out["good"]["status"] == "ok" and len(out["good"]["sample"].images) == 3
    assert out["broken"]["status"] == "failed" and out["broken"]["error_kind"] == "TypeError"
    assert good == before  # the stage never changed its input record
