"""The shipped topic classifier measured on real pages no one here wrote, on sites it was not trained on.

pipelines/web_interleave/topic_real.jsonl holds 372 labelled pages (Python, PostgreSQL, SQLite, Django and
pandas documentation from Debian packages; the shared Carpentries lessons and based.cooking recipes), each
with its site, source, licence and a train/test split by site. A document is relevant when its label is one
of the kept topics (tutorial, howto, encyclopedic, design); the classifier keeps it when its score reaches
``topic.min_score``.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from pipelines.web_interleave import topic
from pipelines.web_interleave.config import TopicConfig


@pytest.fixture(scope="module")
def real():
    from pipelines.web_interleave.relevance import embed

    rows = topic.read_labels(topic.REAL_FILE)
    return rows, embed([r["text"] for r in rows])


def _scores(clf: topic.TopicClassifier, x: np.ndarray, keep: tuple[str, ...]) -> list[float]:
    p = clf.proba(x)
    idx = [i for i, lab in enumerate(clf.labels) if lab in keep]
    return [float(v) for v in p[:, idx].sum(axis=1)]


def test_real_pages_are_labelled_with_sources_and_split_by_site(real):
    rows, _ = real
    test = [r for r in rows if r["split"] == "test"]
    keep = TopicConfig().keep_labels
    assert len(test) >= 80 and sum(r["label"] not in keep for r in test) >= len(test) / 2
    assert not {r["site"] for r in test} & {r["site"] for r in rows if r["split"] == "train"}
    assert all(r["source"] and r["licence"] and r["site"] for r in rows)
    print("\npages per split, site and label:")
    for (split, site), n in sorted(Counter((r["split"], r["site"]) for r in rows).items()):
        labels = Counter(r["label"] for r in rows if r["split"] == split and r["site"] == site)
        print(f"  {split:<5} {site:<20} {n:>3}  {dict(sorted(labels.items()))}")


def test_shipped_classifier_precision_and_recall_on_unseen_sites(real):
    rows, x = real
    cfg = TopicConfig()
    keep, min_score = cfg.keep_labels, cfg.min_score
    shipped = topic.load_classifier()
    test = np.array([r["split"] == "test" for r in rows])
    test_sites = {r["site"] for r in rows if r["split"] == "test"}
    assert shipped.sites and not set(shipped.sites) & test_sites  # never trained on a test site
    relevant = [r["label"] in keep for r in rows]
    rel_test = [v for v, t in zip(relevant, test) if t]

    seed = topic.read_labels(topic.SEED_FILE)
    seed_only = topic.train([r["text"] for r in seed], [r["label"] for r in seed])  # the earlier default
    figures = {}
    for name, clf in (("shipped default", shipped), ("seed set only", seed_only)):
        p, r = topic.precision_recall(_scores(clf, x[test], keep), rel_test, min_score)
        figures[name] = (p, r)
        print(f"\n{name:<16} test sites {sorted(test_sites)}: {int(test.sum())} pages, "
              f"precision {p:.3f} recall {r:.3f} at min_score {min_score}")
        for site in sorted(test_sites):
            m = np.array([row["site"] == site for row in rows])
            ps, rs = topic.precision_recall(_scores(clf, x[m], keep), [v for v, k in zip(relevant, m) if k], min_score)
            print(f"    {site:<20} {int(m.sum()):>3} pages  precision {ps:.3f} recall {rs:.3f}")
    p, r = figures["shipped default"]
    assert p >= 0.9 and r >= 0.8, figures


def test_leave_one_site_out(real):
    """Each site scored by a classifier trained on the seed set and every other site (reported, not a target)."""
    rows, x = real
    from pipelines.web_interleave.relevance import embed

    seed = topic.read_labels(topic.SEED_FILE)
    xs = embed([r["text"] for r in seed])
    cfg = TopicConfig()
    scores = np.zeros(len(rows))
    print()
    for site in sorted({r["site"] for r in rows}):
        m = np.array([r["site"] == site for r in rows])
        clf = _fit(np.vstack([x[~m], xs]), [r["label"] for r, k in zip(rows, m) if not k] + [r["label"] for r in seed])
        scores[m] = _scores(clf, x[m], cfg.keep_labels)
        p, r = topic.precision_recall(list(scores[m]), [row["label"] in cfg.keep_labels for row in np.array(rows)[m]],
                                      cfg.min_score)
        print(f"  held out {site:<20} {int(m.sum()):>3} pages  precision {p:.3f} recall {r:.3f}")
    p, r = topic.precision_recall(list(scores), [row["label"] in cfg.keep_labels for row in rows], cfg.min_score)
    print(f"  all sites, each unseen: precision {p:.3f} recall {r:.3f}")
    assert r >= 0.8


def _fit(x: np.ndarray, labels: list[str]) -> topic.TopicClassifier:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=16.0, max_iter=2000).fit(x, labels)
    return topic.TopicClassifier(tuple(lr.classes_), lr.coef_.astype(np.float32), lr.intercept_.astype(np.float32))


def test_default_file_is_plain_json_with_its_sites():
    obj = json.loads(topic.DEFAULT_FILE.read_text())
    assert obj["format"] == "braid-topic-logreg@1" and "other" in obj["labels"] and obj["sites"]
