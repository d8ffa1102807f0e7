"""The plots of ``braid spotcheck`` that answer "is this run good?", with or without a checkpoint.

``RunQuality`` collects, over every sample read and the run's manifest (when the shards sit in a run folder):
model-written texts per role (length in tokens, repeated 3-gram rate, status), images per sample per kind, every
filter score of kept units and of dropped ones, and drops per stage and reason. The ``figure_*`` functions draw
them with matplotlib: one shared set of bins per panel (so kinds compare bin for bin and a series of one value
still shows as a bar), integer ticks on count axes, every panel titled and its axes labelled with units, filter
thresholds and prompt budgets drawn as dashed lines. ``to_img`` turns a figure into an inline PNG.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from collections import Counter, defaultdict
from pathlib import Path

from schemas import ImageSegment

# score name -> (panel title, x-axis label with unit, config fields holding its thresholds)
FILTER_SCORES = {
    "relevance": ("Caption–context relevance", "cosine similarity", ("min_relevance",)),
    "clarity": ("Image clarity", "variance of the Laplacian (grey, 512 px)", ("min_clarity",)),
    "ocr_tokens": ("OCR text density", "OCR words per image", ("max_ocr_tokens",)),
    "motion": ("Clip motion", "share of pixels that change", ("min_motion",)),
    "brightness": ("Clip brightness", "mean luma (0–255)", ("min_brightness", "max_brightness")),
    "duration_s": ("Shot (clip) length", "seconds", ("min_duration_s", "max_clip_s")),
    "aspect": ("Image aspect ratio", "width / height", ("min_aspect", "max_aspect")),
    "sharpness": ("Clip sharpness", "variance of the Laplacian", ("min_sharpness",)),
    "shake": ("Camera shake", "jitter per frame (thumbnail widths)", ("max_shake",)),
}
NGRAM = 3


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def repeated_ngram_rate(text: str, n: int = NGRAM) -> float | None:
    """Share of the text's word n-grams that repeat an earlier one (0 = none; gibberish loops score high)."""
    words = re.findall(r"\w+", text.lower())
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else None


class RunQuality:
    """What the quality plots need, gathered sample by sample and from the manifest."""

    def __init__(self, tok):
        self.tok = tok
        self.cap_tokens: dict[str, list[int]] = defaultdict(list)
        self.budgets: dict[str, set[int]] = defaultdict(set)
        self.ngram: dict[str, list[float]] = defaultdict(list)
        self.cap_status: dict[str, Counter] = defaultdict(Counter)
        self.images: dict[str, list[int]] = defaultdict(list)
        self.scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"kept": [], "dropped": []})
        self.thresholds: dict[str, dict[str, float]] = {}
        self.drops: Counter = Counter()  # (level, stage, reason) -> count
        self.units = 0  # final leaf records in the manifests
        self.images_seen = 0  # images of written documents that filter images one by one, kept and dropped
        self.manifests = 0
        self.image_drops: dict = {}  # (sample key, src, position) -> (stage, reason, scores), counted once

    def add(self, sample) -> None:
        from captioners.prompts import PROMPTS

        self.images[sample.kind].append(len(sample.images))
        log = sample.meta.get("image_log") if isinstance(sample.meta, dict) else None
        if isinstance(log, list):  # a document whose images were filtered one by one
            self.images_seen += len(sample.images)
        for seg in sample.segments:
            if isinstance(seg, ImageSegment):
                sc = seg.provenance.get("scores") if isinstance(seg.provenance, dict) else None
                if isinstance(sc, dict):
                    self._add_scores(sc, "kept")
            elif seg.prompt_id is not None or seg.status is not None:
                self.cap_tokens[seg.role].append(len(self.tok.encode(seg.text)))
                if seg.prompt_id in PROMPTS:
                    self.budgets[seg.role].add(PROMPTS[seg.prompt_id].max_tokens)
                rate = repeated_ngram_rate(seg.text)
                if rate is not None:
                    self.ngram[seg.role].append(rate)
                self.cap_status[seg.role][seg.status or "ok"] += 1
        quality = sample.meta.get("quality") if isinstance(sample.meta, dict) else None
        if isinstance(quality, dict):
            self._add_scores(quality, "kept")
        for e in log if isinstance(log, list) else []:
            self._add_image_drop(sample.key, e)

    def _add_image_drop(self, owner: str, e) -> None:
        if not isinstance(e, dict) or not e.get("reason"):
            return
        key = (owner, str(e.get("src", "")), e.get("pos"))
        if key in self.image_drops:
            return
        self.image_drops[key] = True
        self.images_seen += 1
        self.drops[("image", str(e.get("stage", "?")), str(e.get("reason")))] += 1
        if isinstance(e.get("scores"), dict):
            self._add_scores(e["scores"], "dropped")

    def _add_scores(self, scores: dict, outcome: str) -> None:
        for k, v in scores.items():
            if k in FILTER_SCORES and (x := _num(v)) is not None:
                self.scores[k][outcome].append(x)
            elif k.startswith(("min_", "max_")) and (x := _num(v)) is not None:
                for name, (_, _, fields) in FILTER_SCORES.items():
                    if k in fields:
                        self.thresholds.setdefault(name, {})[k] = x

    def add_run(self, run: Path) -> None:
        """A run folder's manifest (final records) and its last configuration (``runs.jsonl``)."""
        from schemas.manifest import iter_records

        if not (run / "manifest").is_dir():
            return
        self.manifests += 1
        latest: dict[str, dict] = {}
        for rec in iter_records(run):
            latest[rec["id"]] = rec
        for rec in latest.values():
            if rec["status"] == "split":
                continue
            self.units += 1
            if rec["status"] == "filtered":
                self.drops[("unit", str(rec.get("stage", "?")), str(rec.get("reason")))] += 1
                if isinstance(rec.get("scores"), dict):
                    self._add_scores(rec["scores"], "dropped")
            if isinstance(rec.get("images"), list):  # images of a web document not in its sample
                for e in rec["images"]:
                    self._add_image_drop(rec.get("key") or rec["id"], e)
        self._add_config(run / "runs.jsonl")

    def _add_config(self, path: Path) -> None:
        try:
            last = path.read_text(encoding="utf-8").strip().splitlines()[-1]
            cfg = json.loads(last).get("config")
        except (OSError, IndexError, ValueError, AttributeError):
            return
        fields = {f: name for name, (_, _, fs) in FILTER_SCORES.items() for f in fs}

        def walk(d):
            for k, v in d.items():
                if isinstance(v, dict):
                    walk(v)
                elif k in fields and (x := _num(v)) is not None:
                    self.thresholds.setdefault(fields[k], {})[k] = x

        if isinstance(cfg, dict):
            walk(cfg)


