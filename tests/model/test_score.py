"""Spot-check scores after a short training of the tiny preset: corrupted twins (shuffled captions, a noise
image) score worse than their clean samples, part by part; scores are deterministic."""

from __future__ import annotations

import pytest
from mot_helpers import photo_sample
from spot_run import corrupted_twin, held_out_samples, trained_run

from model.run_folder import load_run
from model.score import SampleScore, rank_scores, score_sample, score_samples


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load_run(trained_run(tmp_path_factory)[0], "cpu")


@pytest.mark.timeout(120)
def test_corrupted_twins_score_worse_than_clean(bundle):
    clean = held_out_samples(4)
    bad = [corrupted_twin(s, i) for i, s in enumerate(clean)]
    ranked = score_samples(bundle, clean + bad)
    by_key = {s.key: s for s in ranked}
    assert {s.key for s in ranked[:4]} == {b.key for b in bad}, [(s.key, s.score) for s in ranked]
    for c, b in zip(clean, bad):
        sc, sb = by_key[c.key], by_key[b.key]
        assert sb.score > sc.score and sb.z > sc.z
        for seg in sc.segments:  # every shuffled caption is more surprising than the original
            if seg.kind == "text":
                assert sb.segment(seg.seg).value > seg.value, (c.key, seg.seg)
        target = next(i for i, s in enumerate(c.segments) if getattr(s, "generation", False))
        assert sb.segment(target).value > sc.segment(target).value, (c.key, "noise image")
        assert sb.segment(target).kind == "image" and sb.segment(target).n_tokens == 12


@pytest.mark.timeout(60)
def test_scores_are_deterministic_and_independent_of_order(bundle):
    a = score_samples(bundle, held_out_samples(3))
    b = score_samples(bundle, list(reversed(held_out_samples(3))))
    assert {s.key: s.to_json() for s in a} == {s.key: s.to_json() for s in b}
    other_seed = score_sample(bundle, held_out_samples(1)[0], seed=1)
    assert other_seed.mse != a[[s.key for s in a].index(other_seed.key)].mse


def test_unscorable_samples_are_reported_not_raised(bundle):
    from schemas import TextSegment

    long = photo_sample(110)
    long = long.replace(segments=long.segments + (TextSegment("word " * 2000, role="body"),))
    s = score_sample(bundle, long)
    assert s.score is None and "over the training budget" in s.note
    ranked = rank_scores([s, SampleScore("a", "video", 1.0), SampleScore("b", "video", 3.0),
                          SampleScore("c", "web", 0.5)])
    assert [r.key for r in ranked] == ["b", "c", "a", long.key]  # worst first, kinds on one z scale
    assert ranked[1].z == 0.0  # a kind with one sample is not an outlier
