"""Deterministic interleaved Braid samples for the BAGEL benchmark: three text segments (English-like words from
a fixed list), two understanding images and a generation target last; every twelfth sample also has its first
image as a generation target (a target inside the sample: noised latents, clean latents and its ViT tokens;
sample 7 is one).
Images are smooth random pictures (a low-resolution random field scaled up, plus a gradient) saved as JPEG.

With the 7B shape's transforms a sample is about 2.2k tokens: ~3 x 140 text tokens, two 224-288 px images
(256-336 ViT tokens each), a 512-576 px target (1024-1152 latent tokens); the samples with a target inside
are about 4k.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

WORDS = (
    "the", "a", "of", "and", "to", "in", "is", "on", "for", "with", "as", "at", "by", "from", "that", "this", "it",
    "its", "an", "be", "are", "was", "were", "has", "have", "had", "not", "but", "or", "which", "when", "while",
    "where", "who", "then", "than", "so", "if", "into", "over", "under", "after", "before", "between", "through",
    "during", "across", "about", "frame", "scene", "camera", "person", "hand", "table", "door", "window", "street",
    "car", "light", "shadow", "water", "tree", "sky", "cloud", "road", "building", "room", "wall", "floor", "chair",
    "screen", "book", "paper", "cup", "bottle", "dog", "cat", "bird", "child", "woman", "man", "group", "crowd",
    "field", "river", "hill", "moves", "turns", "opens", "closes", "walks", "runs", "looks", "holds", "lifts",
    "drops", "shows", "appears", "leaves", "enters", "stops", "starts", "falls", "rises", "points", "smiles",
    "speaks", "writes", "reads", "cuts", "pours", "shakes", "waves", "sits", "stands", "slowly", "quickly",
    "gently", "suddenly", "again", "still", "now", "left", "right", "up", "down", "near", "far", "behind", "front",
    "inside", "outside", "above", "below", "red", "blue", "green", "white", "black", "yellow", "bright", "dark",
    "small", "large", "long", "short", "old", "new", "first", "last", "next", "other", "same", "different",
    "second", "third", "image", "picture", "caption", "step", "change", "because", "therefore", "however", "while",
    "showing", "answer", "question", "reason", "think", "result", "value", "number", "count", "total", "part",
    "piece", "edge", "corner", "center", "side", "top", "bottom", "morning", "evening", "night", "day"
)


@dataclass(frozen=True)
class Layout:
    words: tuple[int, int]  # words per text segment (low, high)
    und_sizes: tuple[tuple[int, int], ...]  # understanding image sizes to pick from
    gen_sizes: tuple[tuple[int, int], ...]  # generation target sizes to pick from


LAYOUTS = {
    "7b": Layout((100, 140), ((256, 224), (224, 224), (224, 256), (288, 224), (224, 288)), ((512, 512), (576, 512))),
    "tiny": Layout((30, 50), ((224, 224), (240, 200)), ((128, 128), (160, 128))),
}


def text(rng, n: int) -> str:
    words = [WORDS[i] for i in rng.integers(0, len(WORDS), n)]
    out, i = [], 0
    while i < len(words):
        k = int(rng.integers(6, 16))
        sent = " ".join(words[i: i + k])
        out.append(sent[:1].upper() + sent[1:] + ".")
        i += k
    return " ".join(out)


def picture(rng, width: int, height: int) -> bytes:
    import numpy as np
    from PIL import Image

    field = (rng.random((6, 8, 3)) * 255).astype(np.uint8)
    im = Image.fromarray(field).resize((width, height), Image.BICUBIC)
    ramp = np.linspace(0, 60, width, dtype=np.float32)[None, :, None]
    arr = np.clip(np.asarray(im, dtype=np.float32) + ramp + rng.normal(0, 6, (height, width, 3)), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _image(rng, sizes, gen: bool, und: bool = True):
    from schemas import ImageSegment

    w, h = sizes[int(rng.integers(0, len(sizes)))]
    return ImageSegment(picture(rng, w, h), "jpg", w, h, understanding=und, generation=gen, role="frame")


def _text(rng, lay: Layout):
    from schemas import TextSegment

    return TextSegment(text(rng, int(rng.integers(*lay.words))), role="caption")


def make_samples(n: int, shape: str, seed: int = 0) -> list:
    import numpy as np

    from schemas import Sample, Source

    lay = LAYOUTS[shape]
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        inner_target = i % 12 == 7
        first = _image(rng, lay.gen_sizes, True) if inner_target else _image(rng, lay.und_sizes, False)
        segs = (_text(rng, lay), first, _text(rng, lay), _image(rng, lay.und_sizes, False), _text(rng, lay),
                _image(rng, lay.gen_sizes, True, und=False))
        out.append(Sample(key=f"bench-{i:04d}", kind="interleaved", segments=segs,
                          source=Source(f"synthetic://bench_bagel/{i}")))
    return out


def corpus(n: int = 400, seed: int = 1) -> list[str]:
    """Text to train the benchmark's tokenizer on (the same word list, other draws)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [text(rng, 200) for _ in range(n)]
