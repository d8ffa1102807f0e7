"""Web quality on real pages: extraction against trafilatura alone, topic selection against the seed-only classifier.

Extraction: the labelled set of tests/data/web_labelled (37 pages: the 28 shared real pages, 5 real
documentation pages from Debian packages, 4 written layout cases), image recall and precision at the read
stage and text-block recall. Topic: the shipped classifier on the test split of topic_real.jsonl (sites it
was not trained on), precision and recall of keeping the relevant pages at ``topic.min_score``, against the
classifier trained on the seed set alone (the earlier default).

    python -m benchmarks.bench_web_quality [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests" / "pipelines" / "web_interleave"))
    import test_extract_labelled as L  # the labelled set and its measure, as the test uses them

    from benchmarks.record import Row, write_result
    from pipelines.web_interleave import topic
    from pipelines.web_interleave.config import TopicConfig
    from pipelines.web_interleave.relevance import embed

    pages = L.labelled_pages(Path(args.shared))
    b, t = L.measure(pages, L.braid), L.measure(pages, L.trafilatura_alone)
    cfg = TopicConfig()
    rows_ = [r for r in topic.read_labels(topic.REAL_FILE) if r["split"] == "test"]
    x = embed([r["text"] for r in rows_])
    relevant = [r["label"] in cfg.keep_labels for r in rows_]
    seed = topic.read_labels(topic.SEED_FILE)
    figs = {}
    for name, clf in (("shipped", topic.load_classifier()),
                      ("seed", topic.train([r["text"] for r in seed], [r["label"] for r in seed]))):
        p = clf.proba(x)
        idx = [i for i, lab in enumerate(clf.labels) if lab in cfg.keep_labels]
        figs[name] = topic.precision_recall([float(v) for v in p[:, idx].sum(axis=1)], relevant, cfg.min_score)
    n_test = f"{len(rows_)} pages of {len({r['site'] for r in rows_})} unseen sites"
    rows = [Row("extraction, read stage", "image recall", b["recall"], t["recall"], "trafilatura alone",
                target_ratio=1.0, note=f"{b['pages']} labelled pages, {b['content_images']} content images; target >= 0.97"),
            Row("extraction, read stage", "image precision", b["precision"], t["precision"], "trafilatura alone",
                target_ratio=1.0, note="target >= 0.95"),
            Row("extraction", "text-block recall", b["text_recall"], t["text_recall"], "trafilatura alone",
                note=f"{b['text_blocks']} labelled text blocks"),
            Row("topic selection", "precision", figs["shipped"][0], figs["seed"][0], "seed-set classifier (earlier default)",
                note=f"{n_test}; target >= 0.9"),
            Row("topic selection", "recall", figs["shipped"][1], figs["seed"][1], "seed-set classifier (earlier default)",
                note=f"{n_test}; target >= 0.8")]
    write_result("bench_web_quality", rows, libraries=("trafilatura", "lxml", "scikit-learn", "sentence-transformers"),
                 extra={"load_avg": os.getloadavg(), "braid_misses": b["misses"], "min_score": cfg.min_score})
    return 0


if __name__ == "__main__":
    sys.exit(main())
