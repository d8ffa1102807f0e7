"""Topic selection, two stages as in BAGEL: an LLM labels a sample, a fast classifier labels everything.

1. ``label``: the captioner model (prompt ``topic_label@v1``) labels a sample of documents.
2. ``train``: logistic regression on MiniLM embeddings of those labels (plus the seed set) gives a
   classifier stored as JSON (labels, coefficients, intercepts; no pickle), read with numpy alone.
3. ``braid web`` classifies every document with it (``topic.classifier``); ``topic.llm_review`` adds the
   optional second LLM pass over what the classifier kept.

The package ships ``topic_seed.jsonl`` (short texts written for this project, varied topics),
``topic_real.jsonl`` (372 real documentation pages and lessons from Debian packages and the shared data,
each with its site, source, licence, label and train/test split by site; built by ``tools/topic_pages.py``)
and ``topic_default.json``, trained on the seed set and the real pages of the training sites, so the
pipeline runs offline:

    python -m pipelines.web_interleave.topic train pipelines/web_interleave/topic_real.jsonl --split train \
        --c 16 --out pipelines/web_interleave/topic_default.json
    python -m pipelines.web_interleave.topic label INPUT... --out labels.jsonl --captioner openai --model M --sample 500
    python -m pipelines.web_interleave.topic train labels.jsonl --out topic.json [--no-seed]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED_FILE = HERE / "topic_seed.jsonl"
REAL_FILE = HERE / "topic_real.jsonl"
DEFAULT_FILE = HERE / "topic_default.json"
LABELS = ("tutorial", "howto", "encyclopedic", "design", "news", "commerce", "opinion", "personal", "entertainment")
ALIASES = {"how-to": "howto", "how to": "howto", "encyclopedia": "encyclopedic", "reference": "encyclopedic",
           "shopping": "commerce", "advertisement": "commerce", "forum": "personal", "sports": "entertainment"}


@dataclass(frozen=True)
class TopicClassifier:
    labels: tuple[str, ...]
    coef: np.ndarray  # (labels, 384)
    intercept: np.ndarray  # (labels,)
    trained_on: int = 0
    sites: tuple[str, ...] = ()  # sites of the real pages it was trained on (rows with a ``site``)

    def proba(self, emb: np.ndarray) -> np.ndarray:
        z = emb @ self.coef.T + self.intercept
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def to_json(self) -> dict:
        return {"format": "braid-topic-logreg@1", "embedder": "all-MiniLM-L6-v2", "labels": list(self.labels),
                "coef": np.round(self.coef, 6).tolist(), "intercept": np.round(self.intercept, 6).tolist(),
                "trained_on": self.trained_on, "sites": list(self.sites)}

    @classmethod
    def from_json(cls, obj: dict) -> TopicClassifier:
        coef, icp = np.asarray(obj["coef"], dtype=np.float32), np.asarray(obj["intercept"], dtype=np.float32)
        if obj.get("format") != "braid-topic-logreg@1" or coef.shape != (len(obj["labels"]), 384) or \
                icp.shape != (len(obj["labels"]),):
            raise ValueError("not a braid topic classifier (format braid-topic-logreg@1, 384 features)")
        return cls(tuple(obj["labels"]), coef, icp, int(obj.get("trained_on", 0)), tuple(obj.get("sites") or ()))


def load_classifier(path: str = "") -> TopicClassifier:
    from schemas.config import ConfigError

    p = Path(path) if path else DEFAULT_FILE
    try:
        return TopicClassifier.from_json(json.loads(p.read_text()))
    except (OSError, json.JSONDecodeError, KeyError, ValueError) as e:
        raise ConfigError(f"topic.classifier {str(p)!r} cannot be used: {e}") from None


def doc_text(doc: dict, max_chars: int = 2000) -> str:
    """Title and the first text of a document: what the classifier and the LLM see."""
    parts, n = [doc.get("title") or ""], 0
    for it in doc["items"]:
        if it["type"] == "text" and n < max_chars:
            parts.append(it["text"][: max_chars - n])
            n += len(parts[-1])
    return "\n".join(p for p in parts if p)


def classify(texts: list[str], clf: TopicClassifier, keep: tuple[str, ...]) -> list[dict]:
    """Per text: best label, its probability, and the score (summed probability of ``keep`` labels)."""
    from pipelines.web_interleave.relevance import embed

    if not texts:
        return []
    p = clf.proba(embed(texts))
    keep_idx = [i for i, lab in enumerate(clf.labels) if lab in keep]
    out = []
    for row in p:
        best = int(row.argmax())
        out.append({"label": clf.labels[best], "label_prob": round(float(row[best]), 4),
                    "score": round(float(row[keep_idx].sum()), 4)})
    return out


def parse_label(text: str, labels: tuple[str, ...] = LABELS + ("other",)) -> str | None:
    """The first known label named in a model's answer."""
    low = text.lower()
    for alias, lab in ALIASES.items():
        low = low.replace(alias, lab)
    hits = [(low.find(lab), lab) for lab in labels if lab in low]
    return min(hits)[1] if hits else None