# ------------------------------------------------------------------------------------------------ drawing


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def shared_bins(series: list[list[float]], integer: bool = False, max_bins: int = 30, span=None):
    """One set of bin edges for every series of a panel (over ``span`` when given); a zero-width range gets a bin
    around its value, so a series of one value still shows."""
    import numpy as np

    values = [v for s in series for v in s]
    lo, hi = span or (min(values), max(values))
    if integer and hi - lo <= 60:
        return np.arange(math.floor(lo) - 0.5, math.ceil(hi) + 1.5)
    if hi == lo:
        pad = abs(lo) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    n = max(5, min(max_bins, int(math.sqrt(len(values))) + 1))
    return np.linspace(lo, hi, n + 1)


def hist_panel(ax, series: dict[str, list[float]], title: str, xlabel: str, ylabel: str, integer: bool = False,
               span=None):
    """Overlaid histograms on shared bins with a legend (series and their counts), integer count ticks."""
    from matplotlib.ticker import MaxNLocator

    series = {k: v for k, v in series.items() if v}
    if series:
        edges = shared_bins(list(series.values()), integer, span=span)
        for label, vals in series.items():
            ax.hist(vals, bins=edges, alpha=0.6, label=f"{label} ({len(vals)})", edgecolor="black", linewidth=0.4)
        ax.legend(fontsize=8)
        if integer:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="#777")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def _grid(n: int, cols: int = 4, w: float = 4.0, h: float = 3.0):
    plt = _plt()
    rows = max(1, math.ceil(n / cols))
    cols = min(cols, max(1, n))
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), dpi=80, squeeze=False, layout="constrained")
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def figure_drop_rates(q: RunQuality):
    """Horizontal bars: the share of units (clips, documents) and of images each stage and reason dropped."""
    from matplotlib.ticker import PercentFormatter

    rows = sorted(q.drops.items(), key=lambda kv: (kv[0][0] != "unit", -kv[1]))
    fig, (ax,) = _grid(1, 1, 9.0, max(2.2, 0.35 * len(rows) + 1.2))
    if not rows:
        ax.text(0.5, 0.5, "nothing dropped" if q.manifests else "no manifest: name the run folder to see drop rates",
                ha="center", va="center", transform=ax.transAxes, color="#777")
    labels, rates, colors = [], [], []
    for (level, stage, reason), n in rows:
        total = q.units if level == "unit" else q.images_seen
        labels.append(f"{'image' if level == 'image' else 'unit'} · {stage} · {reason}")
        rates.append(100 * n / total if total else 0.0)
        colors.append("#d62728" if level == "unit" else "#ff7f0e")
    if rows:
        y = range(len(rows))
        ax.barh(y, rates, color=colors)
        ax.set_yticks(list(y), labels, fontsize=8)
        ax.invert_yaxis()
        for i, ((level, _, _), n) in enumerate(rows):
            ax.annotate(f" {n}", (rates[i], i), va="center", fontsize=8)
        ax.set_xlim(0, max(rates) * 1.15 or 1)
    ax.xaxis.set_major_formatter(PercentFormatter())
    ax.set_title(f"Drop rate per filter and reason (units: {q.units} clips/documents; images: {q.images_seen})",
                 fontsize=10)
    ax.set_xlabel("dropped (% of units, or of images for image-level reasons)")
    ax.set_ylabel("level · stage · reason")
    return fig


