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

import base64
import io
import re
from collections import Counter, defaultdict

from schemas import ImageSegment, TextSegment

from pipelines.commands.html import esc

CHANGE_CAPTION_MAX_WORDS = 30  # BAGEL's change captions: at most about 30 tokens


def _words(text: str) -> int:
    return len(re.findall(r"\S+", text))


def _norm_text(text: str) -> str:
    return " ".join(text.lower().split())


# ----------------------------------------------------------------------------------------- structure


class Structure:
    """Per-kind statistics and per-sample flags over every sample read."""

    def __init__(self, mcfg, dcfg, tok):
        self.mcfg, self.dcfg, self.tok = mcfg, dcfg, tok
        self.kinds: dict[str, dict] = defaultdict(lambda: defaultdict(list))
        self.image_owner: dict[str, str] = {}
        self.text_owner: dict[str, str] = {}
        self.keys: Counter = Counter()
        self.flags: dict[str, list[str]] = {}
        self.where: dict[str, str] = {}

    def add(self, shard: str, sample) -> None:
        from model.data import plan_sample

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
        n_tokens = plan_sample(sample, self.tok, self.mcfg, self.dcfg, None).n_tokens
        k["tokens"].append(n_tokens)
        if n_tokens > self.dcfg.max_tokens:
            flags.append(f"{n_tokens} tokens, over the budget of {self.dcfg.max_tokens}")
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
            over = sum(t > self.dcfg.max_tokens for t in k["tokens"])
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


def _png_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def plot_structure(st: Structure) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("words", "text segment length (words)"), ("long_side", "image long side (px)"),
              ("tokens", "sequence length (tokens)"), ("images", "images per sample")]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2), dpi=80)
    for ax, (field, title) in zip(axes, panels):
        for kind in sorted(st.kinds):
            vals = st.kinds[kind][field]
            if vals:
                ax.hist(vals, bins=20, alpha=0.6, label=kind)
        if field == "tokens":
            title += f"; budget {st.dcfg.max_tokens}"
            if max((t for k in st.kinds.values() for t in k["tokens"]), default=0) > st.dcfg.max_tokens / 2:
                ax.axvline(st.dcfg.max_tokens, color="red", linestyle="--", label="budget")
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    uri = _png_uri(fig)
    plt.close(fig)
    return f'<img class="plot" src="{uri}" alt="structure histograms">'


def plot_scores(scores) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted({s.kind for s in scores if s.score is not None})
    if not kinds:
        return ""
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.2), dpi=80, squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        vals = [s.score for s in scores if s.kind == kind and s.score is not None]
        ax.hist(vals, bins=max(5, min(30, len(vals))), color="#d62728")
        ax.set_title(f"{kind}: sample score (0.25 CE + MSE)", fontsize=10)
        ax.set_xlabel("score")
    fig.tight_layout()
    uri = _png_uri(fig)
    plt.close(fig)
    return f'<img class="plot" src="{uri}" alt="score histograms per kind">'