def label_requests(texts: list[str], labels: tuple[str, ...] = LABELS) -> list:
    from captioners.base import CaptionRequest

    # the variables cover the prompt's fields under the names a prompt may use; str.format ignores extras
    return [CaptionRequest(prompt_id="topic_label@v1", max_tokens=8,
                           variables={"text": t, "document": t, "labels": ", ".join(labels)}) for t in texts]


def train(texts: list[str], labels: list[str], c: float = 4.0, sites: tuple[str, ...] = ()) -> TopicClassifier:
    from sklearn.linear_model import LogisticRegression

    from pipelines.web_interleave.relevance import embed

    x = embed(texts)
    lr = LogisticRegression(C=c, max_iter=2000)
    lr.fit(x, labels)
    coef, icp = lr.coef_, lr.intercept_
    if len(lr.classes_) == 2:  # sklearn stores one row for two classes
        coef, icp = np.vstack([-coef[0] / 2, coef[0] / 2]), np.array([-icp[0] / 2, icp[0] / 2])
    return TopicClassifier(tuple(str(c_) for c_ in lr.classes_), coef.astype(np.float32), icp.astype(np.float32),
                           len(texts), tuple(sorted(set(sites))))


def precision_recall(scores: list[float], relevant: list[bool], min_score: float) -> tuple[float, float]:
    """Precision and recall of keeping the documents that score at least ``min_score``."""
    kept = [s >= min_score for s in scores]
    tp = sum(k and r for k, r in zip(kept, relevant))
    return tp / max(sum(kept), 1), tp / max(sum(relevant), 1)


def read_labels(path: str | Path) -> list[dict]:
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not isinstance(row.get("label"), str):
                raise ValueError(f"{path}:{n}: each line needs a text and a label")
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.web_interleave.topic", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the classifier from a labels file (JSON lines with text and label)")
    t.add_argument("labels", nargs="*", help="labels files; the seed set is added unless --no-seed")
    t.add_argument("--out", required=True)
    t.add_argument("--no-seed", action="store_true")
    t.add_argument("--c", type=float, default=4.0, help="inverse regularisation strength")
    t.add_argument("--split", default="", help="only rows whose split field is this (topic_real.jsonl: train, test)")
    lab = sub.add_parser("label", help="label a sample of documents with the captioner model (topic_label@v1)")
    lab.add_argument("inputs", nargs="+")
    lab.add_argument("--out", required=True)
    lab.add_argument("--captioner", default="openai", choices=("hf", "openai", "vllm", "stub"))
    lab.add_argument("--model", default="")
    lab.add_argument("--sample", type=int, default=500)
    lab.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.cmd == "train":
        rows = ([] if args.no_seed else read_labels(SEED_FILE)) + \
            [r for f in args.labels for r in read_labels(f) if not args.split or r.get("split") == args.split]
        if len({r["label"] for r in rows}) < 2:
            print("need at least two distinct labels", file=sys.stderr)
            return 2
        clf = train([r["text"] for r in rows], [r["label"] for r in rows], args.c,
                    tuple(r["site"] for r in rows if isinstance(r.get("site"), str)))
        Path(args.out).write_text(json.dumps(clf.to_json()))
        print(f"trained on {len(rows)} texts, labels {', '.join(clf.labels)} -> {args.out}")
        return 0
    return _label(args)


def _label(args) -> int:
    from captioners import make_captioner
    from captioners.base import CaptionerConfig
    from pipelines.web_interleave.readers import expand_inputs, html_document, read_rows, row_document

    docs = []
    for rec in expand_inputs(args.inputs):
        if rec["kind"] == "html":
            docs.append(html_document(Path(rec["source"]).read_bytes(), Path(rec["source"]).as_uri(), None))
        elif rec["kind"] == "table":
            for i, row in enumerate(read_rows(rec["source"])):
                try:
                    docs.append(row_document(row, rec["source"], i))
                except ValueError:
                    continue
    random.Random(args.seed).shuffle(docs)
    texts = [doc_text(d) for d in docs[: args.sample]]
    cap = make_captioner(CaptionerConfig(backend=args.captioner, model=args.model), None)
    try:
        results = cap.caption(label_requests(texts))
    finally:
        cap.close()
    n = 0
    with open(args.out, "w", encoding="utf-8") as f:
        for text, r in zip(texts, results):
            label = parse_label(r.text) if r.status != "error" else None
            if label:
                f.write(json.dumps({"text": text, "label": label}) + "\n")
                n += 1
    print(f"labelled {n} of {len(texts)} documents -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