def figure_caption_lengths(q: RunQuality, estimated: bool):
    roles = sorted(q.cap_tokens)
    fig, axes = _grid(max(1, len(roles)))
    unit = "tokens (estimated, 4 bytes each)" if estimated else "tokens"
    for ax, role in zip(axes, roles or ["(no model-written text)"]):
        hist_panel(ax, {role: q.cap_tokens.get(role, [])}, f"Caption length: {role}", unit, "captions", integer=True)
        for b in sorted(q.budgets.get(role, ())):
            ax.axvline(b, color="red", linestyle="--", linewidth=1.2, label=f"prompt budget {b}")
        if q.budgets.get(role):
            ax.legend(fontsize=8)
    return fig


def figure_filter_scores(q: RunQuality):
    names = [n for n in FILTER_SCORES if q.scores.get(n) and (q.scores[n]["kept"] or q.scores[n]["dropped"])]
    fig, axes = _grid(max(1, len(names)))
    if not names:
        hist_panel(axes[0], {}, "Filter scores", "score", "units")
    for ax, name in zip(axes, names):
        title, unit, _ = FILTER_SCORES[name]
        hist_panel(ax, q.scores[name], title, unit, "clips or images")
        for field, x in sorted(q.thresholds.get(name, {}).items()):
            ax.axvline(x, color="red", linestyle="--", linewidth=1.2, label=f"{field} = {x:g}")
        ax.legend(fontsize=8)
    return fig


def figure_text_health(q: RunQuality):
    """Images per sample per kind, repeated 3-gram rate per role, and the share of texts per status."""
    from matplotlib.ticker import PercentFormatter

    fig, axes = _grid(3, 3, 4.6, 3.2)
    hist_panel(axes[0], dict(q.images), "Images per sample", "images", "samples", integer=True)
    hist_panel(axes[1], {r: [100 * v for v in vals] for r, vals in q.ngram.items()},
               f"Repeated {NGRAM}-gram rate of model texts", f"repeated {NGRAM}-grams (% of the text's)", "texts",
               span=(0.0, 100.0))
    ax = axes[2]
    roles = sorted(q.cap_status)
    statuses = sorted({s for c in q.cap_status.values() for s in c} - {"ok"} | {"truncated"})
    if roles:
        width = 0.8 / len(statuses)
        top = 0.0
        for j, st in enumerate(statuses):
            counts = [q.cap_status[r][st] for r in roles]
            rates = [100 * c / sum(q.cap_status[r].values()) for c, r in zip(counts, roles)]
            bars = ax.bar([i + j * width for i in range(len(roles))], rates, width, label=st)
            ax.bar_label(bars, [str(c) for c in counts], fontsize=8)
            top = max(top, *rates)
        ax.set_xticks([i + (len(statuses) - 1) * width / 2 for i in range(len(roles))], roles)
        ax.set_ylim(0, max(5.0, top * 1.2))
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no model-written text", ha="center", va="center", transform=ax.transAxes, color="#777")
    ax.yaxis.set_major_formatter(PercentFormatter())
    ax.set_title("Truncated and failed model texts", fontsize=10)
    ax.set_xlabel("text role")
    ax.set_ylabel("texts (% of the role's)")
    return fig


def to_img(fig, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    _plt().close(fig)
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="plot" src="{uri}" alt="{alt}">'


def quality_plots(q: RunQuality, estimated: bool) -> str:
    return "".join([
        "<h2>Drops</h2>", to_img(figure_drop_rates(q), "drop rate per filter and reason"),
        "<h2>Filter scores</h2>", to_img(figure_filter_scores(q), "filter score histograms with thresholds"),
        "<h2>Captions</h2>", to_img(figure_caption_lengths(q, estimated), "caption length per role with budgets"),
        to_img(figure_text_health(q), "images per sample, repeated n-gram rate, truncated texts"),
    ])
