"""Topic selection through the captioner interface (the LLM-label path) on the real labelled pages of the
sites the shipped classifier never saw, beside the shipped classifier on the same pages.

    python benchmarks/bench_topic_llm.py --captioner openai --base-url http://host:8000/v1 --model Qwen/Qwen2.5-VL-7B-Instruct
    python benchmarks/bench_topic_llm.py --captioner hf --model DIR      # e.g. the offline tiny VLM

A page is relevant when its label is a kept topic; the LLM path keeps a page when the model's answer names a
kept label (``topic.parse_label``), the classifier when its score reaches ``topic.min_score``. With the
offline tiny random-weight VLM the LLM figures measure nothing but the plumbing; the recorded machine and
model say which it was.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.record import Row, write_result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--captioner", default="hf", choices=("hf", "openai", "vllm"))
    ap.add_argument("--model", required=True)
    ap.add_argument("--base-url")
    ap.add_argument("--limit", type=int, default=0, help="first N test pages only (0: all)")
    args = ap.parse_args()

    from captioners import make_captioner
    from captioners.base import CaptionerConfig
    from pipelines.web_interleave import topic
    from pipelines.web_interleave.config import TopicConfig
    from pipelines.web_interleave.relevance import embed

    cfg = TopicConfig()
    rows = [r for r in topic.read_labels(topic.REAL_FILE) if r["split"] == "test"]
    rows = rows[: args.limit] if args.limit else rows
    relevant = [r["label"] in cfg.keep_labels for r in rows]
    clf = topic.load_classifier()
    probs = clf.proba(embed([r["text"] for r in rows]))
    idx = [i for i, lab in enumerate(clf.labels) if lab in cfg.keep_labels]
    p_clf, r_clf = topic.precision_recall([float(v) for v in probs[:, idx].sum(axis=1)], relevant, cfg.min_score)

    cap = make_captioner(CaptionerConfig(backend=args.captioner, model=args.model, base_url=args.base_url), None)
    t0 = time.perf_counter()
    try:
        results = cap.caption(topic.label_requests([r["text"][:2000] for r in rows]))
    finally:
        cap.close()
    wall = time.perf_counter() - t0
    kept = [topic.parse_label(res.text or "") in cfg.keep_labels for res in results]
    p_llm, r_llm = topic.precision_recall([1.0 if k else 0.0 for k in kept], relevant, 0.5)
    answered = sum(topic.parse_label(res.text or "") is not None for res in results)
    print(f"{len(rows)} pages from {sorted({r['site'] for r in rows})}; model answers naming a label: {answered}")
    write_result("bench_topic_llm", [
        Row(name="LLM-label path precision", metric="precision", ours=p_llm, baseline=p_clf,
            baseline_name="shipped classifier on the same pages",
            note=f"recall {r_llm:.3f} (classifier {r_clf:.3f}); model {args.model} via {args.captioner}"),
        Row(name="LLM-label path recall", metric="recall", ours=r_llm, baseline=r_clf,
            baseline_name="shipped classifier on the same pages"),
    ], libraries=("torch", "transformers"),
       extra={"pages": len(rows), "answered_with_a_label": answered, "wall_s": round(wall, 1), "model": args.model})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
