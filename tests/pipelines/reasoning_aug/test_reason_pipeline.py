"""``braid reason`` end to end on real shards and edit tables: in-process and through local Ray, with a
well-formed stand-in model and with the tiny random-weight model through the real hf backend."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import reason_inputs as ri

from captioners.base import CaptionerConfig
from pipelines.commands.run import run_job
from pipelines.core.executor import RunConfig
from pipelines.reasoning_aug import pipeline as reason_pipeline
from pipelines.reasoning_aug.config import ReasonCaptionConfig, ReasonConfig
from schemas import ImageSegment, TextSegment, load_manifest, read_samples, validate_json

# role, loss (text) or (understanding, generation) (image), per generator, after the system prompt
LAYOUT = {
    "reasoning_t2i": [("query", False), ("think", True), ("target", (False, True))],
    "reasoning_edit": [("source", (True, False)), ("instruction", False), ("think", True), ("target", (False, True))],
    "reasoning_concept": [("source", (True, False)), ("query", False), ("think", True), ("target", (False, True))],
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("reason_in")
    paths = [
        ri.write_shard(d, "video", [ri.video_sample(0), ri.video_sample(1)]),
        ri.write_shard(d, "web", [ri.web_sample(0), ri.web_sample(1, n_images=1)]),
        ri.write_shard(d, "pair", [ri.pair_sample(0)]),
        ri.write_edit_table(d / "edits.parquet"),  # 3 good rows and 1 undecodable, in 2 row groups
        ri.write_bagel_table(d / "bagel.parquet"),  # a 3-image row and a 1-image row
    ]
    (d / "garbage.tar").write_bytes(b"\x00not a tar" * 50)
    return [str(p) for p in paths] + [str(d / "garbage.tar"), str(d / "gone.tar")]


def reason(cfg: ReasonConfig, paths: list[str], factory=None) -> dict:
    """One run through the runner (``factory`` builds the captioner), with the per-generator accounting."""
    pipe = SimpleNamespace(**{k: getattr(reason_pipeline, k) for k in dir(reason_pipeline) if not k.startswith("_")})
    pipe.build_stages = lambda c: reason_pipeline.build_stages(c, factory)
    summary = run_job(pipe, paths, cfg)
    return {**summary, **reason_pipeline.summary_extra(cfg, reason_pipeline.list_inputs(paths, cfg))}


def config(out: Path, executor: str = "local", **kw) -> ReasonConfig:
    return ReasonConfig(run=RunConfig(out_dir=str(out), executor=executor, num_cpus=2),
                        caption=ReasonCaptionConfig(batch_size=4), **kw)


def written(out: Path) -> list:
    return list(read_samples(sorted(p for p in out.glob("*.tar"))))


def leaves_by_status(out: Path) -> dict[str, list[dict]]:
    by: dict[str, list[dict]] = {}
    for r in load_manifest(out).values():
        by.setdefault(r["status"], []).append(r)
    return by


def assert_every_unit_terminal(out: Path, summary: dict) -> None:
    """Every input and every source record of each generator ends written, filtered or failed, with a reason."""
    assert summary["inputs"] == summary["written"] + summary["filtered"] + summary["failed"]
    for g, k in summary["kinds"].items():
        assert k["records"] >= k["inputs"] and k["written"] + k["filtered"] + k["failed"] == k["records"], g
    recs = leaves_by_status(out)
    for r in recs.get("filtered", []):
        assert r["stage"] and r["reason"], r
    for r in recs.get("failed", []):
        assert r["stage"] and r["error_kind"] and r["message"], r


def assert_accounted(out: Path, summary: dict) -> None:
    """The full input set: 5 shard paths x 3 generators; tables feed only edits, one input per row group."""
    assert_every_unit_terminal(out, summary)
    assert summary["inputs"] == 5 * 3 + 2 + 1
    # t2i and concept: 2 clips, 2 docs, 1 pair, garbage, gone; edit: those and 4 table rows and 2 BAGEL rows
    assert {g: k["records"] for g, k in summary["kinds"].items()} == {"t2i": 7, "edit": 13, "concept": 7}
    failed_kinds = Counter(r["error_kind"] for r in leaves_by_status(out)["failed"])
    assert failed_kinds["not_found"] == 3 and failed_kinds["unreadable"] == 3 and failed_kinds["bad_record"] == 1


def assert_samples_well_formed(out: Path) -> list:
    samples = written(out)
    for s in samples:
        assert validate_json(s.to_json()) == []
        first, rest = s.segments[0], s.segments[1:]
        assert isinstance(first, TextSegment) and first.role == "system" and not first.loss
        assert "<think>" in first.text
        assert [seg.role for seg in rest] == [role for role, _ in LAYOUT[s.kind]], s.key
        for seg, (_, flags) in zip(rest, LAYOUT[s.kind]):
            if isinstance(seg, ImageSegment):
                assert (seg.understanding, seg.generation) == flags
            else:
                assert seg.loss is flags and seg.text.strip()
        think = next(seg for seg in rest if seg.role == "think")
        assert think.text.startswith("<think> ") and think.text.endswith(" </think>")
        assert think.text.count("<think>") == 1
        extra = s.source.extra
        assert s.source.uri == extra["input"] and Path(s.source.uri).is_file() and extra["key"]
        assert s.captioner is not None and all("@v" in p for p in s.captioner.prompt_ids)
    if samples and importlib.util.find_spec("pipelines.commands.validate"):
        from pipelines.commands.cli import main

        assert main(["validate", *[str(p) for p in sorted(out.glob("*.tar"))]]) == 0
    return samples


def check_standin_run(out: Path, summary: dict) -> None:
    assert_accounted(out, summary)
    samples = assert_samples_well_formed(out)
    assert Counter(s.kind for s in samples) == {"reasoning_t2i": 5, "reasoning_edit": 6, "reasoning_concept": 1}
    kinds = summary["kinds"]
    assert kinds["t2i"]["by_reason"] == {} and kinds["t2i"]["written"] == 5
    assert kinds["edit"]["by_reason"] == {"not_applicable": 3, "no_candidates": 1}
    assert kinds["concept"]["by_reason"] == {"not_applicable": 3, "no_candidates": 1}
    edits = [s for s in samples if s.kind == "reasoning_edit"]
    video = [s for s in edits if s.meta["origin"] == "video"]
    assert len(video) == 2 and all(s.meta["change_caption"].startswith("The green square") for s in video)
    assert all(s.segments[2].text == ri.GOOD["edit_instruction@v1"] for s in video)
    table = sorted(s.segments[2].text for s in edits if s.meta["origin"] == "table")  # the tables' own instructions
    assert table[:3] == ["Make the background blue.", "Make the background darker.", "Make the background snowy."]
    assert table[3] in ("Turn the square red.", "Make the square red.", "Remove the circle.")
    concept = next(s for s in samples if s.kind == "reasoning_concept")
    assert concept.meta["answer"] == "a glazed vase" and concept.meta["pair"] == [0, 2]
    assert concept.source.extra["key"] == "doc-000" and concept.source.extra["source"]["licence"] == "CC-BY-4.0"
    # the sample's images are the chosen document images, byte for byte
    doc = next(s for s in read_samples(concept.source.uri) if s.key == "doc-000")
    assert [i.sha256 for i in concept.images] == [doc.images[0].sha256, doc.images[2].sha256]


@pytest.mark.timeout(120)
def test_standin_in_process_writes_well_formed_samples_and_resumes(inputs, tmp_path):
    out = tmp_path / "out"
    summary = reason(config(out), inputs, factory=ri.StandInCaptioner)
    check_standin_run(out, summary)
    shards = sorted(p.name for p in out.glob("*.tar"))
    again = reason(config(out), inputs, factory=ri.StandInCaptioner)
    assert again["resumed_inputs"] == again["inputs"] and again["kinds"] == summary["kinds"]
    assert sorted(p.name for p in out.glob("*.tar")) == shards


@pytest.mark.timeout(240)
def test_standin_through_local_ray(inputs, tmp_path, ray_local):
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(ri)  # the stand-in lives in the tests, not in an installed module
    out = tmp_path / "out"
    check_standin_run(out, reason(config(out, executor="ray"), inputs, factory=ri.StandInCaptioner))


@pytest.mark.timeout(120)
def test_rejected_outputs_are_filtered_with_reason_and_text(inputs, tmp_path):
    out = tmp_path / "out"
    summary = reason(config(out), inputs, factory=ri.BadCaptioner)
    assert_accounted(out, summary)
    assert written(out) == []
    k = summary["kinds"]
    assert k["t2i"]["by_reason"] == {"repetition": 5}
    assert k["edit"]["by_error_kind"]["captioner_error"] == 2  # the video pairs' instruction step
    assert k["edit"]["by_reason"]["control_chars"] == 4  # the table pairs' traces
    assert k["concept"]["by_reason"]["answer_leak"] == 1
    recs = leaves_by_status(out)
    t2i = [r for r in recs["filtered"] if r["stage"] == "t2i.query"]
    assert t2i and all(r["detail"] == ri.BAD["t2i_query@v1"] for r in t2i)
    leak = next(r for r in recs["filtered"] if r["reason"] == "answer_leak")
    assert leak["stage"] == "concept.question" and leak["detail"] == ri.BAD["concept_question@v1"]
    err = next(r for r in recs["failed"] if r["error_kind"] == "captioner_error")
    assert err["stage"] == "edit.instruction" and "server went away" in err["message"]


@pytest.fixture(scope="module")
def small_inputs(tmp_path_factory) -> list[str]:
    """Fewer records for the real model, whose every reply runs to the token limit on CPU."""
    d = tmp_path_factory.mktemp("reason_small")
    return [str(ri.write_shard(d, "video", [ri.video_sample(0)])), str(ri.write_shard(d, "web", [ri.web_sample(0)])),
            str(ri.write_edit_table(d / "edits.parquet", n=1))]


def hf_config(out: Path, model: str, executor: str = "local") -> ReasonConfig:
    # one generation batch for all units, so each step is one batched call
    return ReasonConfig(run=RunConfig(out_dir=str(out), executor=executor, num_cpus=2, chunk_size=64),
                        caption=ReasonCaptionConfig(batch_size=32),
                        captioner=CaptionerConfig(backend="hf", model=model, batch_size=16))


def check_real_model_run(out: Path, summary: dict) -> None:
    assert_every_unit_terminal(out, summary)
    assert {g: k["records"] for g, k in summary["kinds"].items()} == {"t2i": 2, "edit": 4, "concept": 2}
    assert_samples_well_formed(out)
    recs = load_manifest(out)
    units = [r for r in recs.values() if r["status"] != "split"]
    model_units = [r for r in units if r.get("stage", "").count(".") or r["status"] == "written"]
    assert model_units, "some units reached the model"
    for r in model_units:
        if r["status"] == "filtered":
            assert "detail" in r and r["scores"].get("prompt_id"), r  # the model's text is kept for inspection


@pytest.mark.timeout(180)
def test_tiny_model_through_hf_backend_accounts_for_everything(small_inputs, tmp_path, tiny_vlm):
    out = tmp_path / "out"
    check_real_model_run(out, reason(hf_config(out, str(tiny_vlm)), small_inputs))
    assert (out / "cache").is_dir()  # requests are cached for resumed runs


@pytest.mark.timeout(240)
def test_tiny_model_through_local_ray(small_inputs, tmp_path, tiny_vlm, ray_local):
    out = tmp_path / "out"
    check_real_model_run(out, reason(hf_config(out, str(tiny_vlm), "ray"), small_inputs))


@pytest.mark.timeout(120)
def test_command_line(inputs, tmp_path, capsys):
    from pipelines.commands.cli import main

    out = tmp_path / "out"
    code = main(["reason", *inputs, "--out", str(out), "--kinds", "t2i,edit", "--captioner", "stub",
                 "--executor", "local"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    # t2i: the 3 shards, garbage.tar and gone.tar; edit: those and the 2 + 1 row groups of the tables
    assert summary["inputs"] == 5 + 8
    assert summary["written"] + summary["filtered"] + summary["failed"] == summary["inputs"]
    assert main(["reason", inputs[0], "--out", str(tmp_path / "o2"), "--captioner", "hf"]) == 2
    assert main(["reason", inputs[0], "--out", str(tmp_path / "o3"), "--kinds", "t2i,poems"]) == 2
    assert main(["reason", inputs[0], "--out", str(tmp_path / "o4"), "--captioner", "hf", "--model", "/no/such"]) == 2
    assert main(["reason", inputs[0], "--out", str(tmp_path / "o5"), "--per-record", "0"]) == 2
    err = capsys.readouterr().err
    assert "needs a model" in err and "kinds" in err and "does not exist" in err and "max_per_record" in err
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o4").exists()  # refused before any work


@pytest.mark.timeout(180)
def test_on_shards_written_by_the_video_pipeline(tmp_path):
    from dataclasses import replace

    from pipelines.video_interleave import pipeline as video
    from pipelines.video_interleave.config import VideoConfig
    from pipelines.video_interleave.synth import Scene, write_scenes

    video_file = tmp_path / "clip.mp4"
    write_scenes(video_file, [Scene("moving", 45, seed=1), Scene("pan", 45, seed=2)])
    vcfg = VideoConfig.tiny()
    vcfg = replace(vcfg, run=replace(vcfg.run, out_dir=str(tmp_path / "video_out")))
    summary = run_job(video, [str(video_file)], vcfg)
    assert summary["samples_written"] >= 1
    shards = [str(p) for p in sorted((tmp_path / "video_out").glob("*.tar"))]
    clips = list(read_samples(shards))

    out = tmp_path / "out"
    summary = reason(config(out), shards, factory=ri.StandInCaptioner)
    assert_every_unit_terminal(out, summary)
    k = summary["kinds"]
    assert k["t2i"]["written"] == k["edit"]["written"] == len(clips)
    assert k["concept"]["by_reason"] == {"not_applicable": len(clips)}
    samples = assert_samples_well_formed(out)
    frames = {img.sha256: clip.key for clip in clips for img in clip.images}
    for s in samples:
        assert all(frames.get(img.sha256) == s.source.extra["key"] for img in s.images)  # the clip's own frames
        if s.kind == "reasoning_edit":
            clip = next(c for c in clips if c.key == s.source.extra["key"])
            assert s.meta["change_caption"] in [t.text for t in clip.texts if t.role == "change"]
