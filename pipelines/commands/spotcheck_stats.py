"""The structural side of ``braid spotcheck``: per-kind statistics and per-sample flags over every sample read,
and the report's histograms.

Per kind: image sizes, caption lengths, sequence lengths against the token budget (exact under a checkpoint's
tokenizer, else estimated), duplicate images and texts across samples. Per sample: a repeated key, images and texts
already seen in another sample, images that do not decode or whose size differs from the declared one, aspect
ratios outside 1:2 to 2:1, empty texts, change captions over BAGEL's length, nothing carrying loss, and
sequences over the budget. Histograms are
self-contained PNG data URIs: the structure per kind, and the model's sample scores per kind.
"""

from __future__ import annotations

import io
import re
from collections import Counter, defaultdict

from pipelines.commands.html import esc
from pipelines.commands.spotcheck_plots import to_img
from schemas import ImageSegment, TextSegment

CHANGE_CAPTION_MAX_WORDS = 30  # BAGEL's change captions: at most about 30 tokens


def _words(text: str) -> int:
    return len(re.findall(r"\S+", text))


def _norm_text(text: str) -> str:
    return " ".join(text.lower().split())


# ----------------------------------------------------------------------------------------- structure


class Structure:
    """Per-kind statistics and per-sample flags over every sample read."""

    def __init__(self, count_tokens, budget: int):
        """``count_tokens(sample) -> int``: the sample's sequence length under the model (or an estimate);
        ``budget``: the most tokens one sample may have."""
        self.count_tokens, self.budget = count_tokens, budget
        self.kinds: dict[str, dict] = defaultdict(lambda: defaultdict(list))
        self.image_owner: dict[str, str] = {}
        self.text_owner: dict[str, str] = {}
        self.keys: Counter = Counter()
        self.flags: dict[str, list[str]] = {}
        self.where: dict[str, str] = {}

    def add(self, shard: str, sample) -> None:
        k = self.kinds[sample.kind]
        flags: list[str] = []
        self.keys[sample.key] += 1
        if self.keys[sample.key] > 1:
            flags.append("key repeats an earlier sample's")
        k["samples"].append(1)
        n_img = 0
        for i, seg in enumerate(sample.segments):
            if isinstance(seg, ImageSegment):
                n_img += 1
                k["long_side"].append(max(seg.width, seg.height))
                k["short_side"].append(min(seg.width, seg.height))
                owner = self.image_owner.setdefault(seg.sha256, sample.key)
                dup = owner != sample.key or seg.sha256 in {s.sha256 for s in sample.segments[:i]
                                                           if isinstance(s, ImageSegment)}
                k["dup_image"].append(int(dup))
                if dup:
                    flags.append(f"segment {i}: the same image as in {owner}")
                size = _decoded_size(seg.data)
                if size is None:
                    flags.append(f"segment {i}: image does not decode")
                elif size != (seg.width, seg.height):
                    flags.append(f"segment {i}: image is {size[0]}x{size[1]}, declared {seg.width}x{seg.height}")
                if not 0.5 <= seg.width / max(1, seg.height) <= 2.0:
                    flags.append(f"segment {i}: aspect ratio {seg.width}x{seg.height} is outside 1:2 to 2:1")
            else:
                words = _words(seg.text)
                k["words"].append(words)
                if not words:
                    flags.append(f"segment {i}: empty text")
                if seg.role == "change" and words > CHANGE_CAPTION_MAX_WORDS:
                    flags.append(f"segment {i}: change caption of {words} words (over {CHANGE_CAPTION_MAX_WORDS})")
                norm = _norm_text(seg.text)
                if _words(norm) >= 3 and seg.role not in ("system",):
                    owner = self.text_owner.setdefault(norm, sample.key)
                    k["dup_text"].append(int(owner != sample.key))
                    if owner != sample.key:
                        flags.append(f"segment {i}: text repeats {owner}'s")
        k["images"].append(n_img)
        if not any(isinstance(s, ImageSegment) and s.generation for s in sample.segments) and not any(
                isinstance(s, TextSegment) and s.loss for s in sample.segments):
            flags.append("nothing carries loss (no loss text, no generation target)")
        n_tokens = self.count_tokens(sample)
        k["tokens"].append(n_tokens)
        if n_tokens > self.budget:
            flags.append(f"{n_tokens} tokens, over the budget of {self.budget}")
        k["flagged"].append(int(bool(flags)))
        self.flags[sample.key] = flags
        self.where[sample.key] = shard

    def table(self, exact: bool) -> str:
        heads = ["kind", "samples", "images / sample", "image long side (median)", "text words (median)",
                 f"tokens / sample ({'exact' if exact else 'estimated'}, median)", "over budget", "duplicate images",
                 "duplicate texts", "samples flagged"]
        rows = []
        for kind in sorted(self.kinds):
            k = self.kinds[kind]
            n = len(k["samples"])
            over = sum(t > self.budget for t in k["tokens"])
            rows.append([kind, n, f"{_mean(k['images']):.2f}", _med(k["long_side"]), _med(k["words"]),
                         _med(k["tokens"]), over, _rate(k["dup_image"]), _rate(k["dup_text"]), _rate(k["flagged"])])
        head = "".join(f"<th>{esc(h)}</th>" for h in heads)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
        return f'<table class="stats"><tr>{head}</tr>{body}</table>'


def _decoded_size(data: bytes):
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except (OSError, SyntaxError, Image.DecompressionBombError):
        return None


def _mean(v) -> float:
    return sum(v) / len(v) if v else 0.0


def _med(v):
    return sorted(v)[len(v) // 2] if v else "-"


def _rate(v) -> str:
    return f"{100 * _mean(v):.1f}%" if v else "-"


# ------------------------------------------------------------------------------------------------ plots


def plot_structure(st: Structure) -> str:
    """Text length, image size, sequence length against the budget, one panel each; kinds overlaid on shared bins."""
    from pipelines.commands.spotcheck_plots import _grid, hist_panel

    def per_kind(field):
        return {kind: st.kinds[kind][field] for kind in sorted(st.kinds)}

    fig, axes = _grid(3, 3, 5.0, 3.2)
    hist_panel(axes[0], per_kind("words"), "Text segment length", "words", "text segments", integer=True)
    hist_panel(axes[1], per_kind("long_side"), "Image size", "long side (px)", "images")
    hist_panel(axes[2], per_kind("tokens"), f"Sequence length (budget {st.budget})", "tokens per sample",
               "samples")
    axes[2].axvline(st.budget, color="red", linestyle="--", label=f"budget {st.budget}")
    axes[2].legend(fontsize=8)
    return to_img(fig, "structure histograms")


def plot_scores(scores) -> str:
    """The model's sample score per kind, on shared bins."""
    from pipelines.commands.spotcheck_plots import _grid, hist_panel

    kinds = sorted({s.kind for s in scores if s.score is not None})
    if not kinds:
        return ""
    fig, axes = _grid(len(kinds), 4, 4.2, 3.2)
    for ax, kind in zip(axes, kinds):
        vals = [s.score for s in scores if s.kind == kind and s.score is not None]
        hist_panel(ax, {kind: vals}, f"{kind}: sample score", "score (0.25 × CE per token + velocity MSE)", "samples")
        for p in ax.patches:
            p.set_facecolor("#d62728")
            p.set_alpha(1.0)
    return to_img(fig, "score histograms per kind")
