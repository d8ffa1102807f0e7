"""Build ``pipelines/web_interleave/topic_real.jsonl``: labelled real pages for the topic classifier.

Pages come from HTML documentation shipped in Debian bookworm packages (unpacked with ``dpkg-deb -x``) and
from the shared real pages. Each page is labelled by what it is (its place in the documentation: the
Python tutorial, PostgreSQL's release notes, a glossary, a support offer, a table of contents, ...), never
by the classifier; ``other`` holds landing pages, tables of contents, licences and project policies. A row keeps the text the
classifier sees (``topic.doc_text`` of the extracted page), where the page came from, and its licence.

    apt-get download python3.11-doc postgresql-doc-15 python-django-doc sqlite3-doc python-pandas-doc
    for f in *.deb; do dpkg-deb -x "$f" unpacked/; done  # or one sub-folder per package
    python tools/topic_pages.py unpacked/ /work/shared/data --out pipelines/web_interleave/topic_real.jsonl
    python -m pipelines.web_interleave.topic train pipelines/web_interleave/topic_real.jsonl --split train --c 16 \
        --out pipelines/web_interleave/topic_default.json
"""

from __future__ import annotations

import argparse
import glob
import json
import random
import sys
from pathlib import Path

# (site, package, version, licence, html root under the unpacked tree)
SITES = {
    "docs.python.org": ("python3.11-doc", "3.11.2-6+deb12u9", "PSF-2.0 (Python documentation licence)",
                        "usr/share/doc/python3.11/html"),
    "postgresql.org": ("postgresql-doc-15", "15.20-0+deb12u1", "PostgreSQL Licence", "usr/share/doc/postgresql-doc-15/html"),
    "djangoproject.com": ("python-django-doc", "3:3.2.25-0+deb12u7", "BSD-3-Clause", "usr/share/doc/python-django-doc/html"),
    "sqlite.org": ("sqlite3-doc", "3.40.1-2+deb12u2", "public domain", "usr/share/doc/sqlite3"),
    "pandas.pydata.org": ("python-pandas-doc", "1.5.3+dfsg-2", "BSD-3-Clause", "usr/share/doc/python-pandas-doc/html"),
}
# label -> globs (relative to the site's html root); a page's label is what that part of the docs is
PAGES = {
    "docs.python.org": {
        "tutorial": ["tutorial/[a-hj-z]*.html", "tutorial/interpreter.html", "tutorial/introduction.html",
                     "tutorial/inputoutput.html"],
        "howto": ["howto/[a-hj-z]*.html", "bugs.html"],
        "news": ["whatsnew/[0-9]*.html"],
        "other": ["about.html", "copyright.html", "license.html", "index.html", "contents.html", "download.html",
                  "whatsnew/index.html", "tutorial/index.html", "howto/index.html"],
    },
    "postgresql.org": {
        "tutorial": ["tutorial-*.html"],
        "howto": ["bug-reporting.html"],
        "encyclopedic": ["intro-whatis.html", "notation.html", "history.html"],
        "news": ["release-15*.html", "release-prior.html"],
        "other": ["index.html", "legalnotice.html", "preface.html", "resources.html", "release.html", "tutorial.html"],
    },
    "sqlite.org": {
        "tutorial": ["quickstart.html", "cli.html", "undoredo.html", "backup.html", "sqlar.html", "json1.html",
                     "windowfunctions.html", "fts5.html", "rtree.html", "rowvalue.html", "lang_upsert.html",
                     "cintro.html", "inmemorydb.html"],
        "howto": ["howtocompile.html", "getthecode.html"],
        "encyclopedic": ["about.html", "features.html", "whentouse.html", "different.html"],
        "news": ["news.html", "oldnews.html", "pressrelease-*.html", "releaselog/3_4*.html", "releaselog/3_3[5-9]*.html",
                 "releaselog/3_2*.html", "chronology.html", "cves.html"],
        "commerce": ["prosupport.html", "consortium.html", "books.html"],
        "opinion": ["whynotgit.html", "mostdeployed.html", "hirely.html"],
        "other": ["index.html", "crew.html", "famous.html", "copyright.html", "support.html", "codeofethics.html",
                  "codeofconduct.html", "download.html", "docs.html", "lts.html", "sitemap.html"],
    },
    "djangoproject.com": {
        "tutorial": ["intro/tutorial0*.html", "intro/install.html", "intro/reusable-apps.html", "intro/contributing.html"],
        "howto": ["howto/[a-hj-z]*.html", "howto/deployment/*.html", "howto/static-files/*.html", "faq/help.html"],
        "encyclopedic": ["intro/overview.html", "glossary.html", "faq/general.html"],
        "news": ["releases/3.*.html", "releases/2.2*.html", "releases/1.11*.html", "releases/security.html"],
        "opinion": ["misc/design-philosophies.html"],
        "other": ["index.html", "contents.html", "misc/api-stability.html", "misc/distributions.html", "misc/index.html",
                  "internals/organization.html", "internals/security.html", "releases/index.html",
                  "internals/release-process.html", "internals/deprecation.html"],
    },
    "pandas.pydata.org": {
        "tutorial": ["getting_started/intro_tutorials/0*.html", "getting_started/intro_tutorials/10*.html",
                     "user_guide/10min.html"],
        "howto": ["user_guide/[a-hj-z]*.html"],
        "encyclopedic": ["getting_started/overview.html", "development/developer.html"],
        "news": ["whatsnew/v1.[3-5]*.html", "whatsnew/v1.[0-2].0.html", "whatsnew/v0.2[0-5].0.html",
                 "development/roadmap.html"],
        "other": ["index.html", "getting_started/index.html", "ecosystem.html", "development/index.html",
                  "development/community.html", "development/policies.html", "development/meeting.html",
                  "whatsnew/index.html", "user_guide/index.html", "reference/index.html"],
    },
}
SHARED = {"carpentries.org": ("docs/carpentries/*/*.html", "CC BY 4.0 (The Carpentries and lesson contributors)"),
          "based.cooking": ("docs/based_cooking/*/index.html", "Unlicense / public domain (based.cooking repo LICENSE.md)")}
