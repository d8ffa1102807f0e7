"""A tiny MoT trained briefly by ``braid train`` on shards of ``mot_helpers`` samples, shared by the inference,
scoring and spot-check tests (trained once per test session, about 15 s on one CPU thread)."""

from __future__ import annotations

import io
import random
from pathlib import Path

from mot_helpers import photo_sample, write_shards

TRAIN_CONFIG = """preset: tiny
train: {steps: 100, lr: 0.003, warmup: 5, schedule: constant, eval_every: 1000, ckpt_every: 1000}
"""
_cache: dict[str, tuple[Path, list[Path]]] = {}


def trained_run(tmp_path_factory) -> tuple[Path, list[Path]]:
    """(run folder, training shards)."""
    if "run" not in _cache:
        import torch

        from pipelines.commands.cli import main

        root = tmp_path_factory.mktemp("spot_run")
        shards = write_shards(root / "shards", 24, 12)
        (root / "train.yaml").write_text(TRAIN_CONFIG)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            rc = main(["train", *map(str, shards), "--out", str(root / "run"), "--config", str(root / "train.yaml"),
                       "--device", "cpu"])
        finally:
            torch.set_num_threads(threads)
        assert rc == 0
        _cache["run"] = (root / "run", shards)
    return _cache["run"]


def noise_png(seed: int, size=(32, 24)) -> bytes:
    """Uniform RGB noise at the tiny preset's generation size (so resizing does not smooth it away)."""
    import numpy as np
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def corrupted_twin(sample, seed: int):
    """The sample with every caption's words shuffled and its first generation target replaced by noise."""
    from schemas import ImageSegment, TextSegment

    rng = random.Random(seed)
    segs, replaced = [], False
    for seg in sample.segments:
        if isinstance(seg, TextSegment):
            words = seg.text.split()
            while len(words) > 1 and " ".join(words) == seg.text:
                rng.shuffle(words)
            segs.append(TextSegment(" ".join(words), seg.role, seg.loss, seg.prompt_id))
        elif seg.generation and not replaced:
            segs.append(ImageSegment(noise_png(seed), "png", 32, 24, understanding=True, generation=True,
                                     role=seg.role))
            replaced = True
        else:
            segs.append(seg)
    return sample.replace(key=sample.key + "-bad", segments=tuple(segs))


def held_out_samples(n: int = 4):
    """Samples of the training distribution with keys the run never saw."""
    return [photo_sample(100 + i) for i in range(n)]