MAX_PER_LABEL = 40
# the shipped classifier trains on these sites' pages; the others are its test set (split by site)
TEST_SITES = ("djangoproject.com", "pandas.pydata.org", "based.cooking")
MAX_CHARS = 1500  # the embedder reads 256 word pieces: about 1,000-1,200 characters of prose


def page_text(path: Path) -> str:
    from pipelines.web_interleave.extract import extract_page
    from pipelines.web_interleave.topic import doc_text

    page = extract_page(path.read_bytes(), path.as_uri())
    return doc_text(page)[:MAX_CHARS]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("unpacked", help="folder the Debian packages were unpacked into")
    ap.add_argument("shared", help="the shared real data folder (docs/carpentries, docs/based_cooking)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    rows, seen = [], set()
    rng = random.Random(0)
    for site, groups in PAGES.items():
        pkg, ver, lic, root = SITES[site]
        base = next((d / root for d in [Path(args.unpacked), *Path(args.unpacked).iterdir()] if (d / root).is_dir()),
                    Path(args.unpacked) / root)
        for label, pats in groups.items():
            files = sorted({f for p in pats for f in glob.glob(str(base / p))})
            rng.shuffle(files)
            for f in sorted(files[:MAX_PER_LABEL]):
                rel = str(Path(f).relative_to(base))
                if (site, rel) in seen:
                    continue
                seen.add((site, rel))
                text = page_text(Path(f))
                if len(text) >= 200:
                    rows.append({"site": site, "label": label, "source": f"debian:{pkg}={ver}:{root}/{rel}",
                                 "licence": lic, "text": text})
    for site, (pat, lic) in SHARED.items():
        for f in sorted(glob.glob(str(Path(args.shared) / pat))):
            rel = str(Path(f).relative_to(args.shared))
            rows.append({"site": site, "label": "tutorial" if "carpentries" in site else "howto",
                         "source": f"shared-data:{rel}", "licence": lic, "text": page_text(Path(f))})
    rows = [{"split": "test" if r["site"] in TEST_SITES else "train", **r} for r in rows]
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    print(f"{len(rows)} pages -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
